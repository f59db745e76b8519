"""Where the serving engine's time goes, per batching mode: the scheduler in-process, without HTTP.

C client threads in a closed loop submit the load test's requests (benchmarks/load_test.py's pool: 1-8 series,
contexts 50-500, h 6-48, 20 samples) straight to ``leapcast.serve.scheduler.Scheduler`` until N are answered.
Reported per mode: series/s, and the seconds spent in the model's decode passes (``step``), its context passes
(``prefix``), joining caches (``merge``) and dropping rows (``select``), with the mean rows per decode pass and,
for continuous batching, how many of them belong to finished series riding along until the next compaction.

    python benchmarks/scheduler_profile.py --modes continuous static off --clients 32 --requests 150
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import threading
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from load_test import make_pool  # noqa: E402

from leapcast.engine import loop  # noqa: E402
from leapcast.forecaster import Forecaster  # noqa: E402
from leapcast.serve.limits import ServeConfig  # noqa: E402
from leapcast.serve.scheduler import Scheduler  # noqa: E402

PARTS = ("step", "prefix", "merge", "select")


def instrument(model, seconds: dict, counts: dict):
    """Time the model's contract methods on this instance, and count rows per decode pass -> a function that
    undoes both."""
    for name in PARTS:
        inner = getattr(model, name)

        def timed(*a, _inner=inner, _name=name, **k):
            t0 = time.perf_counter()
            out = _inner(*a, **k)
            seconds[_name] += time.perf_counter() - t0
            counts[_name] += 1
            return out

        setattr(model, name, timed)
    step = loop.Decoder.step

    def counted(self, *a, **k):
        if self.rows is not None:
            counts["rows"] += len(self.rows.series)
            counts["riding"] += self.finished_rows
        return step(self, *a, **k)

    loop.Decoder.step = counted  # type: ignore[method-assign]

    def restore() -> None:
        loop.Decoder.step = step  # type: ignore[method-assign]
        for name in PARTS:  # back to the class's methods
            delattr(model, name)

    return restore


def run(fc: Forecaster, mode: str, requests: list, clients: int, total: int, max_rows: int, threads: int) -> dict:
    seconds: dict[str, float] = collections.defaultdict(float)
    counts: dict[str, int] = collections.Counter()
    restore = instrument(fc.model, seconds, counts)
    leave = mode == "static-leave"  # static batches whose series leave as they finish (`--static-leave`)
    batching = "static" if leave else mode
    sched = Scheduler(fc, ServeConfig(batching=batching, max_rows=max_rows, threads=threads, static_leave=leave))
    sched.start()
    lock = threading.Lock()
    state = {"next": 0, "done": 0, "series": 0}

    def client() -> None:
        while True:
            with lock:
                if state["next"] >= total:
                    return
                j = state["next"]
                state["next"] += 1
            xs, h, seed = requests[j % len(requests)]
            job = sched.submit(fc.prepare(xs, h, num_samples=20, seed=seed), seed)
            job.future.result()
            with lock:
                state["done"] += 1
                state["series"] += len(xs)

    t0 = time.perf_counter()
    workers = [threading.Thread(target=client) for _ in range(clients)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - t0
    sched.close()
    restore()
    passes = max(counts["step"], 1)
    return dict(
        mode=mode,
        clients=clients,
        requests=state["done"],
        series=state["series"],
        seconds=elapsed,
        series_per_s=state["series"] / elapsed,
        part_seconds={n: seconds[n] for n in PARTS},
        part_calls={n: counts[n] for n in PARTS},
        rows_per_pass=counts["rows"] / passes,
        riding_rows_per_pass=counts["riding"] / passes,
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="house-target")
    p.add_argument("--modes", nargs="+", default=["continuous", "static", "off"])
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--requests", type=int, default=150)
    p.add_argument("--max-rows", type=int, default=640)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    fc = Forecaster.from_pretrained(args.model)
    requests = []
    for body, _ in make_pool(256, 0):
        b = json.loads(body)
        requests.append(([torch.tensor(s["values"], dtype=torch.float32) for s in b["series"]], b["h"], b["seed"]))
    rows = []
    for mode in args.modes:
        r = run(fc, mode, requests, args.clients, args.requests, args.max_rows, args.threads)
        rows.append(r)
        parts = ", ".join(f"{n} {r['part_seconds'][n]:.1f} s ({r['part_calls'][n]})" for n in PARTS)
        print(
            f"{mode:10s} {r['requests']} requests, {r['series']} series in {r['seconds']:.1f} s: "
            f"{r['series_per_s']:.2f} series/s; {parts}; rows per pass {r['rows_per_pass']:.0f} "
            f"(finished, riding along: {r['riding_rows_per_pass']:.0f})",
            flush=True,
        )
    if args.out:
        args.out.write_text(json.dumps(dict(command="python " + " ".join(sys.argv), rows=rows), indent=1) + "\n")


if __name__ == "__main__":
    main()
