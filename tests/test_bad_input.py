"""Bad or odd input, as a new user meets it: the right output or one clear line, never a traceback.

One test (or parametrized family) per defect of the newcomer report; each goes
through the CLI (typer's runner, or a subprocess for the installed entry point)
and, where the API is involved, through ``Forecaster``. A refused CLI call exits
2 with one line naming the argument or file and the value, and never reaches
the last-resort handler (``leapcast.cli.main``), which only bugs should reach.
"""

import gzip
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import make_checkpoint
from typer.testing import CliRunner

from leapcast import cli
from leapcast.cli import app
from leapcast.forecaster import Forecaster
from leapcast.frame import MAX_MISSING_GRID, to_panel
from leapcast.inputs import MAX_ABS, MAX_HORIZON

runner = CliRunner()


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny", prediction_length=8, context_length=64)


@pytest.fixture(scope="module")
def fc(model):
    return Forecaster.from_pretrained(model)


def monthly(ids=("a", "b"), n=36, seed=0, start="2015-01-01") -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    parts = [
        pd.DataFrame(
            {
                "unique_id": uid,
                "ds": pd.date_range(start, periods=n, freq="MS"),
                "y": 100 + 10 * np.sin(np.arange(n) / 2) + rng.normal(0, 3, n),
            }
        )
        for uid in ids
    ]
    return pd.concat(parts, ignore_index=True)


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})


def refused(result, *needles: str) -> str:
    """Exit 2, one line, no traceback, every needle present; the last-resort handler never fired."""
    text = result.output
    assert result.exit_code == 2, text
    assert isinstance(result.exception, SystemExit), f"an exception escaped the checks: {result.exception!r}"
    assert "Traceback" not in text and "internal error" not in text
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), text
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def write(frame: pd.DataFrame, path) -> str:
    frame.to_csv(path, index=False)
    return str(path)


# --- 1. huge and tiny magnitudes: float64 in, float64 out, forecast(c * y) == c * forecast(y) -----------------

SCALES = [1e-300, 2.0**-600, 1e-100, 1e-30, 1e-3, 3.7, 1e30, 1e37, 2.0**500, 1e100, 1e300]


@pytest.mark.parametrize("c", SCALES)
def test_forecast_is_scale_equivariant(fc, c):
    df = monthly()
    base = fc.forecast(df, 12, level=[80], num_samples=5, seed=3)
    scaled = fc.forecast(df.assign(y=df.y * c), 12, level=[80], num_samples=5, seed=3)
    for col in ("tiny", "tiny-lo-80", "tiny-hi-80"):
        got, want = scaled[col].to_numpy(), base[col].to_numpy() * c
        assert np.isfinite(got).all() and got.dtype == np.float64
        # relative to the forecast's size: an interpolated quantile between samples of opposite
        # sign cancels, and carries the float32 scale's rounding (1e-7 of the size) at any c
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6 * np.abs(want).max())


def test_predict_near_1e300_is_finite_and_to_scale(fc):
    x = np.random.default_rng(0).random(100)
    huge = fc.predict(x * 1e300 + 1e300, 12, num_samples=4, seed=0)
    plain = fc.predict(x + 1.0, 12, num_samples=4, seed=0)
    assert huge.dtype == torch.float64 and torch.isfinite(huge).all()
    torch.testing.assert_close(huge, plain * 1e300, rtol=1e-6, atol=0)


def test_cli_writes_huge_values(model, tmp_path):
    df = monthly(ids=("a",))
    src = write(df.assign(y=df.y * 1e300), tmp_path / "huge.csv")
    result = invoke("forecast", "--model", model, "--input", src, "--h", 6, "--seed", 0, "--num-samples", 4)
    assert result.exit_code == 0, result.output
    out = pd.read_csv(pd.io.common.StringIO(result.stdout))
    assert np.isfinite(out["tiny"]).all() and (out["tiny"].abs() > 1e301).all()


