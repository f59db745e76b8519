"""Array inputs for ``Forecaster.predict``: validation and left padding.

Accepted, as in chronos-forecasting: a 1-D tensor or array (one series), a
list of 1-D tensors, arrays or lists (series of different lengths), or a 2-D
tensor or array [N, T] whose shorter series are left-padded with NaN.

Handling, documented rather than silent:
- NaN inside a series is missing data: the model masks it.
- Leading NaN is padding; a series must keep at least one observed value.
- A constant series is fine (zeros are scaled by 1, other constants by |c|).
- A series of one value is fine; the model reads at most its
  ``context_length`` last values of longer ones.
- Values beyond 1e30 in magnitude are divided by a power of two (exact in
  floating point) before the float32 tokenizer sees them, and forecasts are
  multiplied back, so they neither overflow nor change the tokens.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

HUGE = 1e30


def as_series_list(inputs: object) -> list[np.ndarray]:
    """inputs (see module docstring) -> one float64 1-D array per series, NaN padding removed."""
    if isinstance(inputs, torch.Tensor):
        inputs = inputs.detach().cpu().numpy()
    if isinstance(inputs, np.ndarray):
        _check_dtype(inputs.dtype, "inputs")
        if inputs.ndim == 1:
            series = [inputs]
        elif inputs.ndim == 2:
            series = [_strip_left_nan(row) for row in inputs]
        else:
            raise ValueError(f"`inputs` must be 1-D [T] or 2-D [N, T], got an array of shape {tuple(inputs.shape)}")
    elif isinstance(inputs, Sequence) and not isinstance(inputs, (str, bytes)):
        if len(inputs) == 0:
            raise ValueError("`inputs` is an empty list; pass at least one series")
        if all(isinstance(x, (int, float, np.number)) and not isinstance(x, bool) for x in inputs):
            series = [np.asarray(inputs, dtype=np.float64)]  # a plain list of numbers is one series
        else:
            series = []
            for i, item in enumerate(inputs):
                arr = item.detach().cpu().numpy() if isinstance(item, torch.Tensor) else np.asarray(item)
                _check_dtype(arr.dtype, f"inputs[{i}]")
                if arr.ndim != 1:
                    raise ValueError(f"`inputs[{i}]` must be 1-D, got shape {tuple(arr.shape)}")
                series.append(_strip_left_nan(arr))
    else:
        raise TypeError(
            f"`inputs` must be a tensor, a numpy array or a list of 1-D series, got {type(inputs).__name__}"
        )
    if not series:
        raise ValueError("`inputs` holds no series; pass at least one")
    out = []
    for i, s in enumerate(series):
        s = np.asarray(s, dtype=np.float64)
        if s.size == 0:
            raise ValueError(f"series {i} of `inputs` is empty; every series needs at least one observed value")
        if np.isinf(s).any():
            raise ValueError(f"series {i} of `inputs` holds {int(np.isinf(s).sum())} infinite value(s); replace them with NaN (missing) or finite values")
        if np.isnan(s).all():
            raise ValueError(f"series {i} of `inputs` has no observed value (all {s.size} are NaN)")
        out.append(s)
    return out


def left_pad(series: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """series -> (contexts [N, T_max] float32 left-padded with NaN, factor [N] float64).

    ``factor`` is the exact power-of-two divisor applied to series beyond
    ``HUGE``; forecasts are multiplied by it.
    """
    width = max(len(s) for s in series)
    contexts = np.full((len(series), width), np.nan, dtype=np.float64)
    factor = np.ones(len(series))
    for i, s in enumerate(series):
        peak = np.nanmax(np.abs(s))
        if peak > HUGE:
            factor[i] = 2.0 ** np.ceil(np.log2(peak / HUGE))
        contexts[i, width - len(s) :] = s / factor[i]
    return torch.from_numpy(contexts.astype(np.float32)), torch.from_numpy(factor)


def check_horizon(prediction_length: object, name: str = "prediction_length") -> int:
    if isinstance(prediction_length, bool) or not isinstance(prediction_length, (int, np.integer)) or prediction_length < 1:
        raise ValueError(f"`{name}` must be a positive integer, got {prediction_length!r}")
    return int(prediction_length)


def _strip_left_nan(row: np.ndarray) -> np.ndarray:
    observed = np.flatnonzero(~np.isnan(row.astype(np.float64)))
    return row[observed[0] :] if observed.size else row


def _check_dtype(dtype: np.dtype, name: str) -> None:
    if dtype == np.bool_ or not (np.issubdtype(dtype, np.floating) or np.issubdtype(dtype, np.integer)):
        raise TypeError(f"`{name}` must hold numbers (float or int), got dtype {dtype}")
