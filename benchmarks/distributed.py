"""Batch forecasting on Ray against the local CLI, end to end, on this machine (docs/distributed.md).

M3-monthly-like series (M3's 1428 monthly histories tiled, each copy scaled by its own random factor and dated to
its own last month), h 18, 20 samples, seed 0, house-target. In one run, each as a user runs it (a fresh process,
Ray's start-up and shut-down included):

  local      `leapcast forecast --input all.parquet` (one process, torch on every core)
  local-1    the same at `--threads 1`: what one core does without Ray, and the numbers a worker's make
  local-1x2  two `local-1` processes side by side, half the series each: what two single-thread workers can gain on
             this machine without Ray (its cores share one L3 cache and the memory bus)
  before     `local` with the commit that added `--ray` reversed in leapcast/cli.py (--before COMMIT): no slower
             (local and before run twice, alternately, and their median counts)
  ray-1      `leapcast forecast --ray --input shards/*.parquet --workers 1 --threads 1` (a local Ray of every core)
  ray-2      the same with --workers 2 (--pairs N: ray-1 then ray-2, N times in turn; the ratio is the median of
             the N pairs' ratios, since this machine's speed drifts by 10-20% between runs minutes apart)

and Ray's own share: the same pipeline with a worker that loads no model and forecasts nothing, per batch. Each run
waits (up to 10 minutes) for the machine to be idle and records the share of its CPU other processes took meanwhile;
Ray's workers run at nice 0 like the local CLI (Ray's default, 15, hands them only what others leave). The
forecasts of ray-1 and ray-2 are checked against local-1's, value for value (a worker runs 1 torch thread; more
threads may split a matrix product's sums differently and flip a sampled step). Series per hour come from the measured
series; figures for larger counts (--targets) are extrapolated from them, and say so.

    flock /tmp/leapcast-bench.lock python benchmarks/distributed.py --series 3000 --targets 10000 100000 --before 1076457
    python benchmarks/distributed.py --series 3000 --pairs 3 --out benchmarks/results/distributed_pairs.json
    python benchmarks/distributed.py --series 3000 --pairs 3 --ray-only --out benchmarks/results/distributed_pairs_guided.json
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import psutil

RESULTS = Path(__file__).parent / "results"
ROOT = Path(__file__).resolve().parent.parent


def m3_like(n: int, seed: int = 0) -> pd.DataFrame:
    """[rows, (unique_id, ds, y)]: n series, copies of M3 monthly's training histories (48-126 months)."""
    from leapcast.data import load

    train = load("m3-monthly").train
    groups = [(str(sid), g["y"].to_numpy()) for sid, g in train.groupby("unique_id", sort=True)]
    rng = np.random.default_rng(seed)
    ids, ds, ys = [], [], []
    for i in range(n):
        sid, y = groups[i % len(groups)]
        copy = i // len(groups)
        scale = 1.0 if copy == 0 else float(rng.uniform(0.5, 2.0))
        end = pd.Timestamp("2019-12-01") - pd.DateOffset(months=int(rng.integers(0, 36)))
        ids.append(np.full(len(y), f"{sid}-{copy}"))
        ds.append(pd.date_range(end=end, periods=len(y), freq="MS").to_numpy())
        ys.append(y * scale)
    return pd.DataFrame({"unique_id": np.concatenate(ids), "ds": np.concatenate(ds), "y": np.concatenate(ys)})


MODEL = "house-target"  # the model, named: the default model is another since these figures began
TIMEOUT_S = 1200  # a run past this stops the benchmark (it stops by itself)
QUIET_S = 600  # before each run, wait up to this long for the machine to be idle (others' tests take its cores)
# Ray starts its workers at nice 15 (RAY_worker_niceness): on a machine shared with other work they would get only
# the leftover CPU while the local CLI runs at 0. Here they run at 0 too, like with like.
RAY_ENV = {"RAY_worker_niceness": "0"}


