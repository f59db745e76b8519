"""How an error message names an argument: ``freq=`` in Python, ``--freq`` on the command line.

Library code builds its messages with ``arg("freq")`` / ``param("freq")``;
the CLI runs its work inside ``cli_spelling()``, so the same check speaks
to each caller in the words it typed.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager

_CLI = contextvars.ContextVar("leapcast_cli_spelling", default=False)


def arg(name: str) -> str:
    """How to pass ``name``: ``freq=`` (Python) or ``--freq`` (CLI)."""
    return "--" + name.replace("_", "-") if _CLI.get() else f"{name}="


def param(name: str) -> str:
    """How to name ``name`` in a message: ```freq``` (Python) or ```--freq``` (CLI)."""
    return f"`--{name.replace('_', '-')}`" if _CLI.get() else f"`{name}`"


@contextmanager
def cli_spelling() -> Iterator[None]:
    token = _CLI.set(True)
    try:
        yield
    finally:
        _CLI.reset(token)


def check_device(device: object) -> str:
    """A torch device this build of torch can use, as a string; refused with what to do otherwise."""
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"{param('device')} {device!r} is not a torch device; pass e.g. 'cpu', 'cuda' or 'cuda:1'") from None
    if parsed.type == "cpu":
        return str(parsed)
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            build = "a CPU-only build of torch" if torch.version.cuda is None else "no visible CUDA device"
            raise ValueError(f"{param('device')} {device!r}: this machine has {build}; pass 'cpu'")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise ValueError(f"{param('device')} {device!r}: there are {torch.cuda.device_count()} CUDA devices (0..{torch.cuda.device_count() - 1})")
        return str(parsed)
    if parsed.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(f"{param('device')} {device!r}: MPS is not available on this machine; pass 'cpu'")
        return str(parsed)
    raise ValueError(f"{param('device')} {device!r}: leapcast runs on 'cpu', 'cuda' or 'mps', got device type {parsed.type!r}")
