"""The `Dataset` record every loader returns, and helpers that build long frames."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from leapcast.checks import check_int

COLUMNS = ["unique_id", "ds", "y"]
PIP_HINT = "pip install 'leapcast[data]'"


@dataclass(frozen=True, eq=False)
class Dataset:
    """One named data set, as long frames ``unique_id, ds, y``.

    name: the catalog name (`leapcast.data.list_datasets()`).
    train: the history (context) part, ``[rows, 3]``, sorted by ``(unique_id, ds)``.
    test: the official test horizon, same columns, exactly ``horizon`` rows per
        series and the same ids as ``train``; None where the source has no split.
    horizon: the official forecast horizon, None where there is no split.
    season_length: the seasonal period in steps (MASE, SeasonalNaive): 1 yearly,
        4 quarterly, 12 monthly, 24 hourly, 48 half-hourly, 52 weekly.
    freq: a pandas alias (``"MS"``, ``"h"``) for datetime ``ds``, an int step for integer ``ds``.
    source: where the values come from and under which terms.
    """

    name: str
    train: pd.DataFrame
    test: pd.DataFrame | None
    horizon: int | None
    season_length: int
    freq: str | int
    source: str = ""

    def __post_init__(self):
        if list(self.train.columns) != COLUMNS:
            raise ValueError(f"`train` must have columns {COLUMNS}, got {list(self.train.columns)}")
        check_int(self.season_length, "season_length", must=">= 1")
        if (self.test is None) != (self.horizon is None):
            raise ValueError(f"`test` and `horizon` must both be set or both be None, got horizon={self.horizon}")
        check_int(self.horizon, "horizon", none=True, must=">= 1")
        if self.test is not None and list(self.test.columns) != COLUMNS:
            raise ValueError(f"`test` must have columns {COLUMNS}, got {list(self.test.columns)}")

    @property
    def n_series(self) -> int:
        return int(self.train["unique_id"].nunique())

    def full(self) -> pd.DataFrame:
        """Train and test together, sorted by ``(unique_id, ds)``: ``[rows, 3]``."""
        if self.test is None:
            return self.train.copy()
        both = pd.concat([self.train, self.test], ignore_index=True)
        return both.sort_values(["unique_id", "ds"], kind="stable", ignore_index=True)


def long_frame(ids: Sequence[str], values: Sequence[np.ndarray], ds: Sequence[np.ndarray]) -> pd.DataFrame:
    """A long frame from per-series arrays: ``ids[i]`` repeated ``len(values[i])`` times.

    values[i], ds[i]: ``[T_i]`` each. Returns ``[sum T_i, 3]`` sorted by ``(unique_id, ds)``.
    """
    lengths = [len(v) for v in values]
    frame = pd.DataFrame(
        {
            "unique_id": np.repeat(np.asarray(ids, dtype=object), lengths),
            "ds": np.concatenate(ds) if ds else np.array([], dtype=np.int64),
            "y": np.concatenate(values).astype(np.float64) if values else np.array([], dtype=np.float64),
        }
    )
    return frame.sort_values(["unique_id", "ds"], kind="stable", ignore_index=True)


def split_last(frame: pd.DataFrame, horizon: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split a sorted long frame into (all but the last ``horizon`` rows, the last ``horizon``) per series."""
    from_end = frame.groupby("unique_id", sort=False).cumcount(ascending=False)
    test = from_end < horizon
    return frame[~test].reset_index(drop=True), frame[test].reset_index(drop=True)


def require(module: str, pip_name: str, dataset: str):
    """Import an optional data package, or raise an ImportError that says what to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(
            f"data set {dataset!r} needs the package {pip_name!r}: run {PIP_HINT} (or pip install {pip_name})"
        ) from err