def cpu_busy() -> float:
    """CPU-seconds every core of this machine has been busy since boot (/proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def wait_for_quiet() -> float:
    """Wait (up to QUIET_S) until the cores are at least 90% idle over 3 s; the busy share last seen."""
    deadline = time.monotonic() + QUIET_S
    while True:
        before = cpu_busy()
        time.sleep(3)
        busy = (cpu_busy() - before) / (3 * os.cpu_count())
        if busy < 0.1 or time.monotonic() > deadline:
            return round(busy, 2)


def run(name: str, args: list[str], env: dict | None = None, cwd: Path | None = None, copies: int = 1) -> dict:
    """One command in a fresh process (``copies`` of it side by side, each given its own ``{i}`` in ``args``): the
    wall time, the times `leapcast forecast --ray` reports, and the share of the machine's CPU that processes outside
    the command's tree took meanwhile (Ray's daemons and workers belong to the tree)."""
    idle_wait = wait_for_quiet()
    busy = cpu_busy()
    started = time.perf_counter()
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "leapcast.cli", "forecast", *[a.replace("{i}", str(i)) for a in args]],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
            cwd=cwd,
        )
        for i in range(copies)
    ]
    own = _TreeCpu([p.pid for p in procs])
    errs = [[] for _ in procs]
    readers = [threading.Thread(target=lambda p=p, e=e: e.append(p.stderr.read())) for p, e in zip(procs, errs)]
    for reader in readers:
        reader.start()
    while any(p.poll() is None for p in procs):
        own.sample()
        if time.perf_counter() - started > TIMEOUT_S:
            for p in procs:
                p.kill()
            raise SystemExit(f"{name} ran past {TIMEOUT_S} s")
        time.sleep(0.5)
    wall = time.perf_counter() - started
    others = (cpu_busy() - busy) - own.total()
    for reader in readers:
        reader.join()
    stderr = "".join(e[0] for e in errs)
    for p in procs:
        if p.returncode != 0:
            raise SystemExit(f"{name} failed ({p.returncode}):\n{stderr[-3000:]}")
    text = " ".join(stderr.split())
    planned = re.search(r"read and planned in ([\d.]+) s", text)
    forecast = re.search(r"to \S+ in ([\d.]+) s \(", text)
    batches = re.search(r"in ([\d,]+) batches", text)
    out = {
        "name": name,
        "wall_s": round(wall, 1),
        "busy_share_before": idle_wait,
        "others_cpu_share": round(max(others, 0.0) / (wall * os.cpu_count()), 2),  # of the machine, during the run
    }
    if planned and forecast and batches:
        out |= {
            "planned_s": float(planned[1]),
            "run_s": float(forecast[1]),  # read, plan, forecast and write, after Ray's start-up
            "batches": int(batches[1].replace(",", "")),
        }
    print(f"{name}: {wall:.1f} s", {k: v for k, v in out.items() if k != "name"}, flush=True)
    return out


def _median_run(runs: list[dict]) -> dict:
    """Runs of one command -> one row: the median wall time (of two: their mean), each run's time kept."""
    out = dict(runs[0])
    out["wall_s"] = round(float(np.median([r["wall_s"] for r in runs])), 1)
    out["wall_s_each"] = [r["wall_s"] for r in runs]
    out["others_cpu_share"] = max(r["others_cpu_share"] for r in runs)
    return out


class _TreeCpu:
    """CPU-seconds of some processes and all their descendants, sampled while they run (each one's last sample)."""

    def __init__(self, pids: list[int]) -> None:
        self.roots = [psutil.Process(pid) for pid in pids]
        self.seen: dict[int, float] = {}

    def sample(self) -> None:
        for root in self.roots:
            try:
                tree = [root, *root.children(recursive=True)]
            except psutil.Error:
                continue
            for proc in tree:
                try:
                    times = proc.cpu_times()
                except psutil.Error:
                    continue
                self.seen[proc.pid] = times.user + times.system

    def total(self) -> float:
        return sum(self.seen.values())


