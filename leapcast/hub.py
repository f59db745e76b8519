"""Models by hub id: ``owner/name`` (or ``owner/name@revision``) -> a checkpoint folder in the local model cache.

huggingface_hub does the work: its cache (``HF_HUB_CACHE``, by default ``~/.cache/huggingface/hub``), revisions
(a branch, tag or commit; default ``main``) and offline mode (``HF_HUB_OFFLINE=1``: the cache only, never the
network). Only ``config.json`` and ``*.safetensors`` are fetched, so pickle weights never reach the disk; the
loader (``leapcast.models.loading``) then refuses remote code as it does for any folder.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from leapcast.checks import param

# What a checkpoint folder needs, for every family leapcast loads (Chronos-T5, Toto): its config and its weights.
ALLOW_PATTERNS = ("config.json", "*.safetensors")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")

_HUB_ID = re.compile(r"(?P<repo>[A-Za-z0-9][\w.-]*/[\w.-]+)(?:@(?P<revision>[\w.][\w./-]*))?")


@dataclass(frozen=True)
class HubId:
    """``repo`` ("owner/name") at ``revision`` (None: the hub's default branch, main)."""

    repo: str
    revision: str | None = None

    @property
    def name(self) -> str:
        """The model's own name (``chronos-t5-small``): what forecasts are labelled with."""
        return self.repo.split("/")[1]

    def __str__(self) -> str:
        return self.repo if self.revision is None else f"{self.repo}@{self.revision}"


def parse_hub_id(text: str) -> HubId | None:
    """``owner/name`` or ``owner/name@revision`` -> HubId; None for anything else (a path like ./x, /x, ~/x, a/b/c)."""
    found = _HUB_ID.fullmatch(text)
    return None if found is None else HubId(found["repo"], found["revision"])


def offline() -> bool:
    """HF_HUB_OFFLINE as it is now (huggingface_hub reads it once, at import)."""
    from huggingface_hub import constants

    value = os.environ.get("HF_HUB_OFFLINE")
    return constants.HF_HUB_OFFLINE if value is None else value.strip().upper() in {"1", "ON", "YES", "TRUE"}


def cache_dir() -> str | None:
    """HF_HUB_CACHE as it is now; None: huggingface_hub's own default."""
    return os.environ.get("HF_HUB_CACHE") or None


def download(hub: HubId, name: str = "model") -> Path:
    """The snapshot folder of ``hub`` in the local cache, fetched first where the network allows.

    Raises FileNotFoundError with what to do when the model is neither cached nor reachable, or holds no
    safetensors weights.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    shown = f"{param(name)} {str(hub)!r}"
    if hub.revision is not None and any(part in ("", ".", "..") for part in hub.revision.split("/")):
        raise FileNotFoundError(
            f"{shown}: the revision {hub.revision!r} has an empty, '.' or '..' part; name a branch, tag or commit"
        )
    where = cache_dir() or "the default cache, ~/.cache/huggingface/hub"
    try:
        folder = snapshot_download(
            hub.repo,
            revision=hub.revision,
            cache_dir=cache_dir(),
            local_files_only=offline(),
            allow_patterns=list(ALLOW_PATTERNS),
        )
    except LocalEntryNotFoundError:
        fetch = f"`hf download {hub.repo}{_revision_flag(hub)} --include config.json '*.safetensors'`"
        if offline():
            raise FileNotFoundError(
                f"{shown} is a model hub id that is not in the local model cache ({where}), and HF_HUB_OFFLINE is "
                f"set, so leapcast may not download it: unset HF_HUB_OFFLINE, or fetch it once where the network is "
                f"reachable ({fetch}) with the same HF_HUB_CACHE, or pass a checkpoint folder"
            ) from None
        raise FileNotFoundError(
            f"{shown} is a model hub id that could not be fetched (the hub is unreachable from here) and is not in the "
            f"local model cache ({where}); fetch it where the network is reachable ({fetch}) and point HF_HUB_CACHE "
            "at that cache, or pass a checkpoint folder"
        ) from None
    except RevisionNotFoundError:
        raise FileNotFoundError(
            f"{shown}: the hub has no revision {hub.revision!r} of {hub.repo!r}; name a branch, tag or commit it has"
        ) from None
    except GatedRepoError:
        raise FileNotFoundError(
            f"{shown} is gated on the hub: accept its terms on the model's page and log in (`hf auth login`)"
        ) from None
    except RepositoryNotFoundError:
        raise FileNotFoundError(
            f"{shown}: no such model on the hub (or it is private: log in with `hf auth login`); "
            "check the spelling, or pass a checkpoint folder"
        ) from None
    except HFValidationError as err:
        raise FileNotFoundError(f"{shown} is not a valid model hub id ({err})") from None
    folder = Path(folder)
    if not any(folder.glob("*.safetensors")):
        raise FileNotFoundError(_no_safetensors(hub, shown))
    return folder


def _no_safetensors(hub: HubId, shown: str) -> str:
    """The message for a hub model without safetensors weights, naming its pickle files where the hub can be asked."""
    pickles: list[str] = []
    if not offline():
        try:
            from huggingface_hub import list_repo_files

            files = list_repo_files(hub.repo, revision=hub.revision)
            pickles = [f for f in files if f.endswith(PICKLE_SUFFIXES)]
        except Exception:  # only to name the files in the message; the refusal stands either way
            pickles = []
    if pickles:
        return (
            f"{shown} publishes only pickle weights ({', '.join(pickles[:3])}); leapcast refuses pickle because "
            "loading it can run arbitrary code. Convert it once, in an environment you trust, to model.safetensors "
            "(docs/models.md, Loading rules) and pass that folder"
        )
    return (
        f"{shown} has no *.safetensors weights at the top of its snapshot; leapcast loads safetensors only "
        "(pickle is refused): pass a checkpoint folder holding config.json and model.safetensors"
    )


def _revision_flag(hub: HubId) -> str:
    return "" if hub.revision is None else f" --revision {hub.revision}"