def test_beyond_the_largest_magnitude_is_refused(model, fc, tmp_path):
    df = monthly(ids=("a",))
    with pytest.raises(ValueError, match=r"\|value\| 1\.5e\+306, beyond the largest leapcast forecasts \(1e\+305"):
        fc.predict(df.y.to_numpy() * 0 + 1.5e306, 4)
    src = write(df.assign(y=df.y * 1e305), tmp_path / "too-big.csv")
    refused(invoke("forecast", "--model", model, "--input", src, "--h", 3), f"{MAX_ABS:g}")


# --- 2. two-point series: month starts or a refusal --------------------------------------------------------


def test_two_month_starts_forecast_month_starts(model, fc, tmp_path):
    df = pd.DataFrame({"unique_id": "a", "ds": pd.to_datetime(["2000-01-01", "2000-02-01"]), "y": [1.0, 2.0]})
    want = list(pd.date_range("2000-03-01", periods=4, freq="MS"))
    assert list(fc.forecast(df, 4, num_samples=2, seed=0)["ds"]) == want
    result = invoke(
        "forecast", "--model", model, "--input", write(df, tmp_path / "two.csv"), "--h", 4, "--num-samples", 2
    )
    assert result.exit_code == 0, result.output
    assert list(pd.to_datetime(pd.read_csv(pd.io.common.StringIO(result.stdout))["ds"])) == want


def test_two_points_quarters_and_month_ends():
    q = pd.DataFrame({"unique_id": "a", "ds": pd.to_datetime(["2000-01-01", "2000-04-01"]), "y": [1.0, 2.0]})
    assert to_panel(q).freq.freqstr.startswith("QS")
    me = pd.DataFrame({"unique_id": "a", "ds": pd.to_datetime(["2000-01-31", "2000-02-29"]), "y": [1.0, 2.0]})
    assert to_panel(me).freq.freqstr == "ME"


def test_two_points_on_no_calendar_grid_ask_for_freq(model, tmp_path):
    df = pd.DataFrame({"unique_id": "a", "ds": pd.to_datetime(["2000-01-15", "2000-02-15"]), "y": [1.0, 2.0]})
    with pytest.raises(ValueError, match="pass freq="):
        to_panel(df)
    refused(invoke("forecast", "--model", model, "--input", write(df, tmp_path / "mid.csv"), "--h", 2), "pass --freq")


# --- 3. a frequency that empties the grid ------------------------------------------------------------------


def test_a_finer_freq_than_the_data_is_refused(model, fc, tmp_path):
    df = monthly(ids=("a",))
    with pytest.raises(ValueError, match=r"rows at only 36 of the 1066 steps .*\(97% missing"):
        fc.forecast(df, 12, freq="D")
    refused(
        invoke("forecast", "--model", model, "--input", write(df, tmp_path / "m.csv"), "--h", 12, "--freq", "D"),
        "'D'",
        "97% missing",
        f"more than {MAX_MISSING_GRID:.0%}",
        "--freq",
    )


def test_up_to_half_the_grid_missing_is_fine():
    df = monthly(ids=("a",), n=20).iloc[::2]  # every other month: 10 rows on a 19-step grid
    assert np.isnan(to_panel(df, freq="MS").contexts[0]).sum() == 9


# --- 4. a series' forecast does not depend on the other series in the file -----------------------------------


def test_forecast_follows_the_id_not_the_batch(model, fc, tmp_path):
    many = monthly(ids=[f"s{i:02d}" for i in range(50)], seed=1)
    alone = fc.forecast(many[many.unique_id == "s17"], 8, level=[80], num_samples=6, seed=7)
    together = fc.forecast(many, 8, level=[80], num_samples=6, seed=7)
    first = monthly(ids=("a-sorts-first",), seed=9)  # moves every series one place down
    shifted = fc.forecast(pd.concat([first, many]), 8, level=[80], num_samples=6, seed=7)
    for other in (together, shifted):
        mine = other[other.unique_id == "s17"].reset_index(drop=True)
        # rtol: padding beside longer series may move the float32 scale by one ulp (test_forecaster_api)
        pd.testing.assert_frame_equal(mine, alone, rtol=1e-5, atol=0)
    a = together.set_index("unique_id").loc["s03"].reset_index(drop=True)
    b = shifted.set_index("unique_id").loc["s03"].reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b, rtol=1e-5, atol=0)
    # the CLI reads ids back from CSV; same stream for the same id
    src = write(many[many.unique_id == "s17"], tmp_path / "one.csv")
    result = invoke(
        "forecast", "--model", model, "--input", src, "--h", 8, "--level", 80, "--num-samples", 6, "--seed", 7
    )
    cli_out = pd.read_csv(pd.io.common.StringIO(result.stdout))
    np.testing.assert_allclose(cli_out["tiny"], alone["tiny"], rtol=1e-12)


