"""glibc's malloc, tuned for decoding: freed blocks of up to 32 MiB are reused, not mapped and faulted afresh.

A decode step allocates and frees tensors of a few MB to a few tens of MB (hidden layers, logits, mixture
parameters of thousands of rows). glibc serves a block above its mmap threshold with a fresh mapping, whose
pages the kernel faults in and zeroes on first touch; the threshold adapts upwards as such blocks are freed,
but memory free at the top of the heap is handed back to the system past a trim threshold, so the next step's
blocks fault again: `leapcast forecast` of M3-monthly with the default model spent 11.5 s of its 61 CPU-s in the
system; with the thresholds fixed, 0.4 s, and the command ran in 25.7 s instead of 31.9 (docs/engine.md).

Fixed thresholds are what the ``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_`` environment variables give
at start-up; ``tune_malloc`` sets them from inside the process, once, when leapcast loads a model. Memory up to
``TRIM_BYTES`` stays with the process after a forecast instead of going back to the system. ``LEAPCAST_MALLOC=system``
(or either glibc variable, or a ``glibc.malloc`` tunable in ``GLIBC_TUNABLES``, set by the user) leaves malloc as
it is; other C libraries are left as they are.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import platform

MMAP_BYTES = 32 * 2**20  # glibc's largest mmap threshold on 64-bit systems: blocks below it come from the heap
TRIM_BYTES = 256 * 2**20  # free memory kept at the top of the heap before any is handed back
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)
OFF = "system"

log = logging.getLogger(__name__)


@functools.cache
def _glibc(name: str):
    """glibc's function ``name`` in this process, or None (another OS or C library)."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError):
        return None


@functools.cache
def tune_malloc() -> bool:
    """Fix glibc's mmap and trim thresholds for this process (once) -> whether they were set."""
    raw = os.environ.get("LEAPCAST_MALLOC", "")
    setting = raw.strip().lower()
    if setting not in ("", OFF):
        raise ValueError(f"LEAPCAST_MALLOC={raw!r} is not a setting; unset it, or use {OFF!r} to leave malloc as it is")
    if (
        setting == OFF
        or "MALLOC_MMAP_THRESHOLD_" in os.environ
        or "MALLOC_TRIM_THRESHOLD_" in os.environ
        or "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", "")
    ):
        return False
    mallopt = _glibc("mallopt")
    if mallopt is None:
        return False
    done = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_BYTES)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_BYTES))
    log.debug("glibc malloc thresholds fixed: mmap %d, trim %d bytes (%s)", MMAP_BYTES, TRIM_BYTES, done)
    return done


def release_free_memory() -> bool:
    """Hand the free memory of every malloc arena back to the system (glibc's ``malloc_trim``) -> whether it ran.

    A server's decode loop frees blocks of every size as requests come and go; what is free inside the heaps
    stays with the process until trimmed (600-800 MB in a continuous-batching run of house-patch-target at 32
    clients, given back in 20-45 ms), so the scheduler calls this every ``TRIM_EVERY_S`` seconds and as it goes
    idle."""
    trim = _glibc("malloc_trim")
    if trim is None:
        return False
    trim(0)
    return True
