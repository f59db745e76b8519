"""Models addressed by name: checkpoints bundled in the package."""

from __future__ import annotations

from pathlib import Path

BUNDLED_DIR = Path(__file__).parent / "checkpoints"
DEFAULT_MODEL = "house-target"  # used when no model is named, once a build bundles it


def bundled_models() -> list[str]:
    """Names of the checkpoint folders shipped inside the package."""
    if not BUNDLED_DIR.is_dir():
        return []
    return sorted(p.name for p in BUNDLED_DIR.iterdir() if (p / "config.json").is_file())


def resolve(model: str | Path | None) -> Path:
    """A checkpoint folder path, or the name of a bundled model -> its folder; None: the default bundled model."""
    if model is None:
        if DEFAULT_MODEL in bundled_models():
            return BUNDLED_DIR / DEFAULT_MODEL
        raise FileNotFoundError(
            f"no model given and this build bundles no {DEFAULT_MODEL!r}; pass a checkpoint folder "
            "(or build a random-weight one with `leapcast init PATH --size tiny`)"
        )
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    if str(model) in bundled_models():
        return BUNDLED_DIR / str(model)
    names = ", ".join(bundled_models()) or "none in this build"
    raise FileNotFoundError(
        f"`model` {str(model)!r} is neither a checkpoint folder nor a bundled model (bundled: {names}); "
        "build a random-weight one with `leapcast init PATH --size tiny`"
    )
