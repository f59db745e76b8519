"""Bench reports: ``<suite>-<date>.json`` / ``.md`` / PNG figures, and the README results section.

The report dict (see ``leapcast.eval.bench.run``) holds ``rows`` (one per
data set x model x mode, baselines included), ``summary`` (one per model x
mode, relative scores aggregated over data sets) and the run's settings.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from leapcast.checks import param
from leapcast.eval import plots

START, END = "<!-- results:start -->", "<!-- results:end -->"
RANDOM_MARK = "†"


def write_report(report: dict, out_dir: Path, fans: list[dict] | None = None) -> dict[str, Path]:
    """Write json, md and figures into ``out_dir`` -> {"json": path, "md": path, figure name: path}.

    fans: dicts with title, history [T], samples [S, h], actual [h] (drawn as fan charts).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{report['suite']}-{report['date']}"
    paths = figures(report, out_dir, stem, fans or [])
    report["figures"] = {name: p.name for name, p in paths.items()}
    paths["json"] = out_dir / f"{stem}.json"
    paths["json"].write_text(json.dumps(_finite(report), indent=2) + "\n")
    paths["md"] = out_dir / f"{stem}.md"
    paths["md"].write_text(markdown(report))
    return paths


def figures(report: dict, out_dir: Path, stem: str, fans: list[dict]) -> dict[str, Path]:
    out = {}
    spec = [r for r in report["rows"] if r.get("k") is not None]
    label = lambda r: f"{r['model']}, {r['proposer']}"  # noqa: E731
    if spec:
        fig, (a, b) = plots.figure(2)
        plots.speedup_vs_k(a, spec, label)
        plots.acceptance_per_position(b, spec, label)
        out["speed"] = plots.save(fig, out_dir / f"{stem}-speed.png")
    points = [
        dict(
            label=s["model"] if s["mode"] == "statsforecast" else f"{s['model']} {s['mode']}",
            x=s["series_per_s"],
            y=math.nan if s["rel_mase"] is None else s["rel_mase"],
            random=s["random_weights"],
        )
        for s in report["summary"]
    ]
    fig, (ax,) = plots.figure(1, width=7, height=5)
    plots.accuracy_vs_speed(ax, points)
    out["accuracy_speed"] = plots.save(fig, out_dir / f"{stem}-accuracy-speed.png")
    if fans:
        fig, axes = plots.figure(len(fans), width=4.5, height=3.2)
        for ax, f in zip(axes, fans):
            h, t0 = len(f["actual"]), len(f["history"])
            past = f["history"][-3 * h :]  # [<= 3h] enough history to see the pattern the forecast continues
            median, bands = plots.sample_bands(f["samples"])
            plots.fan_chart(
                ax,
                range(t0, t0 + h),
                median,
                bands,
                history=(range(t0 - len(past), t0), past),
                actual=f["actual"],
                title=f["title"],
            )
        out["fan"] = plots.save(fig, out_dir / f"{stem}-fan.png")
    return out


def markdown(report: dict) -> str:
    cfg = report["config"]
    rows = report["rows"]
    lines = [
        f"# leapcast bench: {report['suite']} suite, {report['date']}",
        "",
        f"`{report['command']}` on {report['machine']} ({report['cpus']} CPUs), torch {report['torch']}, "
        f"{report['threads']} threads; up to {cfg['max_series']} series per data set, {cfg['samples']} samples, "
        f"{cfg['repeats']} interleaved repeats. {RANDOM_MARK}: random weights, their speed is real and their accuracy noise.",
        "",
        "## Speed",
        "",
        "Speedup: median over repeats of leapcast plain's time over the mode's, timed alternately in one process "
        "(plain's own row: plain against itself, the noise floor).",
        "",
        _table(
            [
                "data set",
                "model",
                "mode",
                "series",
                "h",
                "wall s",
                "series/s",
                "steps/s",
                "speedup vs plain",
                "target passes",
                "acceptance",
                "mean accepted length",
            ],
            [
                [
                    r["dataset"],
                    _model(r),
                    r["mode"],
                    r["series"],
                    r["h"],
                    _f(r["wall_s"], ".3f"),
                    _f(r["series_per_s"], ".1f"),
                    _f(r.get("steps_per_s"), ",.0f"),
                    _f(r.get("speedup"), ".2f", "x"),
                    _f(r.get("target_passes"), "d"),
                    _f(r.get("acceptance"), ".1%"),
                    _f(r.get("mean_accepted_length"), ".2f"),
                ]
                for r in rows
                if "speedup" in r
            ],
        ),
        "",
        "## Accuracy (official test window)",
        "",
        "MASE of the median and WQL over quantiles 0.1..0.9; rel.: ratio to SeasonalNaive on the same data set.",
        "",
        _table(
            ["data set", "model", "mode", "MASE", "WQL", "rel. MASE", "rel. WQL", "wall s"],
            [
                [
                    r["dataset"],
                    _model(r),
                    r["mode"],
                    _f(r["mase"], ".3f"),
                    _f(r["wql"], ".3f"),
                    _f(r["rel_mase"], ".3f"),
                    _f(r["rel_wql"], ".3f"),
                    _f(r["wall_s"], ".2f"),
                ]
                for r in rows
            ],
        ),
        "",
        "## Across data sets",
        "",
        summary_table(report),
        "",
    ]
    figs = report.get("figures", {})
    if figs:
        lines += ["## Figures", ""] + [f"![{name}]({file})" for name, file in figs.items()] + [""]
    return "\n".join(lines)