def test_integer_and_string_ids_share_a_stream(fc):
    df = monthly(ids=("7",))
    as_int = fc.forecast(df.assign(unique_id=7), 4, num_samples=3, seed=1)
    as_str = fc.forecast(df, 4, num_samples=3, seed=1)
    np.testing.assert_array_equal(as_int["tiny"], as_str["tiny"])


def test_the_array_api_keys_by_position(fc):
    a, b = np.arange(30.0) + 5, np.arange(30.0)[::-1] + 5
    ab, ba = fc.predict([a, b], 4, num_samples=3, seed=2), fc.predict([b, a], 4, num_samples=3, seed=2)
    assert not torch.allclose(ab[0], ba[1])  # a's paths come from stream 0 first, stream 1 second


# --- 5. unreadable files and impossible options: one line, exit 2 --------------------------------------------


def test_unreadable_inputs(model, tmp_path):
    def go(path):
        return invoke("forecast", "--model", model, "--input", path, "--h", 3)

    (tmp_path / "empty.csv").write_text("")
    refused(go(tmp_path / "empty.csv"), "`--input`", "empty.csv", "is empty")
    (tmp_path / "blank.csv").write_text("\n\n")
    refused(go(tmp_path / "blank.csv"), "blank.csv", "no columns")
    (tmp_path / "noise.csv").write_bytes(np.random.default_rng(0).bytes(4096))
    refused(go(tmp_path / "noise.csv"), "noise.csv", "not UTF-8")
    (tmp_path / "bad.parquet").write_bytes(b"PAR1" + b"\x00" * 64)
    refused(go(tmp_path / "bad.parquet"), "bad.parquet", "could not be read as parquet")
    refused(go(tmp_path), "`--input`", "is a folder")


