"""Sampling settings, categorical draws (``leapcast.models.sampling``) and the keys of series' random streams."""

from __future__ import annotations

import hashlib

from leapcast.models.sampling import (
    SamplingConfig,
    draw,
    probabilities,
    sample,
    sorted_probabilities,
    warp,
)

__all__ = [
    "SamplingConfig",
    "draw",
    "probabilities",
    "sample",
    "sorted_probabilities",
    "stream_key",
    "warp",
]


def stream_key(series_id: object) -> int:
    """A series id -> the 64-bit key of its random stream: a stable hash of ``str(series_id)``.

    Stable across processes and machines (Python's ``hash`` is salted per
    process), and the same for ``7``, ``np.int64(7)`` and ``"7"``, so a series
    read from CSV or built in code gets the same paths.
    """
    digest = hashlib.blake2b(str(series_id).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little")
