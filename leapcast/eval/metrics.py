"""Forecast accuracy metrics, vectorised over series.

Shapes: y [N, h] actuals; point [N, h]; quantiles [N, h, Q] at ``levels`` [Q];
samples [N, S, h]; insample: a list of N 1-D histories (for MASE's scale).
NaN actuals are left out of every sum and mean; a NaN forecast where the actual is known makes the metric NaN
(a failed forecast shows, never scores as a perfect one).
"""

from __future__ import annotations

import numpy as np


def _same_shape(y: np.ndarray, other: np.ndarray, name: str) -> None:
    """Broadcasting would score a forecast against the wrong actuals: shapes must match exactly."""
    if np.shape(y) != np.shape(other):
        raise ValueError(f"`{name}` has shape {np.shape(other)}, the actuals `y` {np.shape(y)}: they must match")


def _observed_mean(values: np.ndarray, y: np.ndarray, axis=None):
    """Mean of ``values`` over the entries whose actual ``y`` is known; NaN values there stay NaN."""
    known = ~np.isnan(y)
    return np.sum(np.where(known, values, 0.0), axis=axis) / np.sum(known, axis=axis)


def mae(y: np.ndarray, point: np.ndarray) -> float:
    _same_shape(y, point, "point")
    return float(_observed_mean(np.abs(y - point), y))


def mse(y: np.ndarray, point: np.ndarray) -> float:
    _same_shape(y, point, "point")
    return float(_observed_mean((y - point) ** 2, y))


def smape(y: np.ndarray, point: np.ndarray) -> float:
    """Symmetric MAPE in percent, 200 |y - f| / (|y| + |f|); 0/0 counts as 0."""
    _same_shape(y, point, "point")
    den = np.abs(y) + np.abs(point)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(den > 0, np.abs(y - point) / den, np.where(np.isnan(den), np.nan, 0.0))
    return float(200 * _observed_mean(ratio, y))


def seasonal_scale(insample: list[np.ndarray], season: int) -> np.ndarray:
    """[N] mean absolute seasonal difference of each history (lag ``season``, or 1 when too short)."""
    out = np.empty(len(insample))
    for i, x in enumerate(insample):
        x = np.asarray(x, dtype=float)
        lag = season if len(x) > season else 1
        diff = np.abs(x[lag:] - x[:-lag])
        out[i] = np.nanmean(diff) if np.isfinite(diff).any() else np.nan
    return out


def mase(y: np.ndarray, point: np.ndarray, insample: list[np.ndarray], season: int) -> float:
    """Mean over series of MAE / in-sample seasonal-naive MAE; series with a zero scale are left out."""
    _same_shape(y, point, "point")
    if np.ndim(y) != 2 or len(insample) != np.shape(y)[0]:
        raise ValueError(
            f"`y` [N, h] and `insample` (N histories) must agree: `y` has shape {np.shape(y)}, `insample` "
            f"{len(insample)} histories"
        )
    if isinstance(season, bool) or not isinstance(season, (int, np.integer)) or season < 1:
        raise ValueError(f"`season` must be an integer >= 1 (1: no season), got {season!r}")
    scale = seasonal_scale(insample, season)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_series = _observed_mean(np.abs(y - point), y, axis=1) / scale
    counted = (scale > 0) & (~np.isnan(y)).any(axis=1)  # a scale, and an actual to score
    return float(np.mean(per_series[counted])) if counted.any() else float("nan")


def wql(y: np.ndarray, quantiles: np.ndarray, levels) -> float:
    """Weighted quantile loss (Chronos, GluonTS): mean over levels of 2 * sum pinball / sum |y|."""
    levels = np.asarray(levels, dtype=float)
    _same_shape(np.empty((*np.shape(y), len(levels))), quantiles, "quantiles")  # [N, h, Q], Q = len(levels)
    err = y[..., None] - quantiles  # [N, h, Q]
    pinball = np.maximum(levels * err, (levels - 1) * err)
    mask = ~np.isnan(y)
    total = np.nansum(np.abs(y))
    return float(np.mean(2 * np.sum(np.where(mask[..., None], pinball, 0.0), axis=(0, 1)) / total))


def crps_samples(y: np.ndarray, samples: np.ndarray) -> float:
    """Mean CRPS from samples: E|X - y| - E|X - X'| / 2 (the unbiased-in-S 'fair' form is not used)."""
    if np.ndim(samples) != 3 or np.ndim(y) != 2 or np.shape(samples)[::2] != np.shape(y):
        raise ValueError(f"`samples` [N, S, h] of shape {np.shape(samples)} do not fit the actuals `y` {np.shape(y)}")
    first = np.mean(np.abs(samples - y[:, None, :]), axis=1)  # [N, h]
    s = samples.shape[1]
    ordered = np.sort(samples, axis=1)
    # E|X - X'| over all pairs from sorted samples: sum_i (2i - S - 1) x_(i) * 2 / S^2
    weights = (2 * np.arange(1, s + 1) - s - 1)[None, :, None]
    second = 2 * np.sum(weights * ordered, axis=1) / s**2
    return float(_observed_mean(first - second / 2, y))


def geometric_mean_relative(scores: dict[str, float], baseline: dict[str, float]) -> float:
    """Chronos' aggregate: geometric mean over data sets of score / baseline score; NaN when a data set has no
    baseline score above 0 (the aggregate would leave it out)."""
    if any(not baseline.get(k, 0) > 0 for k in scores):
        return float("nan")
    ratios = [scores[k] / baseline[k] for k in scores]
    if not ratios or not all(np.isfinite(ratios)):  # a data set the model failed on fails the aggregate
        return float("nan")
    return float(np.exp(np.mean(np.log(ratios))))
