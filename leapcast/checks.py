"""Argument checks, and how their messages name an argument: ``freq=`` in Python, ``--freq`` on the command line.

Library code builds its messages with ``arg("freq")`` / ``param("freq")``;
the CLI runs its work inside ``cli_spelling()``, so the same check speaks
to each caller in the words it typed. The checks every module shares live
here (``check_int``, ``check_flag``, ``check_levels``, ``check_device``);
a check that needs a module's own limit stays beside it, built on these
(``leapcast.inputs.check_horizon``).
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from numbers import Integral, Real
from typing import Literal, overload

_CLI = contextvars.ContextVar("leapcast_cli_spelling", default=False)


def arg(name: str) -> str:
    """How to pass ``name``: ``freq=`` (Python) or ``--freq`` (CLI)."""
    return "--" + name.replace("_", "-") if _CLI.get() else f"{name}="


def param(name: str) -> str:
    """How to name ``name`` in a message: ```freq``` (Python) or ```--freq``` (CLI); a command's argument in capitals
    (``MODEL``, ``FILE``) as it is."""
    return f"`--{name.replace('_', '-')}`" if _CLI.get() and not name.isupper() else f"`{name}`"


def setting(name: str, value: object) -> str:
    """``name`` set to ``value`` as the caller writes it: `--top-k 1` in the CLI, `top_k=1` in Python."""
    return f"`{arg(name)} {value}`" if cli_spelled() else f"`{name}={value}`"


def cli_spelled() -> bool:
    """Whether messages now name options as the CLI spells them (inside ``cli_spelling``)."""
    return _CLI.get()


@contextmanager
def cli_spelling() -> Iterator[None]:
    token = _CLI.set(True)
    try:
        yield
    finally:
        _CLI.reset(token)


def is_int(value: object) -> bool:
    """An integer, Python's or numpy's; never a bool, though Python counts True as 1."""
    return isinstance(value, Integral) and not isinstance(value, bool)


@overload
def check_int(
    value: object, name: str, *, low: int = ..., high: int | None = ..., none: Literal[False] = ..., must: str = ...
) -> int: ...
@overload
def check_int(
    value: object, name: str, *, low: int = ..., high: int | None = ..., none: bool, must: str = ...
) -> int | None: ...
def check_int(
    value: object,
    name: str,
    *,
    low: int = 1,
    high: int | None = None,
    none: bool = False,
    must: str = "a positive integer",
) -> int | None:
    """``value`` as an int in ``low .. high - 1`` (None passes through when ``none``);
    otherwise ``ValueError``: "`name` must be <must>, got <value!r>", the name as the caller spells it."""
    if value is None and none:
        return None
    if not is_int(value) or value < low or (high is not None and value >= high):
        raise ValueError(f"{param(name)} must be {must}, got {value!r}")
    return int(value)


def check_flag(value: object, name: str) -> bool:
    """True or False (numpy's too) as a bool; anything else refused by name."""
    import numpy as np

    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{param(name)} must be True or False, got {value!r}")
    return bool(value)


def is_real(value: object) -> bool:
    """A real number (numpy scalars of any width too), not a bool."""
    import numpy as np

    return isinstance(value, Real) and not isinstance(value, (bool, np.bool_))


def check_levels(levels: object, name: str = "quantile_levels") -> list[float]:
    """A non-empty list of quantile levels in (0, 1) -> [Q] floats."""
    import numpy as np

    if isinstance(levels, (str, bytes)) or not isinstance(levels, (Sequence, np.ndarray)):
        raise ValueError(f"{param(name)} must be a list of numbers in (0, 1), e.g. [0.1, 0.5, 0.9], got {levels!r}")
    levels = list(levels)
    if not levels:
        raise ValueError(f"{param(name)} is empty; pass levels in (0, 1), e.g. [0.1, 0.5, 0.9]")
    for q in levels:
        if not is_real(q) or not 0 < q < 1:
            raise ValueError(f"{param(name)} must be numbers in (0, 1), got {q!r}")
    return [float(q) for q in levels]


def check_device(device: object) -> str:
    """A torch device this build of torch can use, as a string; refused with what to do otherwise."""
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(
            f"{param('device')} {device!r} is not a torch device; pass e.g. 'cpu', 'cuda' or 'cuda:1'"
        ) from None
    if parsed.type == "cpu":
        return str(parsed)
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            build = "a CPU-only build of torch" if torch.version.cuda is None else "no visible CUDA device"
            raise ValueError(f"{param('device')} {device!r}: this machine has {build}; pass 'cpu'")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise ValueError(
                f"{param('device')} {device!r}: there are {torch.cuda.device_count()} CUDA devices (0..{torch.cuda.device_count() - 1})"
            )
        return str(parsed)
    if parsed.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(f"{param('device')} {device!r}: MPS is not available on this machine; pass 'cpu'")
        return str(parsed)
    raise ValueError(
        f"{param('device')} {device!r}: leapcast runs on 'cpu', 'cuda' or 'mps', got device type {parsed.type!r}"
    )