def test_corrupt_weights(model, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(model, broken)
    data = (broken / "model.safetensors").read_bytes()
    (broken / "model.safetensors").write_bytes(data[: len(data) // 2])
    src = write(monthly(), tmp_path / "m.csv")
    refused(
        invoke("forecast", "--model", broken, "--input", src, "--h", 3), "model.safetensors", "truncated or corrupt"
    )
    (broken / "model.safetensors").write_bytes(b"garbage" * 10)
    refused(invoke("info", broken), "model.safetensors", "not a readable safetensors file")


@pytest.mark.parametrize(
    "args, needles",
    [
        (["--threads", "0"], ["`--threads` must be >= 1, got 0"]),
        (["--device", "tpu9"], ["`--device` 'tpu9' is not a torch device"]),
        (["--output", "no/such/folder/out.csv"], ["`--output`", "does not exist"]),
        (["--output", "out.txt"], ["`--output`", "expected a file ending in"]),
        (["--draft", "early-exit:1", "--stats-json", "missing-dir/stats.json"], ["`--stats-json`", "does not exist"]),
    ],
)
def test_impossible_options_are_refused_before_work(model, tmp_path, monkeypatch, args, needles):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(Forecaster, "forecast", _no_work)
    refused(
        invoke("forecast", "--model", model, "--input", write(monthly(), tmp_path / "m.csv"), "--h", 3, *args), *needles
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a build without CUDA")
def test_cuda_on_a_cpu_build(model, tmp_path):
    refused(
        invoke(
            "forecast", "--model", model, "--input", write(monthly(), tmp_path / "m.csv"), "--h", 3, "--device", "cuda"
        ),
        "`--device` 'cuda'",
        "pass 'cpu'",
    )
    with pytest.raises(ValueError, match="`device` 'cuda'"):
        Forecaster.from_pretrained(model, device="cuda")


def _no_work(*args, **kwargs):
    raise AssertionError("the forecast ran although the input should have been refused first")


def test_plot_refusals(tmp_path):
    pytest.importorskip("matplotlib")
    (tmp_path / "empty.csv").write_text("")
    forecast = pd.DataFrame({"unique_id": "a", "ds": pd.date_range("2020-01-01", periods=3, freq="MS"), "m": 1.0})
    src = write(forecast, tmp_path / "fc.csv")
    refused(invoke("plot", src, "--input", tmp_path / "empty.csv"), "`--input`", "is empty")
    refused(invoke("plot", src, "--out", tmp_path / "nope" / "fc.png"), "`--out`", "does not exist")
    refused(invoke("plot", tmp_path / "empty.csv"), "`FILE`", "is empty")
    for last in ("-3", "0"):  # tail(-3) would drop the first 3 values and draw the rest, silently
        refused(invoke("plot", src, "--last", last), "`--last`", "a positive integer")
    other = pd.DataFrame({"unique_id": "b", "ds": pd.date_range("2019-01-01", periods=12, freq="MS"), "y": 1.0})
    refused(invoke("plot", src, "--input", write(other, tmp_path / "other.csv")), "`--input`", "none of the series")
    (tmp_path / "no-shards").mkdir()
    refused(invoke("plot", tmp_path / "no-shards"), "FILE", "without Parquet shards")
    bad = forecast.astype({"m": object}).assign(m=["1", "x", "2"])
    refused(invoke("plot", write(bad, tmp_path / "bad.csv")), "column 'm'", "not numbers", "'x'")
    refused(invoke("plot", write(pd.concat([forecast, forecast]), tmp_path / "dup.csv")), "repeated (unique_id, ds)")
    refused(
        invoke("plot", write(forecast.assign(ds="notadate"), tmp_path / "bd.csv")),
        "column 'ds'",
        "does not parse as dates",
    )
    steps = write(forecast.assign(ds=[1, 2, 3]), tmp_path / "steps.csv")
    history = write(other.assign(unique_id="a"), tmp_path / "history.csv")
    refused(invoke("plot", steps, "--input", history), "step numbers in steps.csv but dates in --input")


def test_plot_draws_the_last_cutoff_of_a_cross_validation_frame_in_rows_of_four(tmp_path):
    pytest.importorskip("matplotlib")
    from PIL import Image

    days = pd.date_range("2020-01-01", periods=4, freq="MS")
    cv = pd.concat(
        pd.DataFrame(
            {
                "unique_id": f"s{i}",
                "ds": days[c : c + 2],
                "cutoff": days[c] - pd.offsets.MonthBegin(),
                "y": 1.0,
                "m": 2.0,
            }
        )
        for i in range(6)
        for c in (0, 1)
    )  # windows overlap: each (id, ds) twice
    result = invoke("plot", write(cv, tmp_path / "cv.csv"), *[a for i in range(6) for a in ("--ids", f"s{i}")])
    assert result.exit_code == 0, result.output
    assert "last cutoff (of up to 2 a series)" in result.output
    width, height = Image.open(tmp_path / "cv.png").size
    assert width < 4 * height  # 6 panels: two rows of four columns (about 2.8:1), not one row of six (8.4:1)


def test_plot_reads_the_folder_of_shards_a_ray_forecast_writes(tmp_path):
    pytest.importorskip("matplotlib")
    shards = tmp_path / "out"
    (shards / "_errors").mkdir(parents=True)
    for i, uid in enumerate(("a", "b")):
        days = pd.date_range("2020-01-01", periods=3, freq="MS")
        pd.DataFrame({"unique_id": uid, "ds": days, "m": float(i)}).to_parquet(shards / f"part-{i}.parquet")
    pd.DataFrame({"unique_id": ["zz"], "error": ["bad"]}).to_parquet(shards / "_errors" / "batch-0.parquet")
    result = invoke("plot", shards)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out.png").stat().st_size > 0


# --- 6. bench checks its packages before it computes ----------------------------------------------------


def test_bench_without_matplotlib_is_refused_first(monkeypatch, tmp_path):
    import importlib.util

    from leapcast.eval import bench

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name, *a))
    monkeypatch.setattr(bench, "run", _no_work)
    refused(invoke("bench", "--out-dir", tmp_path / "out"), "needs matplotlib", "pip install 'leapcast[bench,data]'")


def test_bench_and_report_refuse_what_would_fail_after_the_run(monkeypatch, tmp_path):
    pytest.importorskip("matplotlib")
    from leapcast.eval import bench

    monkeypatch.setattr(bench, "run", _no_work)
    (tmp_path / "afile").write_text("x")
    refused(invoke("bench", "--out-dir", tmp_path / "afile" / "x"), "`--out-dir`", "could not be made")
    refused(invoke("bench", "--ks", 2, "--ks", 2, "--out-dir", tmp_path / "b"), "`--ks` repeats 2")
    refused(invoke("report", tmp_path / "afile", "--suite", "nope"), "`--suite` must be one of")


# --- 7. horizons past the calendar or the documented maximum: refused before any model work -----------------


def _calendar_end(h: int):
    """The h-th month start after 2017-12-01, or None where pandas cannot hold it (pandas 2: nanoseconds end in 2262;
    pandas 3 keeps coarser units and holds it)."""
    try:
        return pd.date_range("2017-12-01", periods=h + 1, freq="MS")[-1]
    except (pd.errors.OutOfBoundsDatetime, OverflowError):
        return None


def test_a_horizon_past_the_calendar_is_refused_before_work(model, tmp_path, monkeypatch):
    monkeypatch.setattr(Forecaster, "predict", _no_work)
    src = write(monthly(), tmp_path / "m.csv")
    if _calendar_end(4000) is None:
        refused(
            invoke("forecast", "--model", model, "--input", src, "--h", 4000),
            "`--h`=4000",
            "run past the last timestamp pandas holds",
        )
    else:  # this pandas holds the dates: they are the right ones, and the forecast goes ahead
        from leapcast.frame import future_times

        assert future_times(to_panel(monthly()), 4000)[-1] == _calendar_end(4000)


def test_a_horizon_past_the_largest_is_refused_before_work(model, tmp_path, monkeypatch):
    monkeypatch.setattr(Forecaster, "predict", _no_work)
    refused(
        invoke("forecast", "--model", model, "--input", write(monthly(), tmp_path / "m.csv"), "--h", 100_000),
        "`--h` is 100000",
        f"largest horizon leapcast runs ({MAX_HORIZON} steps)",
    )


def test_api_refuses_long_horizons_before_work(fc, monkeypatch):
    import leapcast.forecaster

    monkeypatch.setattr(leapcast.forecaster, "rollout", _no_work)
    with pytest.raises(ValueError, match="`prediction_length` is 100000, above the largest horizon"):
        fc.predict(np.arange(20.0), 100_000)
    if _calendar_end(4000) is None:
        with pytest.raises(ValueError, match="`h`=4000 steps of 'MS' after 2017-12-01 00:00:00 run past"):
            fc.forecast(monthly(), 4000)


# --- 8. messages that say what the user typed ----------------------------------------------------------


def test_cli_messages_use_option_names(model, tmp_path):
    two = pd.DataFrame({"item": ["a", "a"], "ds": pd.to_datetime(["2000-01-15", "2000-02-15"]), "y": [1.0, 2.0]})
    src = write(two, tmp_path / "t.csv")
    refused(invoke("forecast", "--model", model, "--input", src, "--h", 2), "pass --id-col, --time-col, --target-col")
    line = refused(invoke("forecast", "--model", model, "--input", src, "--h", 2, "--id-col", "item"), "pass --freq")
    assert "freq=" not in line
    refused(
        invoke("forecast", "--model", model, "--input", src, "--h", 2, "--id-col", "item", "--freq", "fortnightly"),
        "`--freq` 'fortnightly' is not a pandas frequency",
    )


def test_draft_and_hub_ids_are_named(model, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))  # offline (conftest) and not cached
    src = write(monthly(), tmp_path / "m.csv")
    refused(invoke("forecast", "--model", model, "--input", src, "--h", 3, "--draft", "nothing"), "`--draft` 'nothing'")
    line = refused(
        invoke("forecast", "--input", src, "--h", 3, "--model", "amazon/chronos-t5-small"),
        "`--model` 'amazon/chronos-t5-small' is a model hub id that is not in the local model cache",
        "HF_HUB_OFFLINE",
    )
    assert "leapcast init" not in line


def test_bad_config_json_is_named(model, tmp_path):
    import shutil

    folder = tmp_path / "badjson"
    shutil.copytree(model, folder)
    (folder / "config.json").write_text("{not json")
    refused(invoke("info", folder), str(folder / "config.json"), "is not valid JSON")


def test_config_of_another_size_is_summarised(model, tmp_path):
    other = make_checkpoint(tmp_path / "other", d_model=48, prediction_length=8, context_length=64)
    (other / "model.safetensors").write_bytes(
        (model / "model.safetensors").read_bytes()
    )  # 32-wide weights, 48-wide config
    line = refused(invoke("info", other), "do not match its config.json", "tensors have other shapes")
    assert len(line) < 600


def test_level_as_a_string_is_named(fc):
    with pytest.raises(ValueError, match=r"`level` must be a list of numbers in \(0, 100\), e.g. \[80, 95\], got '80'"):
        fc.forecast(monthly(), 3, level="80")
    with pytest.raises(ValueError, match=r"`quantiles` must be a list .* got '0.5'"):
        fc.forecast(monthly(), 3, quantiles="0.5")


def test_plot_of_a_history_file_is_refused(tmp_path):
    pytest.importorskip("matplotlib")
    src = write(monthly(), tmp_path / "history.csv")
    refused(invoke("plot", src), "history.csv has no forecast columns", "is it the history?")


# --- 9-12. help, info, bench's folder, compressed CSV -----------------------------------------------------


@pytest.mark.parametrize("columns", ["80", "100"])
def test_help_shows_whole_option_names(columns):
    result = runner.invoke(app, ["forecast", "--help"], env={"COLUMNS": columns})
    assert result.exit_code == 0
    assert "…" not in result.output
    for name in (
        "--seasonal-adjustment",
        "--no-seasonal-adjustment",
        "--adjustment-seasons",
        "--stats-json",
        "--stop-below",
    ):
        assert name in result.output


def test_info_list_says_what_each_model_is():
    result = invoke("info", "--list")
    lines = result.output.strip().splitlines()
    assert [line.split()[0] for line in lines] == [
        "house-draft",
        "house-patch-draft",
        "house-patch-target",
        "house-target",
    ]
    assert "chronos-t5, 0.46M parameters: A draft model for speculative decoding" in lines[0]
    assert "toto, 0.15M parameters: A draft for speculative decoding" in lines[1]
    assert "toto, 1.93M parameters" in lines[2]
    assert "chronos-t5, 7.87M parameters" in lines[3]


def test_bench_writes_outside_the_tracked_results():
    import typer.main

    options = {p.name: p for p in typer.main.get_command(app).commands["bench"].params}
    assert str(options["out_dir"].default) == "leapcast-bench"


def test_gzipped_csv_is_read(model, tmp_path):
    df = monthly()
    path = tmp_path / "m.csv.gz"
    with gzip.open(path, "wt") as f:
        df.to_csv(f, index=False)
    result = invoke("forecast", "--model", model, "--input", path, "--h", 3, "--seed", 0, "--num-samples", 2)
    assert result.exit_code == 0, result.output
    assert len(pd.read_csv(pd.io.common.StringIO(result.stdout))) == 6


# --- the installed command: a refusal in a real process, and the last resort for bugs ----------------------


def test_installed_command_refuses_without_traceback(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    done = subprocess.run(
        [sys.executable, "-m", "leapcast.cli", "forecast", "--input", str(tmp_path / "empty.csv"), "--h", "3"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr
    assert "is empty" in done.stderr


def test_last_resort_handler_reports_a_bug(monkeypatch, capsys):
    monkeypatch.setattr(cli, "check_int", lambda *args, **kwargs: 1 / 0)
    monkeypatch.setattr(sys, "argv", ["leapcast", "forecast", "--input", "x.csv", "--h", "3"])
    monkeypatch.delenv("LEAPCAST_TRACEBACK", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert "internal error (ZeroDivisionError)" in err and "bug in leapcast" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "error, words",
    [
        (PermissionError(13, "Permission denied", "/sys/x"), "error: Permission denied (/sys/x)"),
        (RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 bytes"), "out of memory"),
        (MemoryError(), "a lower --batch-size, --num-samples or --max-rows"),
        (RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"), "a lower batch_size in the config"),
    ],
)
def test_the_machine_refusing_the_work_is_not_reported_as_a_bug(monkeypatch, capsys, error, words):
    def refuse(*args, **kwargs):
        raise error

    monkeypatch.setattr(cli, "check_int", refuse)
    monkeypatch.setattr(sys, "argv", ["leapcast", "forecast", "--input", "x.csv", "--h", "3"])
    monkeypatch.delenv("LEAPCAST_TRACEBACK", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and words in err and "bug" not in err, err


def test_four_weekly_pairs_keep_their_fixed_step():
    df = pd.DataFrame(
        {"unique_id": ["a", "a", "b", "b"], "ds": pd.to_datetime(["2020-01-01", "2020-01-29"] * 2), "y": 1.0}
    )
    assert to_panel(df).freq == pd.tseries.frequencies.to_offset("28D")


def test_truncated_and_corrupt_compressed_inputs(model, tmp_path):
    good = tmp_path / "m.csv.gz"
    with gzip.open(good, "wt") as f:
        monthly().to_csv(f, index=False)
    (tmp_path / "cut.csv.gz").write_bytes(good.read_bytes()[:60])
    refused(
        invoke("forecast", "--model", model, "--input", tmp_path / "cut.csv.gz", "--h", 3),
        "cut.csv.gz",
        "could not be read as csv",
    )
    (tmp_path / "bad.csv.xz").write_bytes(b"not xz at all" * 10)
    refused(
        invoke("forecast", "--model", model, "--input", tmp_path / "bad.csv.xz", "--h", 3),
        "bad.csv.xz",
        "could not be read as csv",
    )


def test_stream_keys_and_seeds_beyond_64_bits_are_refused(fc):
    with pytest.raises(ValueError, match=r"`series_keys` must be integers in \[0, 2\*\*64\)"):
        fc.predict([np.arange(10.0)], 3, series_keys=[2**64])
    with pytest.raises(ValueError, match=r"`seed` must be an integer in \[0, 2\*\*64\)"):
        fc.predict([np.arange(10.0)], 3, seed=2**64)


@pytest.mark.parametrize(
    ("settings", "words"),
    [
        ({"temperature": 1e-39}, "`temperature` must be a finite number >= 1e-06"),  # logits / it overflow float32
        ({"temperature": True}, "`temperature`"),
        ({"top_p": True}, "`top_p`"),
    ],
)
def test_sampling_settings_refused(fc, settings, words):
    with pytest.raises(ValueError, match=words):
        fc.predict(np.arange(30.0), 3, **settings)


def test_numpy_scalars_of_any_width_are_numbers(fc):
    x = np.arange(30.0)
    want = fc.predict(x, 3, seed=1, temperature=0.5, top_p=0.5)
    assert torch.equal(fc.predict(x, 3, seed=1, temperature=np.float32(0.5), top_p=np.float16(0.5)), want)
    df = monthly()
    pd.testing.assert_frame_equal(
        fc.forecast(df, 3, level=np.array([80, 95]), seed=0), fc.forecast(df, 3, level=[80, 95], seed=0)
    )
    with pytest.raises(ValueError, match="`quantiles` is empty"):
        fc.forecast(df, 3, quantiles=[])


def test_a_bfloat16_tensor_is_read_as_its_values(fc):
    x = torch.arange(30.0).to(torch.bfloat16)
    assert torch.equal(fc.predict(x, 3, seed=2), fc.predict(x.float(), 3, seed=2))
    assert torch.equal(fc.predict([x, x[:20]], 3, seed=2), fc.predict([x.float(), x[:20].float()], 3, seed=2))


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"num_heads": None}, "lacks the field 'num_heads'"),
        ({"chronos_config": [1]}, "has a field of the wrong type"),
        ({"architectures": 5}, "`architectures` 5 is not supported"),
        ({"d_model": "wide"}, "has a field of the wrong type"),
    ],
)
def test_a_config_with_a_field_missing_or_mistyped_is_named(model, tmp_path, change, words):
    import json
    import shutil

    from leapcast.models.loading import CheckpointError, load_model

    folder = tmp_path / "m"
    shutil.copytree(model, folder)
    config = json.loads((folder / "config.json").read_text())
    for key, value in change.items():
        if value is None:
            del config[key]
        else:
            config[key] = value
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=words):
        load_model(folder)


def test_a_config_with_a_byte_order_mark_loads(model, tmp_path):
    import shutil

    from leapcast.models.loading import load_model

    folder = tmp_path / "m"
    shutil.copytree(model, folder)
    (folder / "config.json").write_bytes(b"\xef\xbb\xbf" + (folder / "config.json").read_bytes())
    load_model(folder)


def test_a_series_with_nothing_observed_in_the_window_the_model_reads_is_refused(fc):
    """Only the last context_length values reach the model: with all of them missing it would forecast from
    nothing (a number set by the series' scale alone)."""
    window = fc.model.context_length
    with pytest.raises(ValueError, match=f"series 1 of `inputs` has no observed value in its last {window} values"):
        fc.predict([np.arange(30.0), np.r_[np.full(20, 1000.0), np.full(window, np.nan)]], 3)
    fc.predict([np.r_[np.full(20, 1000.0), np.full(window - 1, np.nan)]], 3)  # one observed value in reach: fine


def test_a_tolerance_on_a_token_model_is_refused_not_ignored(model):
    from leapcast import SpecConfig

    fc = Forecaster.from_pretrained(model, draft="seasonal", spec=SpecConfig(k=2, adaptive=False, tolerance=0.1))
    with pytest.raises(ValueError, match="`tolerance` 0.1 applies to patch models' mean decoding"):
        fc.predict(np.arange(30.0), 3, top_k=1)


def test_a_frame_series_with_nothing_observed_in_reach_is_named_by_its_id(fc):
    window = fc.model.context_length
    df = monthly(n=20 + window).assign(
        y=lambda d: np.where((d.unique_id == "b") & (d.index % (20 + window) >= 20), np.nan, d.y)
    )
    with pytest.raises(ValueError, match=f"series 'b' has no observed 'y' in its last {window} steps"):
        fc.forecast(df, 3)


def test_a_series_below_the_smallest_normal_float_is_refused(fc):
    with pytest.raises(ValueError, match="series 0 of `inputs`.*multiply by 1e100"):
        fc.predict(np.full(30, 1e-310), 3)
    fc.predict(np.zeros(30), 3)  # exactly 0 is a level, not lost precision


def test_distill_steps_0_is_refused_not_ignored():
    result = invoke("distill", "--target", "house-target", "--out-dir", "unused", "--steps", 0)
    assert result.exit_code == 2 and "`steps` must be >= 1, got 0" in result.output


def test_a_frame_series_refused_for_its_values_is_named_by_id(model, fc, tmp_path):
    frame = pd.DataFrame({"unique_id": ["s0", "s0", "s1", "s1"], "ds": [1, 2, 1, 2], "y": [1.0, 2.0, 6e307, 1.0]})
    with pytest.raises(ValueError, match="series 's1' holds \\|value\\| 6e\\+307"):
        fc.forecast(frame, 3)
    refused(
        invoke("forecast", "--model", model, "--input", write(frame, tmp_path / "huge.csv"), "--h", 3), "series 's1'"
    )
