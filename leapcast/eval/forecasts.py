"""Forecasts as arrays for scoring: leapcast, chronos-forecasting's pipeline, statsforecast baselines.

Every function takes N histories (1-D arrays of any lengths) and returns
``median [N, h]`` and ``quantiles [N, h, Q]`` at ``DEFAULT_QUANTILES`` (plus samples
``[N, S, h]`` where the model samples).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from leapcast.forecaster import DEFAULT_QUANTILES

BASELINES = ("SeasonalNaive", "AutoETS", "AutoTheta")


def leapcast_forecast(
    fc, histories, h: int, samples: int, seed: int, batch_size: int = 32, season_length: int | None = None
):
    """A ``Forecaster`` -> median [N, h], quantiles [N, h, Q], samples [N, S, h].

    season_length: for the forecaster's seasonal adjustment (None: no adjustment).
    """
    tensors = [torch.tensor(x, dtype=torch.float32) for x in histories]
    s = fc.predict(
        tensors, h, num_samples=samples, seed=seed, batch_size=batch_size, progress=False, season_length=season_length
    )
    s = s.double().numpy()
    return summarize(s)


def official_pipeline(folder: str | Path, dtype: torch.dtype = torch.float32):
    """chronos-forecasting's ``ChronosPipeline`` on a checkpoint folder, its model cast to ``dtype``
    (ImportError when not installed)."""
    import transformers
    from chronos import ChronosPipeline

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ChronosPipeline.from_pretrained(str(folder), dtype=dtype)


def official_forecast(pipeline, histories, h: int, samples: int, seed: int):
    """``ChronosPipeline.predict`` on all histories at once -> median, quantiles, samples (as leapcast_forecast)."""
    torch.manual_seed(seed)  # the pipeline samples from torch's global generator
    tensors = [torch.tensor(x, dtype=torch.float32) for x in histories]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # h past the model's window: chronos warns, then rolls out as leapcast does
        s = pipeline.predict(tensors, h, num_samples=samples).double().numpy()
    return summarize(s)


def summarize(samples: np.ndarray):
    """samples [N, S, h] -> median [N, h], quantiles [N, h, Q] at DEFAULT_QUANTILES, samples."""
    return np.median(samples, axis=1), np.quantile(samples, DEFAULT_QUANTILES, axis=1).transpose(1, 2, 0), samples


def stats_forecast(model: str, histories, h: int, season: int):
    """A statsforecast baseline (one of BASELINES) -> median [N, h], quantiles [N, h, Q] (from its prediction intervals)."""
    from statsforecast import StatsForecast
    from statsforecast.models import AutoETS, AutoTheta, SeasonalNaive

    makers = {"SeasonalNaive": SeasonalNaive, "AutoETS": AutoETS, "AutoTheta": AutoTheta}
    if model not in makers:
        raise ValueError(f"`model` must be one of {', '.join(makers)}, got {model!r}")
    df = pd.concat([pd.DataFrame({"unique_id": i, "ds": np.arange(len(x)), "y": x}) for i, x in enumerate(histories)])
    levels = sorted({round(abs(1 - 2 * q) * 100) for q in DEFAULT_QUANTILES if q != 0.5})
    sf = StatsForecast(models=[makers[model](season_length=season)], freq=1, n_jobs=1)
    out = sf.forecast(df=df, h=h, level=levels).sort_values(["unique_id", "ds"])
    col = out.columns[2]
    point = out[col].to_numpy().reshape(len(histories), h)
    qs = []
    for q in DEFAULT_QUANTILES:
        if q == 0.5:
            qs.append(point)
        else:
            side = "lo" if q < 0.5 else "hi"
            qs.append(out[f"{col}-{side}-{round(abs(1 - 2 * q) * 100)}"].to_numpy().reshape(len(histories), h))
    return point, np.stack(qs, axis=-1)