def summary_table(report: dict) -> str:
    """Per model x mode: geometric mean over data sets of relative MASE/WQL, median speedup and series/s."""
    return _table(
        ["model", "mode", "data sets", "rel. MASE", "rel. WQL", "speedup vs plain", "series/s"],
        [
            [
                _model(s),
                s["mode"],
                s["datasets"],
                _f(s["rel_mase"], ".3f"),
                _f(s["rel_wql"], ".3f"),
                _f(s["speedup"], ".2f", "x"),
                _f(s["series_per_s"], ".1f"),
            ]
            for s in report["summary"]
        ],
    )


def readme_section(report: dict, report_dir: Path, readme_dir: Path) -> str:
    """The README's results section from a report: summary table, figures (paths relative to the README), command."""
    rel = os.path.relpath(report_dir, readme_dir)
    stem = f"{report['suite']}-{report['date']}"
    lines = [
        f"Measured {report['date']} with `{report['command']}` on {report['machine']} ({report['cpus']} CPUs, "
        f"{report['threads']} threads, torch {report['torch']}); full tables in "
        f"[{stem}.md]({Path(rel, stem + '.md').as_posix()}). {RANDOM_MARK}: random weights (speed only).",
        "",
        summary_table(report),
        "",
    ]
    lines += [f"![{name}]({Path(rel, file).as_posix()})" for name, file in report.get("figures", {}).items()]
    return "\n".join(lines) + "\n"


def replace_section(text: str, section: str) -> str:
    """``text`` with everything between the results markers replaced by ``section`` (markers kept)."""
    start, end = text.find(START), text.find(END)
    if start < 0 or end < 0 or end < start:
        raise ValueError(f"the file needs a line {START} followed later by a line {END}; add them where the results go")
    return text[: start + len(START)] + "\n" + section.strip("\n") + "\n" + text[end:]


def latest_report(results_dir: Path, suite: str) -> Path:
    """The newest ``<suite>-<YYYY-MM-DD>.json`` in ``results_dir`` (ISO dates sort by name)."""
    found = sorted(Path(results_dir).glob(f"{suite}-????-??-??.json"))
    if not found:
        raise FileNotFoundError(
            f"no {suite}-<date>.json in {results_dir}; pass {param('results_dir')} the folder `leapcast bench` wrote to "
            f"(its `--out-dir`, leapcast-bench unless told), or run `leapcast bench --suite {suite} --out-dir "
            f"{results_dir}` first"
        )
    return found[-1]


def update_readme(readme: Path, results_dir: Path, suite: str = "full") -> Path:
    """Rewrite ``readme``'s results section from the latest ``suite`` report; returns the report used."""
    source = latest_report(results_dir, suite)
    section = readme_section(json.loads(source.read_text()), source.parent, readme.parent)
    readme.write_text(replace_section(readme.read_text(), section))
    return source


def _model(r: dict) -> str:
    return r["model"] + (RANDOM_MARK if r.get("random_weights") else "")


def _f(value, spec: str, prefix: str = "") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{prefix}{value:{spec}}"


def _table(header: list[str], body: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in body])


def _finite(value):
    """NaN/inf -> None, so the JSON stays standard."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
