"""Seasonal adjustment around a model: the classical decomposition of the M4 benchmarks.

A history whose lag-m autocorrelation passes a 90% significance test, and
which holds at least three seasons, is seasonally adjusted before the model
sees it: divided by its seasonal indices (every value > 0) or, otherwise,
minus them. The model forecasts the adjusted series; its sample paths are then
multiplied by (or added to) the indices of the future phases. This is how the
M4 competition's statistical benchmarks (Naive2, SES, Theta) handle seasons.
It helps models that never learned long seasons (the bundled house-target
forecasts monthly data nearly flat without it); README gives both figures.

The indices follow ``statsmodels.tsa.seasonal.seasonal_decompose``: a centred
moving average of one season (2 x m when m is even) as the trend, the mean
ratio (or difference) to it at each phase, normalised to mean 1 (or 0).
The mean is over the last ``RECENT_SEASONS`` seasons of ratios only (the test
still reads the whole history): seasons drift (tourism's above all), and
indices averaged over 25 years of a long monthly series pull each phase
toward its old shape. benchmarks/validation.py chose 8 seasons over the
whole history, 5 seasons and an exponential half-life of 2 or 4 seasons;
``seasons=None`` is statsmodels' whole-history mean.
Missing values (NaN) are skipped by the test and the indices and stay missing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from pandas.tseries.offsets import BaseOffset, Day, Tick

from leapcast.checks import check_int

Z_90 = 1.645  # the M4 test: |acf_m| above 1.645 standard errors (Bartlett's formula)
MIN_SEASONS = 3
RECENT_SEASONS = 8  # indices from the last 8 seasons of ratios (module docstring)


@dataclass(frozen=True)
class SeasonalIndex:
    """The seasonal indices of one history of length ``length``.

    index: [m]; phase j holds the steps t with t % m == j, t = 0 the history's first value.
    multiplicative: True: adjusted = y / index; False: adjusted = y - index.
    """

    index: np.ndarray
    multiplicative: bool
    length: int

    @property
    def season_length(self) -> int:
        return len(self.index)

    def at(self, start: int, n: int) -> np.ndarray:
        """Indices of steps start .. start + n - 1 -> [n]."""
        return self.index[np.arange(start, start + n) % self.season_length]

    def adjust(self, y: np.ndarray) -> np.ndarray:
        """The history [T] -> its seasonally adjusted values [T]."""
        past = self.at(0, self.length)
        return y / past if self.multiplicative else y - past

    def restore(self, paths: np.ndarray) -> np.ndarray:
        """Forecasts of the adjusted series [..., h] -> forecasts of the series [..., h]."""
        future = self.at(self.length, paths.shape[-1])
        return paths * future if self.multiplicative else paths + future


def autocorrelation(values, max_lag: int, observed: torch.Tensor | None = None) -> torch.Tensor:
    """Sample autocorrelation of each row at lags 0..max_lag (statsmodels' ``acf``; pairs with a missing value skipped).

    values [..., L] (a tensor or an array), observed [..., L] bool (default: the finite values)
    -> [..., max_lag + 1] in values' dtype; a row that never varies gets 1, 0, 0, ...
    The sums over lags come from one FFT of length 2L, so all rows and lags cost O(L log L).
    """
    values = torch.as_tensor(values)
    observed = torch.isfinite(values) if observed is None else observed
    length = values.shape[-1]
    zero = torch.zeros((), dtype=values.dtype, device=values.device)
    mean = torch.where(observed, values, zero).sum(-1, keepdim=True) / observed.sum(-1, keepdim=True).clamp(min=1)
    dev = torch.where(observed, values - mean, zero)  # [..., L], 0 where missing
    spectrum = torch.fft.rfft(dev, n=2 * length)
    sums = torch.fft.irfft(spectrum * spectrum.conj(), n=2 * length)[..., : min(max_lag + 1, length)]  # lags 0..
    sums = torch.nn.functional.pad(sums, (0, max_lag + 1 - sums.shape[-1]))  # [..., max_lag + 1]; no pairs past L - 1
    denom = (dev * dev).sum(-1, keepdim=True)  # [..., 1], exact
    unit = torch.zeros_like(sums)
    unit[..., 0] = 1
    return torch.where(denom > 0, sums / torch.where(denom > 0, denom, 1), unit)


def is_seasonal(y: np.ndarray, season_length: int) -> bool:
    """The M4 test: |acf at lag m| > 1.645 * sqrt((1 + 2 * sum_{k<m} acf_k^2) / n)."""
    m = season_length
    n = int(np.isfinite(y).sum())
    if m < 2 or n < MIN_SEASONS * m:
        return False
    r = autocorrelation(y, m).numpy()
    return bool(abs(r[m]) > Z_90 * np.sqrt((1 + 2 * (r[1:m] ** 2).sum()) / n))


def seasonal_index(y, season_length: int, seasons: int | None = RECENT_SEASONS) -> SeasonalIndex | None:
    """The seasonal indices of a history [T], or None when it fails the test (no adjustment).

    seasons: average each phase's last ``seasons`` ratios (the centred trend ends
    half a season before the history does; gaps are skipped); None: all.
    """
    y = np.asarray(y, dtype=np.float64)
    m = check_int(season_length, "season_length", must="a positive integer (1: no season)")
    seasons = check_int(seasons, "seasons", none=True, must="a positive integer or None (the whole history)")
    if y.ndim != 1:
        raise ValueError(f"`y` must be one series [T], got shape {tuple(y.shape)}")
    if not is_seasonal(y, m):
        return None
    finite = y[np.isfinite(y)]
    multiplicative = bool((finite > 0).all())
    weights = np.r_[0.5, np.ones(m - 1), 0.5] / m if m % 2 == 0 else np.ones(m) / m
    trend = np.convolve(y, weights, mode="valid")  # a window with a NaN gives NaN
    start = (len(weights) - 1) // 2
    detrended = np.full(len(y), np.nan)
    middle = y[start : start + len(trend)]
    with np.errstate(divide="ignore", invalid="ignore"):
        detrended[start : start + len(trend)] = middle / trend if multiplicative else middle - trend
    recent = slice(-seasons if seasons else None, None)
    phases = [p[np.isfinite(p)][recent] for p in (detrended[j::m] for j in range(m))]
    if any(len(p) == 0 for p in phases):
        return None  # too many gaps to estimate every phase
    index = np.array([p.mean() for p in phases])
    index = index / index.mean() if multiplicative else index - index.mean()
    if multiplicative and not (index > 0).all():
        return None
    return SeasonalIndex(index, multiplicative, len(y))


def seasonally_adjusted(y, season_length: int, seasons: int | None = RECENT_SEASONS) -> np.ndarray:
    """The history [T] adjusted where it passes the test, else as it is (for callers that never restore)."""
    y = np.asarray(y, dtype=np.float64)
    index = seasonal_index(y, season_length, seasons)
    return y if index is None else index.adjust(y)


def season_length_of(freq) -> int:
    """The usual season of a grid step: one day for steps shorter than a day (24 hourly, 48 half-hourly),
    7 daily, 5 business-daily, 52 weekly, 12 monthly, 4 quarterly, 1 otherwise (yearly, integer steps)."""
    if not isinstance(freq, BaseOffset):
        return 1
    if isinstance(freq, (Tick, Day)):  # pandas 3: Day is a calendar day, no longer a Tick
        per_day = pd.Timedelta(days=1) / pd.Timedelta(freq)
        return int(per_day) if per_day > 1 and per_day == int(per_day) else (7 if per_day == 1 else 1)
    if freq.n != 1:
        return 1
    base = freq.rule_code.split("-")[0].rstrip("SE")  # "MS" / "ME" -> "M", "QS-JAN" -> "Q", "W-SUN" -> "W"
    return {"B": 5, "W": 52, "M": 12, "BM": 12, "Q": 4, "BQ": 4}.get(base, 1)
