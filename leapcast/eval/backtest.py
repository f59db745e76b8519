"""Evaluation windows: rolling-origin backtests and the official test windows.

``cross_validation`` mirrors statsforecast's ``StatsForecast.cross_validation``:
for each series and each of ``n_windows`` windows, the model sees the values
up to a cutoff and forecasts the next ``h``. The last window ends at the
series' last value, each earlier window ``step_size`` steps before the next,
counted per series from its own end (so ragged series get their own cutoffs).
The result is a long frame ``unique_id, ds, cutoff, y, <forecast columns>``.

``official_window`` is the single official test window of a competition data
set (M1, M3, Tourism): the same thing as ``cross_validation(..., h=horizon,
n_windows=1)`` over ``Dataset.full()``, as arrays the metrics take.
``ett_windows`` cuts ETT's test span (or a span for choices) into windows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from leapcast.checks import check_int
from leapcast.data import ett_split, ett_stats, load

ForecastFn = Callable[[pd.DataFrame, int], pd.DataFrame]


def cross_validation(
    forecast_fn: ForecastFn,
    df: pd.DataFrame,
    h: int,
    n_windows: int = 1,
    step_size: int = 1,
    *,
    id_col: str = "unique_id",
    time_col: str = "ds",
    target_col: str = "y",
) -> pd.DataFrame:
    """Rolling-origin forecasts of every series of a long frame.

    forecast_fn(train, h) -> forecasts: ``train`` holds only rows at or before
        each series' cutoff (``[rows, (id_col, time_col, target_col, ...)]``);
        it returns a long frame with ``id_col``, ``time_col`` and any forecast
        columns (e.g. ``Forecaster.forecast``'s ``<model>``, ``<model>-q-10``)
        covering the ``h`` rows after each cutoff.
    df: long frame ``[rows, (id_col, time_col, target_col, ...)]``, any order.
    Returns ``[n_series * n_windows * h, (id_col, time_col, "cutoff", target_col, *forecast columns)]``,
    sorted by series, cutoff and time (statsforecast's layout).

    Windows count rows, not calendar steps: a series with missing timestamps
    is windowed over the rows it has.
    """
    if not callable(forecast_fn):
        raise TypeError(
            f"`forecast_fn` must be a function (train, h) -> forecasts, got {type(forecast_fn).__name__}; for a "
            "Forecaster pass `lambda train, h: fc.forecast(train, h=h)`"
        )
    h, n_windows, step_size = (
        check_int(v, name, must="an integer >= 1")
        for v, name in ((h, "h"), (n_windows, "n_windows"), (step_size, "step_size"))
    )
    missing = [c for c in (id_col, time_col, target_col) if c not in df.columns]
    if missing:
        raise ValueError(f"`df` has no column(s) {missing}; pass id_col=, time_col=, target_col=")
    df = df.sort_values([id_col, time_col], kind="stable", ignore_index=True)
    from_end = df.groupby(id_col, sort=False).cumcount(ascending=False).to_numpy()  # [rows] 0 = last row
    need = h + (n_windows - 1) * step_size + 1  # at least one value before the earliest cutoff
    lengths = df.groupby(id_col, sort=False).size()
    short = lengths[lengths < need]
    if len(short):
        shown = ", ".join(f"{i!r} ({n})" for i, n in short.head(5).items())
        raise ValueError(
            f"{len(short)} series are too short for h={h}, n_windows={n_windows}, step_size={step_size}: each needs "
            f">= h + (n_windows - 1) * step_size + 1 = {need} rows, but {shown} have fewer; "
            f"drop them or use fewer/shorter windows"
        )
    parts = []
    for w in range(n_windows):
        offset = (n_windows - 1 - w) * step_size  # rows between this window's end and the series' end
        train = df[from_end >= offset + h]
        test = df[(from_end >= offset) & (from_end < offset + h)][[id_col, time_col, target_col]]
        cutoffs = train.groupby(id_col, sort=False)[time_col].max().rename("cutoff")
        forecasts = forecast_fn(train.reset_index(drop=True), h)
        parts.append(_join(test, cutoffs, forecasts, id_col, time_col, target_col))
    out = pd.concat(parts, ignore_index=True)
    return out.sort_values([id_col, "cutoff", time_col], kind="stable", ignore_index=True)


def _join(
    test: pd.DataFrame, cutoffs: pd.Series, forecasts: pd.DataFrame, id_col: str, time_col: str, target_col: str
) -> pd.DataFrame:
    """test rows ``[n, (id, time, cutoff, target, *forecast columns)]``; every test row must have a forecast."""
    if not isinstance(forecasts, pd.DataFrame) or not {id_col, time_col} <= set(forecasts.columns):
        raise ValueError(f"`forecast_fn` must return a DataFrame with columns {id_col!r} and {time_col!r}")
    clash = {"cutoff", target_col} & set(forecasts.columns)
    if clash:
        raise ValueError(f"`forecast_fn` returned column(s) {sorted(clash)}, which the result uses itself; rename them")
    if forecasts[time_col].dtype != test[time_col].dtype:
        forecasts = forecasts.astype({time_col: test[time_col].dtype})
    test = test[[id_col, time_col]].join(cutoffs, on=id_col).assign(**{target_col: test[target_col]})
    out = test.merge(forecasts, on=[id_col, time_col], how="left", indicator=True)
    lost = out[out.pop("_merge") != "both"]
    if len(lost):
        i, t = lost.iloc[0][id_col], lost.iloc[0][time_col]
        raise ValueError(
            f"`forecast_fn` returned no forecast for {len(lost)} test rows, e.g. series {i!r} at {time_col}={t}; "
            f"it must forecast the h rows after each cutoff (regular, gap-free series)"
        )
    return out


@dataclass(frozen=True, eq=False)
class Window:
    """One evaluation window of N series.

    name: the data set. ids: N series ids. histories: N float64 arrays ``[T_i]``
    (what the model sees). actuals: ``[N, h]`` the values to score against.
    season_length: for MASE's scale and seasonal baselines. h: the horizon.
    """

    name: str
    ids: list
    histories: list[np.ndarray]
    actuals: np.ndarray
    season_length: int
    h: int

    def __post_init__(self):
        if len(self.ids) != len(self.histories) or self.actuals.shape != (len(self.ids), self.h):
            raise ValueError(
                f"`actuals` must be [N, h] = {(len(self.ids), self.h)} for {len(self.ids)} ids and histories, "
                f"got {self.actuals.shape} and {len(self.histories)} histories"
            )


def official_window(name: str, max_series: int | None = None) -> Window:
    """The official test window of a competition data set (``leapcast.data.load(name)``).

    max_series: keep the first ones in sorted id order (None: all).
    """
    ds = load(name)
    if ds.test is None:
        raise ValueError(
            f"data set {name!r} has no official test window; backtest it with cross_validation(...) instead"
        )
    check_int(max_series, "max_series", none=True, must="a positive integer or None")
    ids = sorted(ds.train["unique_id"].unique())[:max_series]
    train = {k: g["y"].to_numpy(float) for k, g in ds.train.groupby("unique_id")}
    test = {k: g["y"].to_numpy(float) for k, g in ds.test.groupby("unique_id")}
    return Window(name, ids, [train[i] for i in ids], np.stack([test[i] for i in ids]), ds.season_length, ds.horizon)


ETT_SPANS = ("test", "validation", "train+validation")
ETT_FIRST_CONTEXT = 512  # train+validation: the first window's context, in rows


def ett_windows(
    name: str, h: int, span: str = "test", stride: int | None = None
) -> tuple[list[np.ndarray], np.ndarray]:
    """(contexts: W arrays, actuals [W, h]) in z-scored units: windows of h every ``stride`` rows (default h: not
    overlapping) over the test span, or for choices that must not see it, the validation span or the training
    and validation spans together (``"train+validation"``: leapcast never trains on ETT, so both are unseen
    data; the first window has ``ETT_FIRST_CONTEXT`` rows of context), which at h 720 hold 4 windows (the validation span)
    and 43 (both spans, stride 240), against the test span's 4."""
    h = check_int(h, "h", must="an integer >= 1")
    stride = check_int(h if stride is None else stride, "stride", must="an integer >= 1")
    if span not in ETT_SPANS:
        raise ValueError(f"`span` must be one of {', '.join(map(repr, ETT_SPANS))}, got {span!r}")
    ds = load(name)
    y = (ds.train if ds.test is None else ds.full()).sort_values("ds")["y"].to_numpy(float)
    train_end, val_end, test_end = ett_split(name)
    stats = ett_stats(name)
    z = (y - float(stats["mean"].iloc[0])) / float(stats["std"].iloc[0])
    first, end = {
        "test": (val_end, test_end),
        "validation": (train_end, val_end),
        "train+validation": (ETT_FIRST_CONTEXT, val_end),
    }[span]
    starts = range(first, end - h + 1, stride)
    if not starts:
        raise ValueError(f"`h` = {h} is longer than {name!r}'s {span} span ({end - first} rows)")
    return [z[:s] for s in starts], np.stack([z[s : s + h] for s in starts])
