"""Classic single series bundled with statsmodels (CSV files inside the wheel).

Only ``statsmodels.datasets.<name>.load_pandas()`` is used: it reads a CSV that
ships with statsmodels. (``statsmodels.datasets.get_rdataset`` downloads and is
never called.) statsmodels is BSD-3; each of these data sets is marked public
domain in its statsmodels module (``COPYRIGHT``).

None has an official split: ``test`` and ``horizon`` are None.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from leapcast.data.dataset import Dataset, long_frame, require


def _module(name: str, attr: str):
    datasets = require("statsmodels.datasets", "statsmodels", name)
    return getattr(datasets, attr)


def load_sunspots(name: str) -> Dataset:
    """Yearly Wolf sunspot numbers, 1700-2008 (309 values); ``ds`` is the integer year."""
    data = _module(name, "sunspots").load_pandas().data
    frame = long_frame(["sunspots"], [data["SUNACTIVITY"].to_numpy()], [data["YEAR"].to_numpy().astype(np.int64)])
    return Dataset(name, frame, None, None, 1, 1, "statsmodels.datasets.sunspots (public domain)")


def load_nile(name: str) -> Dataset:
    """Yearly flow volume of the Nile at Aswan, 1871-1970 (100 values); ``ds`` is the integer year."""
    data = _module(name, "nile").load_pandas().data
    frame = long_frame(["nile"], [data["volume"].to_numpy()], [data["year"].to_numpy().astype(np.int64)])
    return Dataset(name, frame, None, None, 1, 1, "statsmodels.datasets.nile (public domain)")


def load_co2(name: str) -> Dataset:
    """Weekly Mauna Loa CO2 (ppmv), 1958-03 to 2001-12 (2284 weeks, Saturdays).

    The 59 weeks with no measurement are kept as NaN, as the source has them.
    """
    data = _module(name, "co2").load_pandas().data
    ds = pd.DatetimeIndex(data.index).to_numpy()
    frame = long_frame(["co2"], [data["co2"].to_numpy()], [ds])
    return Dataset(name, frame, None, None, 52, "W-SAT", "statsmodels.datasets.co2 (public domain)")


CLASSIC = {
    "sunspots": load_sunspots,
    "nile": load_nile,
    "co2": load_co2,
}
