"""leapcast.distributed on a local Ray of 2 CPUs (started once for the file): the same forecasts as
Forecaster.forecast, through the Python API and `leapcast forecast --ray`; failing series reported while the rest
finish; a worker killed mid-run retried with every series forecast exactly once."""

from __future__ import annotations

import inspect
import os
import signal
import time
from collections import Counter

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")

from leapcast import cli  # noqa: E402  (after the skip: the plain install has no ray)
from leapcast.distributed import forecast, plan, start_local  # noqa: E402
from leapcast.distributed.cli import SOME_FAILED, forecast_on_ray  # noqa: E402
from leapcast.engine.speculative import SpecConfig  # noqa: E402
from leapcast.forecaster import Forecaster  # noqa: E402

H = 6
# engine batches of 4 series (local and distributed alike), so that a dozen series make several batches
SAMPLING = dict(num_samples=4, seed=11, batch_size=4)


def panel(n: int = 12, bad: bool = False) -> pd.DataFrame:
    """n monthly series of 24..70 values (seasonal, trending, noisy); ``bad`` adds series 'zz-inf' (an infinite
    value) and 'zz-dup' (a duplicated month), which fail validation. They sort last, so the others keep the engine
    batches a local forecast of them alone makes (a failure amid a batch re-forecasts its mates in smaller ones)."""
    rng = np.random.default_rng(0)
    frames = []
    for i in range(n):
        t = np.arange(int(rng.integers(24, 71)))
        y = 50 + i + 0.3 * t + 8 * np.sin(2 * np.pi * t / 12) + rng.normal(0, 1.5, len(t))
        frames.append(
            pd.DataFrame(
                {"unique_id": f"s{i:02d}", "ds": pd.date_range("2001-01-01", periods=len(t), freq="MS"), "y": y}
            )
        )
    if bad:
        frames.append(
            pd.DataFrame(
                {
                    "unique_id": "zz-inf",
                    "ds": pd.date_range("2001-01-01", periods=30, freq="MS"),
                    "y": np.r_[np.ones(29), np.inf],
                }
            )
        )
        dup = pd.DataFrame(
            {"unique_id": "zz-dup", "ds": pd.date_range("2001-01-01", periods=30, freq="MS"), "y": np.arange(30.0)}
        )
        frames.append(pd.concat([dup, dup.tail(1)]))
    return pd.concat(frames, ignore_index=True).sample(frac=1.0, random_state=1)  # rows in any order


def one_thread(fc: Forecaster, df: pd.DataFrame, **kwargs) -> pd.DataFrame:
    """``fc.forecast`` in this process at 1 torch thread, as each worker runs: the sums inside matrix products may
    split over threads differently with more, and a sampled step then flip (1 value in ~1000 on M3-like series)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return fc.forecast(df, H, **kwargs)
    finally:
        torch.set_num_threads(threads)


def same(distributed: pd.DataFrame, local: pd.DataFrame) -> None:
    """Equal value for value, once each: the distributed frame sorted as `forecast` sorts it."""
    got = distributed.sort_values(["unique_id", "ds"]).reset_index(drop=True)
    got = got.astype(local.dtypes.to_dict())  # Ray hands columns back Arrow-backed
    pd.testing.assert_frame_equal(got, local, check_exact=True)


@pytest.fixture(scope="module")
def cluster():
    start_local(num_cpus=2, include_dashboard=False, log_to_driver=False)  # as the CLI starts one
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def house():
    return Forecaster.from_pretrained("house-target")


def test_the_same_forecasts_as_local_despite_failing_series_and_a_killed_worker(cluster, house, tmp_path):
    # Float reductions that could differ between one machine and many: the tokenizer's mean |x| sums a row padded
    # to its engine batch's longest series, and matrix products may pick kernels by batch rows and split their sums
    # by threads. The batches are made of the engine batches a local forecast makes, and the local forecast runs at
    # the workers' 1 thread: then nothing differs, compared value for value.
    psutil = pytest.importorskip("psutil")

    def command(pid: int) -> str:
        """A live process's command line; "" once it is gone (a killed worker stays a zombie until reaped)."""
        try:
            process = psutil.Process(pid)
            return "" if process.status() == psutil.STATUS_ZOMBIE else " ".join(process.cmdline())
        except psutil.Error:
            return ""

    def load(process) -> float:
        """A worker's CPU use over 0.2 s; -1 once it is gone (the pool may end while the test looks)."""
        try:
            return process.cpu_percent(interval=0.2)
        except psutil.Error:
            return -1.0

    df = panel(16, bad=True)
    planned = plan(
        ray.data.from_pandas(df),
        "house-target",
        h=H,
        level=[80],
        series_per_batch=4,
        workers=2,
        errors=tmp_path / "errors",
        **SAMPLING,
    )
    assert (planned.series, planned.batches, planned.series_per_batch) == (18, 5, 4)
    killed: list[int] = []
    frames = []
    for batch in planned.dataset.iter_batches(batch_size=None, batch_format="pandas"):
        frames.append(batch)
        if not killed:  # the first batch is back and the others are in flight: kill the busiest worker
            workers = [p for p in psutil.Process().children(recursive=True) if "BatchForecaster" in command(p.pid)]
            busiest = max(workers, key=load)
            try:
                os.kill(busiest.pid, signal.SIGKILL)
            except ProcessLookupError:  # every batch was done and the pool already gone: nothing was in flight
                pytest.fail("no worker was left to kill after the first batch; the test needs longer batches")
            killed.append(busiest.pid)
    assert killed
    gone = time.monotonic() + 10  # SIGKILL is delivered asynchronously: the process may still run for a moment
    while command(killed[0]) and time.monotonic() < gone:
        time.sleep(0.05)
    assert not command(killed[0])
    # Ray restarts the actor and reruns its batch (or runs it on the other): either way each series comes once
    out = pd.concat(frames, ignore_index=True)
    good = df[~df.unique_id.str.startswith("zz")]
    assert Counter(out.unique_id) == {uid: H for uid in good.unique_id.unique()}  # every series once, none lost
    same(out, one_thread(house, good, level=[80], **SAMPLING))
    errors = pd.read_parquet(tmp_path / "errors").sort_values("unique_id")  # failing series: reported, not lost
    assert errors.unique_id.tolist() == ["zz-dup", "zz-inf"]
    assert "duplicated (unique_id, ds) pairs" in errors.error.iloc[0] and "infinite values" in errors.error.iloc[1]