def ray_share(shards: str, h: int, samples: int) -> dict:
    """The --ray pipeline with a worker that returns nothing: Ray's start, plan and per-batch costs alone."""
    import ray

    from leapcast.distributed import plan, start_local
    from leapcast.distributed.worker import BatchForecaster

    class NoForecast(BatchForecaster):
        def __init__(self, model, load, forecast, threads, errors, cli) -> None:
            self.kwargs = forecast

        def __call__(self, block):
            yield pd.DataFrame({"unique_id": block["unique_id"].unique()})

    wait_for_quiet()
    started = time.perf_counter()
    os.environ.update(RAY_ENV)
    start_local(include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    up = time.perf_counter()
    planned = plan(ray.data.read_parquet(shards), MODEL, h=h, num_samples=samples, seed=0, workers=1, worker=NoForecast)
    ready = time.perf_counter()
    count = planned.dataset.count()
    done = time.perf_counter()
    ray.shutdown()
    assert count == planned.series
    out = {
        "ray_start_s": round(up - started, 2),
        "planned_s": round(ready - up, 2),
        "actor_stage_s": round(done - ready, 2),
        "batches": planned.batches,
        "per_batch_s": round((done - ready) / planned.batches, 3),
    }
    print("ray share:", out, flush=True)
    return out


def before_tree(commit: str, into: Path) -> Path:
    """This tree's package with ``commit``'s change to leapcast/cli.py reversed (the commit that added --ray): the
    local path as it was, on the same engine."""
    tree = into / "before"
    shutil.copytree(ROOT / "leapcast", tree / "leapcast", ignore=shutil.ignore_patterns("__pycache__", "distributed"))
    patch = subprocess.run(
        ["git", "-C", str(ROOT), "diff", f"{commit}^", commit, "--", "leapcast/cli.py"], capture_output=True, check=True
    ).stdout
    subprocess.run(["patch", "-R", "-p1", "-s"], input=patch, cwd=tree, check=True)
    if '"--ray"' in (tree / "leapcast" / "cli.py").read_text():
        raise SystemExit(f"--before {commit}: leapcast/cli.py still has --ray after reversing it")
    return tree


def local_runs(df: pd.DataFrame, ids: np.ndarray, local_args: list[str], common: list[str], tmp: Path) -> list[dict]:
    """local (every core), local-1 (one thread) and local-1x2 (two one-thread processes, half the series each)."""
    rows = [run("local", [*local_args, "--output", str(tmp / "local.parquet")])]
    rows.append(run("local-1", [*local_args, "--threads", "1", "--output", str(tmp / "local-1.parquet")]))
    for k, part in enumerate(np.array_split(ids, 2)):
        df[df["unique_id"].isin(part)].to_parquet(tmp / f"half-{k}.parquet", index=False)
    half = ["--input", str(tmp / "half-{i}.parquet"), *common, "--threads", "1"]
    rows.append(run("local-1x2", [*half, "--output", str(tmp / "half-{i}-out.parquet")], copies=2))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--series", type=int, default=2000, help="series measured per configuration")
    p.add_argument("--targets", type=int, nargs="*", default=[10_000, 100_000], help="series counts extrapolated to")
    p.add_argument("--h", type=int, default=18)
    p.add_argument("--samples", type=int, default=20)
    p.add_argument("--shards", type=int, default=8)
    p.add_argument(
        "--before", default=None, help="the commit that added --ray: time this tree's local CLI with it reversed too"
    )
    p.add_argument(
        "--pairs", type=int, default=1, help="ray-1 then ray-2, this many times in turn: the ratio is their median"
    )
    p.add_argument(
        "--ray-only",
        action="store_true",
        help="only the ray-1 / ray-2 pairs (no local runs, no Ray share): a larger --series in the time; each Ray "
        "output is checked against the first one's",
    )
    p.add_argument("--out", type=Path, default=RESULTS / "distributed.json")
    args = p.parse_args()
    if args.pairs < 1:
        p.error(f"--pairs must be at least 1, got {args.pairs}")
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="leapcast-dist-") as tmp:
        tmp = Path(tmp)
        df = m3_like(args.series)
        df.to_parquet(tmp / "all.parquet", index=False)
        (tmp / "shards").mkdir()
        ids = df["unique_id"].unique()
        for k, part in enumerate(np.array_split(ids, args.shards)):  # rows of a series may sit in any shard
            df[df["unique_id"].isin(part)].to_parquet(tmp / "shards" / f"part-{k}.parquet", index=False)
        common = ["--model", MODEL, "--h", str(args.h), "--num-samples", str(args.samples), "--seed", "0"]
        local_args = ["--input", str(tmp / "all.parquet"), *common]
        rows = [] if args.ray_only else local_runs(df, ids, local_args, common, tmp)
        # before and local once more, alternately: two-thread runs vary by 10% or more here
        if args.before and not args.ray_only:
            tree = before_tree(args.before, tmp)
            before_args = ["--input", str(tmp / "all.parquet"), *common, "--output", str(tmp / "before.parquet")]
            again = [run("before", before_args, env={"PYTHONPATH": str(tree)}, cwd=tree)]
            again.append(run("local", [*local_args, "--output", str(tmp / "local-again.parquet")]))
            again.append(run("before", before_args, env={"PYTHONPATH": str(tree)}, cwd=tree))
            rows[0] = _median_run([rows[0], again[1]])
            rows.append(_median_run([again[0], again[2]]))
        for pair in range(args.pairs):  # 1 worker, then 2, then again: the machine's drift hits both alike
            for workers in (1, 2):
                name = f"ray-{workers}" + (f" (pair {pair + 1})" if pair else "")
                out = tmp / f"ray-{workers}-{pair}"
                ray_args = ["--ray", "--input", str(tmp / "shards" / "*.parquet"), "--output", str(out)]
                ray_args += ["--workers", str(workers), "--threads", "1", *common]
                rows.append(run(name, ray_args, env=RAY_ENV) | {"pair": pair, "workers": workers, "output": str(out)})
        share = None if args.ray_only else ray_share(str(tmp / "shards"), args.h, args.samples)
        reference = rows[0]["output"] if args.ray_only else tmp / "local-1.parquet"
        local = pd.read_parquet(reference).sort_values(["unique_id", "ds"]).reset_index(drop=True)
        cores = None
        if not args.ray_only:
            cores = pd.read_parquet(tmp / "local.parquet").sort_values(["unique_id", "ds"]).reset_index(drop=True)
        for row in rows:
            if row["name"].startswith("ray"):
                got = pd.read_parquet(glob.glob(row.pop("output"))[0]).sort_values(["unique_id", "ds"])
                got = got.reset_index(drop=True).astype(local.dtypes.to_dict())
                row["identical_to_local" if cores is not None else "identical_to_first_ray_run"] = bool(
                    got.equals(local)
                )
                if cores is not None:
                    point = local.columns[2]
                    row["values_differing_from_local_all_cores"] = int((got[point] != cores[point]).sum())
                row["values"] = len(got)
    n = args.series
    for row in rows:
        row["series_per_hour"] = round(3600 * n / row["wall_s"])
        if "run_s" in row:
            row["series_per_hour_after_start"] = round(3600 * n / row["run_s"])
    by = {row["name"]: row for row in rows}
    pairs = [{r["workers"]: r for r in rows if r.get("pair") == i} for i in range(args.pairs)]
    ratios = [pair[1]["wall_s"] / pair[2]["wall_s"] for pair in pairs]
    ratios_run = [pair[1]["run_s"] / pair[2]["run_s"] for pair in pairs]
    speedup, speedup_run = float(np.median(ratios)), float(np.median(ratios_run))
    ceiling = by["local-1"]["wall_s"] / by["local-1x2"]["wall_s"] if "local-1" in by else None
    extrapolated = {}
    for target in args.targets:
        extrapolated[target] = {
            name: round((row["wall_s"] - row.get("run_s", 0) + row.get("run_s", row["wall_s"]) * target / n) / 3600, 2)
            for name, row in by.items()
        }
    result = {
        "date": str(date.today()),
        "command": "flock /tmp/leapcast-bench.lock python benchmarks/distributed.py " + " ".join(sys.argv[1:]),
        "series": n,
        "h": args.h,
        "samples": args.samples,
        "cpus": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in load],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "runs": rows,
        "ray_share": share,
        "speedup_2_over_1_workers": round(speedup, 2),
        "speedup_2_over_1_workers_after_start": round(speedup_run, 2),
        "speedup_2_over_1_workers_each_pair": [round(r, 2) for r in ratios],
        "speedup_2_over_1_workers_after_start_each_pair": [round(r, 2) for r in ratios_run],
        "goal_2_workers_at_least_1_7x": speedup >= 1.7,
        "two_processes_over_one_without_ray": None if ceiling is None else round(ceiling, 2),
        "extrapolated_hours": extrapolated,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    print(f"wrote {args.out}")


