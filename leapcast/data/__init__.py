"""Offline data sets and the bundled examples."""

from pathlib import Path

EXAMPLES_DIR = Path(__file__).parent / "examples"


def example_path(name: str = "monthly.csv") -> Path:
    """Path of a bundled example file (`monthly.csv`: two monthly series, long layout)."""
    path = EXAMPLES_DIR / name
    if not path.is_file():
        names = sorted(p.name for p in EXAMPLES_DIR.glob("*.csv"))
        raise FileNotFoundError(f"no bundled example {name!r}; available: {names}")
    return path
