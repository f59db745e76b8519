"""`leapcast init | info | forecast` through typer's CliRunner."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from leapcast import registry
from leapcast.cli import app
from leapcast.data import example_path
from leapcast.forecaster import Forecaster
from leapcast.models.chronos_tokenizer import ChronosTokenizerConfig
from leapcast.models.loading import load_model
from leapcast.models.presets import random_chronos_t5, save_chronos_t5
from leapcast.models.t5 import T5Config

runner = CliRunner()


def squeeze(text: str) -> str:
    """Output without whitespace: rich wraps long paths at the console width."""
    return "".join(text.split())


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    cfg = T5Config(vocab_size=4096, d_model=32, d_kv=8, d_ff=64, num_layers=1, num_decoder_layers=1, num_heads=4)
    chronos = ChronosTokenizerConfig(prediction_length=8, context_length=64)
    return save_chronos_t5(random_chronos_t5(cfg, chronos, seed=0), tmp_path_factory.mktemp("ckpt") / "tiny-t5")


@pytest.fixture(scope="module")
def frame():
    """Three integer-step series of different lengths."""
    rng = np.random.default_rng(0)
    parts = [
        pd.DataFrame({"unique_id": uid, "ds": np.arange(n), "y": rng.normal(50, 5, n)})
        for uid, n in (("s1", 30), ("s2", 24), ("s3", 40))
    ]
    return pd.concat(parts, ignore_index=True)


@pytest.fixture
def csv(frame, tmp_path):
    path = tmp_path / "in.csv"
    frame.to_csv(path, index=False)
    return path


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


# --- init / info -----------------------------------------------------------------------------


def test_init_writes_a_loadable_checkpoint(tmp_path):
    folder = tmp_path / "random-tiny"
    result = invoke("init", folder, "--size", "tiny", "--prediction-length", 8, "--context-length", 64, "--seed", 1)
    assert result.exit_code == 0, result.output
    config = json.loads((folder / "config.json").read_text())
    assert (config["d_model"], config["num_layers"], config["num_heads"]) == (256, 4, 4)  # chronos-t5-tiny
    assert config["chronos_config"]["prediction_length"] == 8
    assert config["chronos_config"]["context_length"] == 64
    assert (folder / "model.safetensors").is_file()
    assert load_model(folder).prediction_length == 8


def test_init_does_not_replace_a_checkpoint_or_a_file(tmp_path):
    folder = tmp_path / "m"
    assert invoke("init", folder, "--size", "tiny", "--context-length", 64).exit_code == 0
    weights = (folder / "model.safetensors").read_bytes()
    again = invoke("init", folder, "--size", "tiny", "--seed", 5)
    assert again.exit_code == 2 and "already holds a checkpoint (config.json, model.safetensors)" in again.output
    assert (folder / "model.safetensors").read_bytes() == weights
    (tmp_path / "afile").write_text("x")
    onto_file = invoke("init", tmp_path / "afile")
    assert onto_file.exit_code == 2 and "is a file; name a folder" in onto_file.output


def test_csv_ids_are_text_and_extra_fields_are_refused(model, tmp_path):
    """'NA' is Namibia, not a missing id; a row with a field more than the header would shift every column."""
    rows = [f"{uid},2020-{m:02d}-01,{v}" for uid in ("NA", "US") for m, v in zip(range(1, 13), range(12))]
    ids = tmp_path / "ids.csv"
    ids.write_text("unique_id,ds,y\n" + "\n".join(rows) + "\n")
    result = invoke("forecast", "--model", model, "--input", ids, "--h", 2, "--seed", 0)
    assert result.exit_code == 0, result.output
    assert "\nNA,2021-01-01," in result.output and "\nUS,2021-01-01," in result.output
    extra = tmp_path / "extra.csv"
    extra.write_text("unique_id,ds,y\n" + "\n".join(f"a,2020-01-0{d},{d},9" for d in range(1, 6)) + "\n")
    result = invoke("forecast", "--model", model, "--input", extra, "--h", 2)
    assert result.exit_code == 2 and squeeze("more fields than the header") in squeeze(result.output)


def test_init_context_length_0_is_refused_not_made_512(tmp_path):
    result = invoke("init", tmp_path / "m", "--context-length", 0)
    assert result.exit_code == 2 and "`--context-length` must be a positive integer" in result.output


def test_init_rejects_an_unknown_size(tmp_path):
    result = invoke("init", tmp_path / "x", "--size", "huge")
    assert result.exit_code == 2
    assert "`--size` must be one of tiny, mini, small, base, large, got 'huge'" in result.output
    assert not (tmp_path / "x").exists()


def test_info_prints_the_parameter_count(model):
    result = runner.invoke(app, ["info", str(model)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    n = load_model(model).num_parameters()
    assert f"{n:,}" in result.output
    assert "32 / 64 / 8" in result.output  # d_model / d_ff / d_kv
    assert "1 + 1" in result.output  # layers
    both = invoke("info", str(model), "--list")
    assert both.exit_code == 2 and "not both" in both.output


def test_info_list_without_bundled_models(monkeypatch, tmp_path):
    monkeypatch.setattr(registry, "BUNDLED_DIR", tmp_path / "none")
    result = invoke("info", "--list")
    assert result.exit_code == 0
    assert "no bundled models" in result.output


def test_info_list_and_forecast_by_bundled_name(monkeypatch, tmp_path, model, csv):
    monkeypatch.setattr(registry, "BUNDLED_DIR", tmp_path / "bundled")
    shutil.copytree(model, tmp_path / "bundled" / "tiny-bundled")
    (tmp_path / "bundled" / "not-a-model").mkdir()  # no config.json: not listed
    result = invoke("info", "--list")
    assert result.exit_code == 0
    n = load_model(model).num_parameters()
    assert result.output.split()[:4] == [
        "tiny-bundled",
        "chronos-t5,",
        f"{n / 1e6:.2f}M",
        "parameters",
    ]  # one line each
    out = tmp_path / "out.csv"
    result = invoke("forecast", "--model", "tiny-bundled", "--input", csv, "--h", 2, "--output", out, "--seed", 0)
    assert result.exit_code == 0, result.output
    assert "tiny-bundled" in pd.read_csv(out).columns


def test_info_on_bad_checkpoints(tmp_path, model):
    result = invoke("info", tmp_path / "nowhere")
    assert result.exit_code == 2
    assert str(tmp_path / "nowhere") in squeeze(result.output)
    bad = tmp_path / "bad-ff"
    shutil.copytree(model, bad)
    config = json.loads((bad / "config.json").read_text())
    (bad / "config.json").write_text(json.dumps({**config, "feed_forward_proj": "swiglu"}))
    result = invoke("info", bad)
    assert result.exit_code == 2
    assert "feed_forward_proj" in squeeze(result.output)
    assert not isinstance(result.exception, ValueError)  # a message, not a traceback


# --- forecast --------------------------------------------------------------------------------


def test_forecast_level_to_csv(model, csv, frame, tmp_path):
    out = tmp_path / "out.csv"
    result = invoke(
        "forecast",
        "--model",
        model,
        "--input",
        csv,
        "--h",
        5,
        "--level",
        80,
        "--output",
        out,
        "--seed",
        0,
        "--num-samples",
        6,
    )
    assert result.exit_code == 0, result.output
    got = pd.read_csv(out)
    assert list(got.columns) == ["unique_id", "ds", "tiny-t5", "tiny-t5-lo-80", "tiny-t5-hi-80"]
    assert len(got) == 3 * 5
    assert got["unique_id"].tolist() == ["s1"] * 5 + ["s2"] * 5 + ["s3"] * 5
    assert got["ds"].tolist() == [*range(30, 35), *range(24, 29), *range(40, 45)]
    assert (got["tiny-t5-lo-80"] <= got["tiny-t5"]).all() and (got["tiny-t5"] <= got["tiny-t5-hi-80"]).all()
    # oracle: the Python API with the same arguments
    expected = Forecaster.from_pretrained(model).forecast(frame, 5, level=[80.0], seed=0, num_samples=6)
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)


def test_forecast_quantiles_to_stdout(model, csv):
    result = invoke(
        "forecast",
        "--model",
        model,
        "--input",
        csv,
        "--h",
        3,
        "--quantiles",
        0.1,
        "--quantiles",
        0.9,
        "--seed",
        0,
        "--num-samples",
        4,
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "unique_id,ds,tiny-t5,tiny-t5-q-10,tiny-t5-q-90"
    assert len(lines) == 1 + 3 * 3


def test_forecast_parquet_in_and_out(model, frame, tmp_path):
    src, out = tmp_path / "in.parquet", tmp_path / "out.parquet"
    frame.to_parquet(src, index=False)
    result = invoke(
        "forecast",
        "--model",
        model,
        "--input",
        src,
        "--h",
        4,
        "--level",
        50,
        "--level",
        90,
        "--output",
        out,
        "--seed",
        1,
        "--num-samples",
        4,
    )
    assert result.exit_code == 0, result.output
    got = pd.read_parquet(out)
    assert list(got.columns) == [
        "unique_id",
        "ds",
        "tiny-t5",
        "tiny-t5-lo-50",
        "tiny-t5-hi-50",
        "tiny-t5-lo-90",
        "tiny-t5-hi-90",
    ]
    assert len(got) == 3 * 4
    assert np.isfinite(got.iloc[:, 2:].to_numpy()).all()


def test_forecast_custom_columns(model, frame, tmp_path):
    src = tmp_path / "in.csv"
    frame.rename(columns={"unique_id": "item", "ds": "t", "y": "qty"}).to_csv(src, index=False)
    result = invoke(
        "forecast",
        "--model",
        model,
        "--input",
        src,
        "--h",
        2,
        "--id-col",
        "item",
        "--time-col",
        "t",
        "--target-col",
        "qty",
        "--seed",
        0,
        "--num-samples",
        3,
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == "item,t,tiny-t5"


def test_forecast_missing_input_file(model, tmp_path):
    result = invoke("forecast", "--model", model, "--input", tmp_path / "nope.csv", "--h", 3)
    assert result.exit_code != 0
    assert "no such file" in result.output


def test_forecast_unsupported_input_suffix(model, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("unique_id,ds,y\n")
    result = invoke("forecast", "--model", model, "--input", src, "--h", 3)
    assert result.exit_code == 2
    assert "expected a file ending in .csv, .csv.gz" in result.output


def test_forecast_nonexistent_model(csv, tmp_path):
    missing = tmp_path / "no-such-model"
    result = invoke("forecast", "--model", missing, "--input", csv, "--h", 3)
    assert result.exit_code == 2
    assert str(missing) in squeeze(result.output)
    assert "passafolderholdingconfig.jsonandmodel.safetensors" in squeeze(result.output)  # says what to pass


def test_forecast_bad_arguments_exit_2(model, csv):
    result = invoke("forecast", "--model", model, "--input", csv, "--h", 3, "--level", 150)
    assert result.exit_code == 2
    assert squeeze("`--level` values must be numbers in (0, 100), got 150.0") in squeeze(result.output)
    result = invoke("forecast", "--model", model, "--input", csv, "--h", 3, "--top-p", 0)
    assert result.exit_code == 2
    assert "`--top-p`" in result.output


@pytest.mark.parametrize(
    "options, named",
    [
        (["--tolerance", 0.5], "--tolerance"),
        (["--k", 2], "--k"),
        (["--fixed-k"], "--fixed-k"),
        (["--stop-below", 0.3], "--stop-below"),
        (["--k", 4], "--k"),  # written out at its default: still refused, not ignored
        (["--adaptive"], "--adaptive"),
    ],
)
def test_speculative_options_without_a_draft_are_refused(model, csv, options, named):
    result = invoke("forecast", "--model", model, "--input", csv, "--h", 3, *options)
    assert result.exit_code == 2
    assert squeeze(f"`{named}` sets speculative decoding, which runs only with `--draft`") in squeeze(result.output)


def test_bundled_example_forecasts(model, tmp_path):
    path = example_path()
    assert path.is_file()
    ids = sorted(pd.read_csv(path)["unique_id"].unique())
    out = tmp_path / "example.csv"
    result = invoke(
        "forecast",
        "--model",
        model,
        "--input",
        path,
        "--h",
        6,
        "--level",
        80,
        "--output",
        out,
        "--seed",
        0,
        "--num-samples",
        4,
    )
    assert result.exit_code == 0, result.output
    got = pd.read_csv(out, parse_dates=["ds"])
    assert len(got) == len(ids) * 6
    assert sorted(got["unique_id"].unique()) == ids
    assert (got["ds"].dt.day == 1).all()  # monthly-start dates carry on
    assert np.isfinite(got[["tiny-t5", "tiny-t5-lo-80", "tiny-t5-hi-80"]].to_numpy()).all()


def test_forecast_seasonal_adjustment_options(model, tmp_path):
    """--seasonal-adjustment with the frequency's season (monthly example: 12) or --season-length, as the API."""
    path = example_path()
    df = pd.read_csv(path, parse_dates=["ds"])
    outs = {}
    for name, extra in {
        "on": ["--seasonal-adjustment"],
        "s4": ["--seasonal-adjustment", "--season-length", 4],
        "all": ["--seasonal-adjustment", "--adjustment-seasons", 0],
        "off": ["--no-seasonal-adjustment"],
    }.items():
        outs[name] = tmp_path / f"{name}.csv"
        result = invoke(
            "forecast",
            "--model",
            model,
            "--input",
            path,
            "--h",
            6,
            "--output",
            outs[name],
            "--seed",
            0,
            "--num-samples",
            4,
            *extra,
        )
        assert result.exit_code == 0, result.output
    got = {k: pd.read_csv(v, parse_dates=["ds"]) for k, v in outs.items()}
    on = Forecaster.from_pretrained(model, seasonal_adjustment=True)
    pd.testing.assert_frame_equal(got["on"], on.forecast(df, 6, seed=0, num_samples=4), check_dtype=False)
    pd.testing.assert_frame_equal(
        got["s4"], on.forecast(df, 6, seed=0, num_samples=4, season_length=4), check_dtype=False
    )
    whole = Forecaster.from_pretrained(model, seasonal_adjustment=True, adjustment_seasons=None)
    pd.testing.assert_frame_equal(got["all"], whole.forecast(df, 6, seed=0, num_samples=4), check_dtype=False)
    pd.testing.assert_frame_equal(
        got["off"], Forecaster.from_pretrained(model).forecast(df, 6, seed=0, num_samples=4), check_dtype=False
    )
    assert not np.allclose(got["on"]["tiny-t5"], got["off"]["tiny-t5"])
    bad = invoke("forecast", "--model", model, "--input", path, "--h", 6, "--adjustment-seasons", -1)
    assert bad.exit_code == 2 and "--adjustment-seasons" in bad.output and "-1" in bad.output
    for extra in (
        ["--season-length", 4],
        ["--adjustment-seasons", 2],
        ["--adjustment-seasons", 8],  # the default, written out
        ["--no-seasonal-adjustment", "--season-length", 4],
    ):
        ignored = invoke("forecast", "--model", model, "--input", path, "--h", 6, *extra)  # this model: off
        assert ignored.exit_code == 2, ignored.output
        assert squeeze(f"`{extra[-2]}` sets the seasonal adjustment, which is off") in squeeze(ignored.output)