def test_tasks_beside_workers_holding_every_cpu_reuse_one_process(cluster):
    # Model workers hold both CPUs while each batch's write task (no CPU) runs. Ray's own rule keeps no idle worker
    # process when no CPU is free, so every such task would start a new one (three pids here, seconds of CPU each);
    # start_local keeps an idle one per core, and the same process serves them all.
    @ray.remote(num_cpus=1)
    class Holder:
        def pid(self) -> int:
            return os.getpid()

    @ray.remote(num_cpus=0)
    def task() -> int:
        return os.getpid()

    holders = [Holder.remote() for _ in range(2)]
    pids = []
    try:
        ray.get([h.pid.remote() for h in holders], timeout=120)
        for _ in range(3):
            pids.append(ray.get(task.remote(), timeout=120))
            time.sleep(1.5)  # past Ray's idle time before it stops a worker process (1 s)
    finally:
        for h in holders:
            ray.kill(h)
    assert len(set(pids)) == 1, pids


def test_cli_shards_in_and_out_greedy_speculative_and_dtype(cluster, tmp_path):
    df = panel(bad=True)
    shards = tmp_path / "in"
    shards.mkdir()
    for i, part in enumerate(np.array_split(df.sort_values("unique_id"), 3)):  # a series may span two shards
        part.to_csv(shards / f"part-{i}.csv", index=False)
    args = f"--input {shards / '*.csv'} --output {tmp_path / 'out'} --h {H} --level 80 --num-samples 4 --seed 11"
    args += (
        " --model house-target --batch-size 4 --workers 2 --top-k 1 --draft house-draft --k 3 --fixed-k --dtype float32"
    )
    result = CliRunner().invoke(cli.app, ["forecast", "--ray", *args.split()])
    text = " ".join(result.output.split())
    assert result.exit_code == SOME_FAILED, text
    assert "forecasting 14 series from 3 csv file(s) in 4 batches on 2 workers x 1 threads (seed 11;" in text
    assert "wrote forecasts of 12 series (72 rows)" in text
    assert "2 series failed and were left out" in text and "_errors" in text
    # Ray reads CSV decimals correctly rounded; so does pandas with float_precision="round_trip" (its default
    # parser may land one ulp away, and a float32 scale one ulp away moves a forecast by ~1e-7)
    read = pd.concat(pd.read_csv(p, float_precision="round_trip") for p in sorted(shards.iterdir()))
    spec = SpecConfig(k=3, adaptive=False)  # fixed k: adaptive k follows the clock
    local = Forecaster.from_pretrained("house-target", draft="house-draft", spec=spec, dtype="float32")
    expected = one_thread(local, read[~read.unique_id.str.startswith("zz")], level=[80], top_k=1, **SAMPLING)
    same(pd.read_parquet(tmp_path / "out"), expected)  # the folder's shards; _errors/ is skipped by its name
    assert sorted(pd.read_parquet(tmp_path / "out" / "_errors").unique_id) == ["zz-dup", "zz-inf"]


