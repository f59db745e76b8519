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
