"""Seasonal synthetic series: level x trend x season x noise, the structural prior of
ForecastPFN (Dooley et al. 2023, arXiv 2311.01933) and of classic decomposition models.

KernelSynth's periodic kernels draw their periods from a bank where most periods
(24..730 steps) span several context windows of a small model, and a GP path
needs many periods before its repetition shows; with a CPU budget of a few
thousand steps a model trained on it barely learns to repeat a season. These
series make the season the thing to learn: a period ``m`` from the ones
calendar data have (quarters, months, weekdays, hours, weeks), a random seasonal
profile repeated every ``m`` steps and slowly drifting, on a trend of 0.01% to
1% per step whose slope drifts (small models under-extrapolate such trends),
multiplicative or additive, with observation noise; a quarter of the series
have no season.

Series ``i`` uses the ``i``-th child of ``np.random.SeedSequence(seed)``, as the
other generators do, so the first ``n`` series do not depend on how many are asked for.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from leapcast.checks import check_int
from leapcast.data.synthetic import _ids, _rngs

PERIODS = (4, 12, 4, 12, 7, 24, 52, 2, 3, 5, 6, 10, 13, 26)  # quarterly and monthly twice as likely


def structural_series(
    length: int, rng: np.random.Generator, period: int | None = None, seasonal: bool | None = None
) -> np.ndarray:
    """One series ``[length]`` (float64): a trend with, unless ``seasonal`` is False, a season.

    ``period``/``seasonal`` left None are drawn: a period from ``PERIODS``, a season in 3 of 4 series.
    The trend grows or shrinks by 0.01% to 1% per step (log-uniform), its slope drifting.
    """
    m = int(period if period is not None else rng.choice(PERIODS))
    seasonal = bool(rng.random() < 0.75) if seasonal is None else seasonal
    harmonics = np.arange(1, max(1, m // 2) + 1)
    weights = rng.standard_normal((2, len(harmonics))) / harmonics ** rng.uniform(0.5, 2.0)  # smooth or spiky profiles
    phase = 2 * np.pi * np.arange(m)[:, None] * harmonics / m  # [m, K]
    profile = np.cos(phase) @ weights[0] + np.sin(phase) @ weights[1]  # [m]
    profile = (profile - profile.mean()) / (profile.std() + 1e-12)
    seasons = -(-length // m)
    drift = np.cumsum(rng.standard_normal((seasons, m)) * rng.uniform(0.0, 0.1), axis=0)  # seasonal shape evolves
    drift -= drift.mean(axis=1, keepdims=True)  # each season still sums to 0
    season = (profile + drift).reshape(-1)[:length]
    growth = rng.choice([-1.0, 1.0]) * np.exp(rng.uniform(np.log(1e-4), np.log(1e-2)))  # per step
    slope = growth + np.cumsum(rng.standard_normal(length)) * rng.uniform(0.0, 2e-4)
    trend = np.cumsum(slope) - slope[0]
    wander = np.cumsum(rng.standard_normal(length)) * rng.uniform(0.0, 0.02)
    amplitude = rng.uniform(0.02, 0.4) if seasonal else 0.0
    noise = rng.standard_normal(length) * rng.uniform(0.0, 0.08)
    if rng.random() < 0.6:
        y = np.exp(trend) * (1.0 + wander) * (1.0 + amplitude * season) * (1.0 + noise)
    else:
        y = 1.0 + trend + wander + amplitude * season + noise
    return y * np.exp(rng.uniform(0.0, 8.0))


def structural_synth(n_series: int, length: int = 512, seed: int = 0) -> pd.DataFrame:
    """Structural synthetic series (``structural_series``: a trend, in most a season) as a long frame ``[n_series * length, 3]``.

    ``unique_id`` "ss-0", "ss-1", ... (zero-padded), integer ``ds`` 0..length-1, float64 ``y``.
    """
    check_int(n_series, "n_series", must=">= 1")
    check_int(length, "length", low=2, must=">= 2")
    paths = [structural_series(length, rng) for rng in _rngs(seed, n_series)]
    return pd.DataFrame(
        {
            "unique_id": np.repeat(_ids("ss", n_series), length),
            "ds": np.tile(np.arange(length, dtype=np.int64), n_series),
            "y": np.concatenate(paths),
        }
    )