def test_the_output_cannot_be_the_input(model, csv):
    before = csv.read_bytes()
    result = invoke("forecast", "--model", model, "--input", csv, "--h", 2, "--output", csv)
    assert result.exit_code == 2 and squeeze("is the `--input` file") in squeeze(result.output)
    assert csv.read_bytes() == before


def test_the_cli_default_indices_window_is_the_library_default():
    import inspect

    from leapcast import cli
    from leapcast.deseason import RECENT_SEASONS

    assert inspect.signature(cli.forecast).parameters["adjustment_seasons"].default.default == RECENT_SEASONS


def test_csv_ids_are_read_as_written(model, frame, tmp_path):
    """'00501' stays '00501' and '1' and '01' stay two series (pandas alone would read 501, 1 and 1)."""
    path, out = tmp_path / "ids.csv", tmp_path / "out.csv"
    frame.assign(unique_id=frame.unique_id.map({"s1": "00501", "s2": "1", "s3": "01"})).to_csv(path, index=False)
    result = invoke("forecast", "--model", model, "--input", path, "--h", 3, "--output", out, "--num-samples", 4)
    assert result.exit_code == 0, result.output
    assert sorted(pd.read_csv(out, dtype={"unique_id": str}).unique_id.unique()) == ["00501", "01", "1"]


def test_info_on_a_folder_whose_name_holds_brackets(model, tmp_path):
    import shutil

    folder = tmp_path / "m[/b]"
    shutil.copytree(model, folder)
    result = invoke("info", folder)
    assert result.exit_code == 0, result.output
    assert "m[/b]" in result.output
