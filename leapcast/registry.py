"""Models addressed by name: checkpoints bundled in the package."""

from __future__ import annotations

import re
from pathlib import Path

from leapcast.checks import param

BUNDLED_DIR = Path(__file__).parent / "checkpoints"
DEFAULT_MODEL = "house-target"  # used when no model is named, once a build bundles it


def bundled_models() -> list[str]:
    """Names of the checkpoint folders shipped inside the package."""
    if not BUNDLED_DIR.is_dir():
        return []
    return sorted(p.name for p in BUNDLED_DIR.iterdir() if (p / "config.json").is_file())


def resolve(model: str | Path | None, name: str = "model") -> Path:
    """A checkpoint folder path, or the name of a bundled model -> its folder; None: the default bundled model.

    ``name``: the argument being resolved (``model``, ``draft``, ...), for messages.
    """
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
    shown = f"{param(name)} {str(model)!r}"
    if path.exists():
        raise FileNotFoundError(
            f"{shown} is a file; pass the checkpoint folder that holds config.json and model.safetensors"
        )
    if _looks_like_hub_id(str(model)):
        raise FileNotFoundError(
            f"{shown} looks like a model hub id, and leapcast downloads nothing; fetch the checkpoint folder where "
            f"the internet is reachable (e.g. `huggingface-cli download {model} --local-dir {Path(str(model)).name}`), "
            f"then pass that folder (bundled models: {names})"
        )
    raise FileNotFoundError(
        f"{shown} is neither a checkpoint folder nor a bundled model (bundled: {names}); "
        "pass a folder holding config.json and model.safetensors"
    )


def _looks_like_hub_id(text: str) -> bool:
    """``owner/name`` with nothing that makes it a local path (no leading ./, / or ~, one slash)."""
    return re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", text) is not None