def table(result: dict) -> str:
    n = result["series"]
    lines = [
        f"| run | wall (s), {n:,} series | series/hour | after Ray's start: s, series/hour "
        "| identical to local-1 (--ray-only: to the first Ray run) | others' CPU share |",
        "|---|---|---|---|---|---|",
    ]
    for row in result["runs"]:
        after = f"{row['run_s']:.1f}, {row['series_per_hour_after_start']:,}" if "run_s" in row else "-"
        same = {True: "yes", False: "NO"}.get(row.get("identical_to_local", row.get("identical_to_first_ray_run")), "-")
        lines.append(
            f"| {row['name']} | {row['wall_s']:.1f} | {row['series_per_hour']:,} | {after} | {same} "
            f"| {row['others_cpu_share']:.0%} |"
        )
    share = result["ray_share"]
    if share is not None:
        lines += [
            "",
            f"Ray's share (a worker that forecasts nothing, 1 worker): start-up {share['ray_start_s']} s, read and "
            f"plan {share['planned_s']} s, {share['per_batch_s']} s per batch ({share['batches']} batches, actor start "
            "included).",
        ]
    lines += [
        "",
        f"2 workers / 1 worker (median over {len(result['speedup_2_over_1_workers_each_pair'])} pairs run in turn, "
        f"each pair: {result['speedup_2_over_1_workers_each_pair']}): x{result['speedup_2_over_1_workers']} end to "
        f"end, x{result['speedup_2_over_1_workers_after_start']} after Ray's start (goal >= 1.7: "
        f"{'met' if result['goal_2_workers_at_least_1_7x'] else 'NOT met'}); two single-thread processes without Ray "
        f"over one: x{result['two_processes_over_one_without_ray']}.",
        "",
        "| series (extrapolated) | " + " | ".join(row["name"] for row in result["runs"]) + " |",
        "|---|" + "---|" * len(result["runs"]),
    ]
    for target, hours in result["extrapolated_hours"].items():
        lines.append(f"| {int(target):,} | " + " | ".join(f"{hours[row['name']]} h" for row in result["runs"]) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
