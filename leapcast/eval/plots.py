"""Pictures of results: speedup vs k, acceptance per position, accuracy vs speed, fan charts.

Each ``draw`` function fills one matplotlib Axes; ``figure`` makes the Figure
with the Agg backend (no display needed) and ``save`` writes a PNG.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd


def figure(n_axes: int = 1, width: float = 5.5, height: float = 4.0, per_row: int | None = None):
    """(Figure, list of n_axes Axes), Agg backend: side by side, or in rows of ``per_row``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = n_axes if per_row is None else max(1, min(per_row, n_axes))
    rows = -(-n_axes // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    flat = list(axes.flat)
    for ax in flat[n_axes:]:
        ax.set_visible(False)
    return fig, flat[:n_axes]


def save(fig, path: str | Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def speedup_vs_k(ax, rows: Sequence[dict], label: Callable[[dict], str]) -> None:
    """One line per ``label(row)``: median ``speedup`` per ``k`` over its fixed-k rows; adaptive rows as stars.

    rows: dicts with ``k``, ``speedup``, ``adaptive``.
    """
    groups: dict[str, dict[tuple[bool, int], list[float]]] = {}
    for r in rows:
        groups.setdefault(label(r), {}).setdefault((r["adaptive"], r["k"]), []).append(r["speedup"])
    for name, by_k in sorted(groups.items()):
        fixed = sorted((k, statistics.median(v)) for (adaptive, k), v in by_k.items() if not adaptive)
        line = ax.plot(*zip(*fixed), marker="o", label=name) if fixed else ax.plot([], [], label=name)
        for (adaptive, k), v in by_k.items():
            if adaptive:
                ax.plot([k], [statistics.median(v)], marker="*", ms=12, ls="", color=line[0].get_color())
    ax.axhline(1.0, color="grey", lw=0.8, ls="--")
    ax.set(
        xlabel="k (proposed steps per target pass; star: adaptive, at its largest k)",
        ylabel="speedup over plain decoding",
        title="Speedup vs k",
    )
    _integer_ticks(ax)
    ax.legend(fontsize=7)


def acceptance_per_position(ax, rows: Sequence[dict], label: Callable[[dict], str]) -> None:
    """Per ``label(row)``, at its largest fixed k: the mean over rows of the fraction of drafts whose i-th step was kept.

    rows: dicts with ``k``, ``adaptive``, ``accepted_per_position`` ([k] fractions).
    """
    fixed = [r for r in rows if not r["adaptive"] and r.get("accepted_per_position")]
    for name in sorted({label(r) for r in fixed}):
        mine = [r for r in fixed if label(r) == name]
        k = max(r["k"] for r in mine)
        per = np.mean([r["accepted_per_position"] for r in mine if r["k"] == k], axis=0)  # [k]
        ax.plot(range(1, k + 1), per, marker="o", label=name)
    ax.set(
        xlabel="position in the proposal",
        ylabel="fraction of drafts kept",
        title="Acceptance per position",
        ylim=(0, 1.02),
    )
    _integer_ticks(ax)
    ax.legend(fontsize=7)


def accuracy_vs_speed(ax, points: Sequence[dict], xlabel: str = "series per second (log)") -> None:
    """Scatter of points: dicts with ``label``, ``x``, ``y`` (relative MASE), ``random`` (hollow marker)."""
    for i, p in enumerate(points):
        if not (np.isfinite(p["x"]) and np.isfinite(p["y"])):
            continue
        color = f"C{i % 10}"
        ax.scatter([p["x"]], [p["y"]], facecolors="none" if p["random"] else color, edgecolors=color)
        ax.annotate(p["label"], (p["x"], p["y"]), fontsize=6, xytext=(3, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.axhline(1.0, color="grey", lw=0.8, ls="--")
    ax.set(
        xlabel=xlabel,
        ylabel="MASE relative to SeasonalNaive (lower is better)",
        title="Accuracy vs speed (hollow: random weights, accuracy is noise)",
    )


def fan_chart(ax, future_x, median, bands: dict[float, tuple], history=None, actual=None, title: str = "") -> None:
    """Median with shaded central bands.

    future_x: [h] times; median: [h]; bands: level in (0, 100) -> (lo [h], hi [h]);
    history: (times [T], values [T]) or None; actual: [h] or None.
    """
    if history is not None:
        ax.plot(history[0], history[1], color="black", lw=1, label="history")
    for i, (level, (lo, hi)) in enumerate(sorted(bands.items(), reverse=True)):
        ax.fill_between(future_x, lo, hi, color="C0", alpha=0.15 + 0.2 * i, lw=0, label=f"{level:g}% interval")
    ax.plot(future_x, median, color="C0", lw=1.5, label="median")
    if actual is not None:
        ax.plot(future_x, actual, color="C3", lw=1, marker=".", label="actual")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=6)


def sample_bands(samples: np.ndarray, levels: Sequence[float] = (80, 95)) -> tuple[np.ndarray, dict]:
    """samples [S, h] -> (median [h], level -> (lo [h], hi [h]))."""
    bands = {
        lv: (np.quantile(samples, 0.5 - lv / 200, axis=0), np.quantile(samples, 0.5 + lv / 200, axis=0))
        for lv in levels
    }
    return np.median(samples, axis=0), bands


def bands_from_columns(columns: Sequence[str], model: str) -> dict[float, tuple[str, str]]:
    """Interval columns of one model in a forecast frame -> level -> (lo column, hi column).

    Reads ``<model>-lo-80`` / ``<model>-hi-80`` and symmetric quantile pairs
    ``<model>-q-10`` / ``<model>-q-90`` (an 80% band), as ``Forecaster.forecast`` names them.
    """
    pattern = re.compile(rf"^{re.escape(model)}-(lo|hi|q)-([0-9.]+)$")
    found: dict[str, dict[float, str]] = {"lo": {}, "hi": {}, "q": {}}
    for c in columns:
        m = pattern.match(c)
        if m:
            found[m.group(1)][float(m.group(2))] = c
    bands = {lv: (found["lo"][lv], found["hi"][lv]) for lv in found["lo"] if lv in found["hi"]}
    for q, lo in found["q"].items():
        if q < 50 and (100 - q) in found["q"]:
            bands.setdefault(100 - 2 * q, (lo, found["q"][100 - q]))
    return bands


def point_columns(columns: Sequence[str], skip: Sequence[str]) -> list[str]:
    """Model (point forecast) columns of a forecast frame: those that are not ``skip`` nor an interval column."""
    return [c for c in columns if c not in skip and not re.search(r"-(lo|hi|q)-[0-9.]+$", c)]


def forecast_figure(
    forecasts: pd.DataFrame,
    model: str,
    ids: Sequence,
    history: pd.DataFrame | None = None,
    *,
    id_col: str = "unique_id",
    time_col: str = "ds",
    target_col: str = "y",
    last: int | None = None,
):
    """Fan charts of ``model``'s forecasts for ``ids`` (one panel each) -> Figure.

    forecasts: long frame ``[N*h, (id_col, time_col, model, model-lo-80, ...)]``
    (``Forecaster.forecast`` / ``leapcast forecast --output``); history: the
    input long frame ``[rows, (id_col, time_col, target_col)]``, its last
    ``last`` values per series drawn before the forecast (all when None).
    """
    bands = bands_from_columns(forecasts.columns, model)
    fig, axes = figure(len(ids), width=4.5, height=3.2, per_row=4)
    for ax, uid in zip(axes, ids):
        f = forecasts[forecasts[id_col] == uid].sort_values(time_col)
        past = None
        if history is not None:
            h = history[history[id_col] == uid].sort_values(time_col)
            h = h if last is None else h.tail(last)
            past = (h[time_col].to_numpy(), h[target_col].to_numpy(float))
        fan_chart(
            ax,
            f[time_col].to_numpy(),
            f[model].to_numpy(float),
            {lv: (f[lo].to_numpy(float), f[hi].to_numpy(float)) for lv, (lo, hi) in bands.items()},
            history=past,
            title=f"{model}: {uid}",
        )
        ax.tick_params(axis="x", labelrotation=30, labelsize=7)
    return fig


def _integer_ticks(ax) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