def test_cli_when_every_series_fails_exits_2_and_keeps_their_errors(cluster, tmp_path):
    bad = panel(0, bad=True)  # only 'zz-inf' and 'zz-dup'
    bad.to_csv(tmp_path / "bad.csv", index=False)
    args = f"--input {tmp_path / 'bad.csv'} --output {tmp_path / 'out'} --h {H} --num-samples 4 --workers 1"
    result = CliRunner().invoke(cli.app, ["forecast", "--ray", *args.split(), "--model", "house-target"])
    text = " ".join(result.output.split())
    assert result.exit_code == 2, text
    assert "wrote forecasts of 0 series" in text and "2 series failed and were left out" in text
    assert sorted(pd.read_parquet(tmp_path / "out" / "_errors").unique_id) == ["zz-dup", "zz-inf"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # nothing left beside it


def test_bad_arguments_are_named_before_any_work(cluster, tmp_path):
    data = ray.data.from_pandas(panel(2))
    with pytest.raises(TypeError, match=r"unexpected keyword argument\(s\) \['num_sample'\]"):
        forecast(data, h=H, num_sample=4)
    with pytest.raises(ValueError, match="`workers` 3 x `threads` 1 do not fit the Ray cluster, which has 2 CPUs"):
        forecast(data, h=H, workers=3)
    with pytest.raises(ValueError, match=r"columns \['item'\] are missing"):
        forecast(data, h=H, id_col="item")
    with pytest.raises(ValueError, match="`level` values must be numbers in"):
        forecast(data, h=H, level=[120])
    with pytest.raises(FileNotFoundError, match="`draft` 'no-such-draft'"):
        forecast(data, h=H, draft="no-such-draft")
    with pytest.raises(ValueError, match="`season_length` must be a positive integer"):
        forecast(data, h=H, season_length=0)
    with pytest.raises(ValueError, match="`spec` SpecConfig.k=8.* runs only with a draft"):
        forecast(data, h=H, spec=SpecConfig(k=8))
    with pytest.raises(ValueError, match="`season_length` sets the seasonal adjustment, which is off for"):
        forecast(data, h=H, model="house-patch-target", season_length=12)
    with pytest.raises(ValueError, match="`device` 'cpux' is not a torch device"):
        forecast(data, h=H, device="cpux")
    with pytest.raises(ValueError, match="the dataset has no rows"):
        forecast(ray.data.from_items([]), h=H)
    stamps = panel(2).assign(unique_id=lambda d: np.where(d.unique_id == "s00", pd.NaT, pd.Timestamp("2020-01-01")))
    with pytest.raises(ValueError, match="null ids"):  # NaT ids, as a local forecast refuses them
        forecast(ray.data.from_pandas(stamps), h=H)
    runner = CliRunner()
    src = tmp_path / "m.parquet"
    panel(2).to_parquet(src)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    for args, needle in [
        (["--address", "head:6379"], "`--address` and `--workers` apply to forecasts on a Ray cluster: add --ray"),
        (["--ray"], "`--output` is required with --ray"),
        (["--ray", "--output", str(tmp_path / "full")], "is not empty; name a new or empty folder"),
        (["--ray", "--output", str(tmp_path / "o"), "--stats-json", "s.json"], "`--stats-json` is not collected"),
        (["--ray", "--output", str(tmp_path / "o"), "--input", str(tmp_path / "*.csv")], "matches no file"),
        (["--ray", "--output", str(tmp_path / "o"), "--workers", "5"], "`--workers` 5 x `--threads` 1 do not fit"),
        (
            ["--ray", "--output", str(tmp_path / "o"), "--adjustment-seasons", "3"],
            "`--adjustment-seasons` sets the seasonal adjustment, which is off for 'house-patch-target'",
        ),
    ]:
        args = (
            ["forecast", "--input", str(src), "--h", "3", *args]
            if "--input" not in args
            else ["forecast", "--h", "3", *args]
        )
        result = runner.invoke(cli.app, args)
        assert result.exit_code == 2 and needle in " ".join(result.output.split()), (args, result.output)


def test_every_cli_option_reaches_the_ray_path():
    options = set(inspect.signature(cli.forecast).parameters) - {"ctx"}
    assert options == set(inspect.signature(forecast_on_ray).parameters) - {"console"}


def test_a_worker_isolates_failing_series_in_whole_engine_batches(house, tmp_path):
    """In this process, without Ray: a block of 14 series of which two fail (at the end of the sorted ids) forecasts the
    other twelve in the engine batches `forecast` makes of them, and writes the two to the errors folder."""
    import torch

    from leapcast.distributed.worker import BATCH, BatchForecaster

    threads = torch.get_num_threads()
    kwargs = dict(h=H, progress=False, **SAMPLING)
    block = panel(bad=True).assign(**{BATCH: 3})
    try:  # a worker sets this process's torch threads to its own (1)
        worker = BatchForecaster("house-target", {}, kwargs, threads=1, errors=str(tmp_path / "errors"), cli=True)
        strict = BatchForecaster("house-target", {}, kwargs, threads=1, errors=None, cli=False)
        (out,) = list(worker(block))
        with pytest.raises(ValueError, match=r"duplicated \(unique_id, ds\) pairs, e\.g\. \('zz-dup'"):
            list(strict(block))
    finally:
        torch.set_num_threads(threads)
    same(out, one_thread(house, block[~block.unique_id.str.startswith("zz")], **SAMPLING))
    errors = pd.read_parquet(tmp_path / "errors" / "batch-000003.parquet")
    assert errors.unique_id.tolist() == ["zz-dup", "zz-inf"]
    assert "pass --freq" not in errors.error.iloc[0]  # messages name options as the command line does (none here)
    assert list(worker(block.iloc[:0])) == []  # an empty block yields nothing


def test_planning_tasks_run_without_importing_leapcast():
    """The row-tagging function reaches Ray's task workers by value: unpickled in a fresh interpreter it tags rows
    by their batch without importing leapcast or torch (seconds per worker process)."""
    import subprocess
    import sys

    from ray import cloudpickle

    from leapcast.distributed import pipeline

    blob = cloudpickle.dumps(pipeline._shipped(pipeline._tag))
    code = (
        "import pickle, sys\nimport numpy as np, pandas as pd\nf = pickle.loads(sys.stdin.buffer.read())\n"
        "out = f(pd.DataFrame({'unique_id': ['a', 'b', 'c']}), id_col='unique_id', bounds=np.array(['b'], dtype=object))\n"
        "print(out[out.columns[-1]].tolist(), 'leapcast' in sys.modules, 'torch' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], input=blob, capture_output=True, check=True)
    assert done.stdout.decode().split() == ["[0,", "1,", "1]", "False", "False"]


@pytest.mark.parametrize(("series", "workers"), [(3000, 2), (3000, 1), (10_000, 8), (70, 2), (18, 2)])
def test_batches_shrink_near_the_end_in_whole_engine_batches(series, workers):
    from leapcast.distributed.pipeline import _batch_sizes

    sizes = _batch_sizes(128, series, workers, 32)
    assert sum(sizes) == series and min(sizes) > 0
    assert all(s % 32 == 0 for s in sizes[:-1])  # the engine batches a local forecast makes
    assert sizes == sorted(sizes, reverse=True) and sizes[0] <= 128
    if workers == 1:
        assert set(sizes[:-1]) <= {128}  # one worker has nobody to wait for: batches as asked
    elif series > 128 * workers:
        assert sizes[0] == 128 and sizes[-1] <= 32  # the last batch leaves the other workers a short wait


def test_batch_sizes_match_the_first_version_where_nothing_shrinks():
    from leapcast.distributed.pipeline import _batch_sizes

    assert _batch_sizes(4, 18, 2, 4) == [4, 4, 4, 4, 2]  # the plan the killed-worker test above runs
    assert _batch_sizes(128, 3000, 2, 32)[:20] == [128] * 20


def test_an_address_nothing_answers_at_is_refused_not_retried_for_ever():
    from leapcast.distributed.cli import _reachable

    with pytest.raises(ValueError, match=r"`address` '127.0.0.1:1': nothing answered there .*waited at most 2 s"):
        _reachable("127.0.0.1:1", seconds=2)
    with pytest.raises(ValueError, match="write HOST:PORT"):
        _reachable("head-node")
    _reachable("auto")  # Ray's own lookup of a running cluster
