"""Models addressed by name: a checkpoint folder, a model bundled in the package, or a model hub id."""

from __future__ import annotations

from pathlib import Path

from leapcast.checks import param
from leapcast.hub import download, parse_hub_id

BUNDLED_DIR = Path(__file__).parent / "checkpoints"
DEFAULT_MODEL = "house-patch-target"  # used when no model is named, once a build bundles it


def bundled_models() -> list[str]:
    """Names of the checkpoint folders shipped inside the package."""
    if not BUNDLED_DIR.is_dir():
        return []
    return sorted(p.name for p in BUNDLED_DIR.iterdir() if (p / "config.json").is_file())


def resolve(model: str | Path | None, name: str = "model") -> Path:
    """A checkpoint folder path, the name of a bundled model, or a model hub id (``owner/name``, optionally
    ``owner/name@revision``; ``leapcast.hub``) -> its folder; None: the default bundled model.

    A local folder wins over a hub id of the same spelling.

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
    hub = parse_hub_id(str(model))
    if hub is not None:  # not a local folder: a model on the hub, from the cache or fetched into it
        return download(hub, name)
    raise FileNotFoundError(
        f"{shown} is neither a checkpoint folder, a bundled model (bundled: {names}) nor a model hub id "
        "(owner/name); pass a folder holding config.json and model.safetensors"
    )


def model_name(model: str | Path | None, folder: Path) -> str:
    """The name forecasts carry for ``model`` resolved to ``folder``: a hub id's own name (``chronos-t5-small``,
    not its snapshot's commit), else the folder's name (``"."`` -> the folder it means)."""
    hub = parse_hub_id(str(model)) if model is not None else None
    if hub is not None and not Path(str(model)).expanduser().is_dir():
        return hub.name
    return Path(folder).resolve().name
