"""ETTh1 and ETTh2 (hourly Electricity Transformer Temperature), read in place.

The CSV files (Zhou et al., Informer, AAAI 2021; zhouhaoyi/ETDataset) are licensed
CC BY-ND 4.0: they are read where they lie and never copied or modified here.
They are found in ``$LEAPCAST_ETT_DIR`` when it is set (an error if it holds
neither file), else in a folder ``shared/data/ETT-small`` under any parent of
this package or of the working directory (a checkout at ``<root>/main`` finds
``<root>/shared/data/ETT-small``).

Each file has 17,420 hourly rows (2016-07-01 to 2018-06-26), columns ``date``,
HUFL, HULL, MUFL, MULL, LUFL, LULL and OT (oil temperature, the usual target).

The usual long-horizon protocol (Informer, Autoformer, Time-MoE, Timer) splits
12/4/4 months of 30 days: rows ``[0, 8640)`` train, ``[8640, 11520)`` validation,
``[11520, 14400)`` test; the last 3,020 rows are not used. Each channel is
z-scored with the mean and population std (ddof 0, as sklearn's StandardScaler)
of its training rows; windows whose targets start in the test span take their
context from the rows before it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from leapcast.data.dataset import COLUMNS, Dataset

ENV_VAR = "LEAPCAST_ETT_DIR"
FILES = {"etth1": "ETTh1", "etth2": "ETTh2"}
CHANNELS = ("HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT")
TRAIN_ROWS, VAL_ROWS, TEST_ROWS = 12 * 30 * 24, 4 * 30 * 24, 4 * 30 * 24  # 8640, 2880, 2880
SOURCE = "ETDataset (Zhou et al., AAAI 2021), CC BY-ND 4.0, read unmodified from {path}"


def ett_dir() -> Path:
    """The folder holding ETTh1.csv and ETTh2.csv; FileNotFoundError says where it looked."""
    override = os.environ.get(ENV_VAR)
    if override:
        folder = Path(override).expanduser()
        if not any((folder / f"{stem}.csv").is_file() for stem in FILES.values()):
            raise FileNotFoundError(f"${ENV_VAR}={override} holds neither ETTh1.csv nor ETTh2.csv")
        return folder
    looked = []
    starts = [Path(__file__).resolve().parent, Path.cwd().resolve()]
    for start in starts:
        for parent in [start, *start.parents]:
            folder = parent / "shared" / "data" / "ETT-small"
            if folder.is_dir():
                return folder
        looked.append(f"shared/data/ETT-small above {start}")
    raise FileNotFoundError(
        f"ETT-small folder not found (looked at {'; '.join(looked)}); set {ENV_VAR} to the folder holding ETTh1.csv"
    )


def _check_name(name: str) -> str:
    key = name.lower()
    if key not in FILES:
        raise ValueError(f"`name` must be one of {sorted(FILES)}, got {name!r}")
    return key


def _channels(channels: str | Sequence[str]) -> list[str]:
    if isinstance(channels, str):
        chosen = list(CHANNELS) if channels.lower() == "all" else [channels]
    else:
        chosen = list(channels)
    unknown = [c for c in chosen if c not in CHANNELS]
    if unknown or not chosen:
        raise ValueError(f"`channels` must be 'all' or names from {list(CHANNELS)}, got {channels!r}")
    return chosen


def _read(name: str) -> tuple[pd.DataFrame, Path]:
    path = ett_dir() / f"{FILES[name]}.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; set {ENV_VAR} to the folder holding {path.name}")
    table = pd.read_csv(path, parse_dates=["date"])
    return table, path


def load_ett(name: str, channels: str | Sequence[str] = "OT") -> Dataset:
    """ETTh1 / ETTh2 as a long frame: ``train`` holds all 17,420 rows of each channel.

    channels: "OT" (default; one series, ``unique_id`` "ETTh1-OT"), "all" (the 7
        channels, ids "ETTh1-HUFL", ...), or a list of channel names.
    ``test`` and ``horizon`` are None: the protocol is rolling windows over the
    test rows, see :func:`ett_split`.
    """
    key = _check_name(name)
    table, path = _read(key)
    chosen = _channels(channels)
    ds = table["date"].to_numpy()
    parts = [
        pd.DataFrame({"unique_id": f"{FILES[key]}-{c}", "ds": ds, "y": table[c].astype("float64")}) for c in chosen
    ]
    frame = pd.concat(parts, ignore_index=True)
    frame["unique_id"] = frame["unique_id"].astype(object)
    frame = frame.sort_values(["unique_id", "ds"], kind="stable", ignore_index=True)[COLUMNS]
    return Dataset(key, frame, None, None, 24, "h", SOURCE.format(path=path))


def ett_split(name: str) -> tuple[int, int, int]:
    """Row indices ``(train_end, val_end, test_end)`` = (8640, 11520, 14400) of the 12/4/4-month protocol.

    Rows ``[0, train_end)`` train, ``[train_end, val_end)`` validation, ``[val_end, test_end)`` test,
    counted from the first row of each series in :func:`load_ett`'s frame.
    """
    _check_name(name)
    return TRAIN_ROWS, TRAIN_ROWS + VAL_ROWS, TRAIN_ROWS + VAL_ROWS + TEST_ROWS


def ett_stats(name: str, channels: str | Sequence[str] = "OT") -> pd.DataFrame:
    """Z-score statistics from the training rows: ``[n_channels, 3]`` frame ``unique_id, mean, std``.

    std is the population std (ddof 0), as sklearn's StandardScaler in the reference code.
    Normalise with ``(y - mean) / std`` per ``unique_id``.
    """
    key = _check_name(name)
    table, _ = _read(key)
    chosen = _channels(channels)
    train_end, _, _ = ett_split(key)
    values = table[chosen].to_numpy(dtype=np.float64)[:train_end]  # [8640, C]
    return pd.DataFrame(
        {
            "unique_id": [f"{FILES[key]}-{c}" for c in chosen],
            "mean": values.mean(axis=0),
            "std": values.std(axis=0, ddof=0),
        }
    )
