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
- Any magnitude float64 holds with room to forecast, up to ``MAX_ABS`` = 1e305
  (and down to the smallest normal float64, 2.2e-308), is forecast correctly:
  each series is divided by a power of two near its largest |value| in float64
  (exact), the model sees values of order 1, and its float64 forecasts are
  multiplied back. So ``forecast(c * y) == c * forecast(y)`` exactly when ``c``
  is a power of two and to float32 rounding otherwise, and the model's tokens
  are the ones it would give the unscaled series. Larger magnitudes are
  refused: a forecast may reach several times a series' scale, and float64
  ends at 1.8e308 (docs/limits.md).
  That holds for models whose forecast of 2**k * y is 2**k times their forecast of y
  (Chronos). A model without that property (Toto: its scaler has an absolute floor) reads
  each series as given while its largest |value| lies in [``RAW_LOW``, ``RAW_HIGH``], as its
  reference does, and a power-of-two-scaled copy outside it, where float32 would fail
  (``raw_range_scale``).
- Horizons are at most ``MAX_HORIZON`` steps (docs/limits.md).
- Several variates of one item (models that read them, e.g. Toto): a 3-D tensor or array
  [N, V, T], left-padded with NaN (``as_items``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from leapcast.checks import check_int, param

MAX_ABS = 1e305  # largest |value| accepted: float64 ends at 1.8e308; a forecast may reach 15x its scale (Chronos bins)
MIN_NORMAL = float(np.finfo(np.float64).tiny)  # a series whose largest |value| is below this holds no float64 precision
RAW_LOW, RAW_HIGH = (
    2.0**-100,
    2.0**100,
)  # about 8e-31 and 1.3e30: float32 holds such series and their squares' sums in float64
MAX_HORIZON = 10_000  # steps; about 160 rolled-out windows of a Chronos model, minutes per series on a CPU


def _numpy(t: torch.Tensor) -> np.ndarray:
    """A tensor as numpy; floating types numpy lacks (bfloat16, float8) as float64, exactly."""
    t = t.detach().cpu()
    if t.is_floating_point() and t.dtype not in (torch.float16, torch.float32, torch.float64):
        t = t.double()
    return t.numpy()


def _unmasked(values: np.ma.MaskedArray, name: str) -> np.ndarray:
    """A masked array's masked values as NaN (missing), not as the data they hide."""
    _check_dtype(values.dtype, name)
    return np.ma.filled(values.astype(np.float64), np.nan)


def as_series_list(inputs: object, names: Sequence | None = None) -> list[np.ndarray]:
    """inputs (see module docstring) -> one float64 1-D array per series, NaN padding removed; ``names``: the
    series' names in refusals (a frame's ids; None: their positions in ``inputs``)."""
    if isinstance(inputs, torch.Tensor):
        inputs = _numpy(inputs)
    if isinstance(inputs, np.ma.MaskedArray):
        inputs = _unmasked(inputs, "inputs")
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
            _check_dtype(np.asarray(inputs).dtype, "inputs")  # numpy's complex scalars are numbers too
            series = [np.asarray(inputs, dtype=np.float64)]  # a plain list of numbers is one series
        else:
            series = []
            for i, item in enumerate(inputs):
                arr = _numpy(item) if isinstance(item, torch.Tensor) else item
                arr = _unmasked(arr, f"inputs[{i}]") if isinstance(arr, np.ma.MaskedArray) else np.asarray(arr)
                _check_dtype(arr.dtype, f"inputs[{i}]")
                if arr.ndim == 0:
                    raise ValueError(
                        f"`inputs[{i}]` is a single value ({item!r}) in a list whose other entries are not all "
                        "numbers: pass one series as a list of numbers (NaN for missing), or a list of 1-D series"
                    )
                if arr.ndim != 1:
                    raise ValueError(
                        f"`inputs[{i}]` must be 1-D, got shape {tuple(arr.shape)}"
                        + (
                            "; items of several variates go in one [N, V, T] array (left-padded with NaN), not a list"
                            if arr.ndim == 2
                            else ""
                        )
                    )
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
        label = f"series {i} of `inputs`" if names is None else f"series {names[i]!r}"
        if s.size == 0:
            raise ValueError(f"{label} is empty; every series needs at least one observed value")
        if np.isinf(s).any():
            raise ValueError(
                f"{label} holds {int(np.isinf(s).sum())} infinite value(s); replace them with NaN (missing) or finite values"
            )
        if np.isnan(s).all():
            raise ValueError(f"{label} has no observed value (all {s.size} are NaN)")
        peak = np.nanmax(np.abs(s))
        if peak > MAX_ABS:
            raise ValueError(
                f"{label} holds |value| {peak:.3g}, beyond the largest leapcast forecasts ({MAX_ABS:g}: "
                "float64 ends at 1.8e308 and a forecast needs room above its history); rescale it, e.g. divide by 1e100"
            )
        if 0 < peak < MIN_NORMAL:
            raise ValueError(
                f"{label} has largest |value| {peak:.3g}, below the smallest normal float64 "
                f"({MIN_NORMAL:.3g}), where values lose their precision; rescale it, e.g. multiply by 1e100"
            )
        out.append(s)
    return out


def power_of_two_scale(series: list[np.ndarray]) -> np.ndarray:
    """series (float64 [T_i] each) -> factor [N] float64: 2**floor(log2(largest |value|)), 1 for all-zero series.

    Dividing by it is exact, brings every series to largest |value| in [1, 2) for
    the float32 model, and leaves the model's tokens as they were (the Chronos
    scale is the mean |value|, which the same power of two divides).
    """
    peaks = np.array([np.nanmax(np.abs(s)) for s in series])
    exponents = np.floor(np.log2(np.where(peaks > 0, peaks, 1.0)))
    return np.ldexp(1.0, exponents.astype(int))


RAW_TARGET = 2.0**10  # where ``raw_range_scale`` brings a series from outside the range: largest |value| ~1,000


def raw_range_scale(series: list[np.ndarray]) -> np.ndarray:
    """For models that must read values as given: 1 for every series whose largest |value| lies in [RAW_LOW,
    RAW_HIGH]; outside it, the power of two that brings the largest |value| into [RAW_TARGET, 2 RAW_TARGET), where a
    model's absolute floor (Toto's 0.1 on the scale) is small against the variation of ordinary series (in [1, 2)
    it would flatten a series whose values vary by a few percent)."""
    peaks = np.array([np.nanmax(np.abs(s)) for s in series])
    inside = (peaks == 0) | ((peaks >= RAW_LOW) & (peaks <= RAW_HIGH))
    return np.where(inside, 1.0, power_of_two_scale(series) / RAW_TARGET)


def as_items(inputs: object) -> np.ndarray | None:
    """A 3-D tensor or array [N, V, T] (N items of V variates, left-padded with NaN) -> float64 [N, V, T],
    checked as ``as_series_list`` checks series; None for any other input."""
    if isinstance(inputs, torch.Tensor):
        if inputs.dim() != 3:
            return None
        inputs = _numpy(inputs)
    if not isinstance(inputs, np.ndarray) or inputs.ndim != 3:
        return None
    _check_dtype(inputs.dtype, "inputs")
    n, v, t = inputs.shape
    if n == 0 or v == 0 or t == 0:
        raise ValueError(f"`inputs` of shape {tuple(inputs.shape)} holds no values; pass [N, V, T] with N, V, T >= 1")
    x = inputs.astype(np.float64)
    for i in range(n):  # each variate checked as a series, named by item and variate
        for j in range(v):
            try:
                as_series_list([_strip_left_nan(x[i, j])])
            except ValueError as err:
                raise ValueError(
                    str(err).replace("series 0 of `inputs`", f"`inputs[{i}, {j}]` (item {i}, variate {j})")
                ) from None
    return x


def left_pad(series: list[np.ndarray]) -> torch.Tensor:
    """series (float64 [T_i] each, already scaled to order 1) -> contexts [N, T_max] float32 left-padded with NaN."""
    width = max(len(s) for s in series)
    contexts = np.full((len(series), width), np.nan, dtype=np.float32)
    for i, s in enumerate(series):
        contexts[i, width - len(s) :] = s
    return torch.from_numpy(contexts)


def check_horizon(prediction_length: object, name: str = "prediction_length") -> int:
    prediction_length = check_int(prediction_length, name)
    if prediction_length > MAX_HORIZON:
        raise ValueError(
            f"{param(name)} is {prediction_length}, above the largest horizon leapcast runs ({MAX_HORIZON} steps); "
            "forecast in shorter pieces (docs/limits.md)"
        )
    return prediction_length


def _strip_left_nan(row: np.ndarray) -> np.ndarray:
    observed = np.flatnonzero(~np.isnan(row.astype(np.float64)))
    return row[observed[0] :] if observed.size else row


def _check_dtype(dtype: np.dtype, name: str) -> None:
    if dtype == np.bool_ or not (np.issubdtype(dtype, np.floating) or np.issubdtype(dtype, np.integer)):
        raise TypeError(f"`{name}` must hold numbers (float or int), got dtype {dtype}")
