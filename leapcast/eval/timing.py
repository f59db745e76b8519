"""Wall-clock comparisons that survive a noisy machine.

Two functions timed in alternation in one process (A, B, A, B, ...) see the
same background load, so the median of the per-repeat ratios A/B is steadier
than a ratio of medians taken minutes apart.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

from leapcast.checks import check_int


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    """(seconds, fn's result)."""
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


@dataclass(frozen=True)
class Interleaved:
    """base_s, other_s: [repeats] seconds; last: ``other``'s result from the last repeat."""

    base_s: list[float]
    other_s: list[float]
    last: object = None

    @property
    def speedup(self) -> float:
        """Median over repeats of base time / other time (> 1: other is faster)."""
        return statistics.median(b / o for b, o in zip(self.base_s, self.other_s))

    @property
    def base_median(self) -> float:
        return statistics.median(self.base_s)

    @property
    def other_median(self) -> float:
        return statistics.median(self.other_s)


def interleaved(
    base: Callable[[], object], other: Callable[[], object], repeats: int, warmup: bool = False
) -> Interleaved:
    """Time ``base`` and ``other`` alternately ``repeats`` times (after one untimed call of each when ``warmup``)."""
    check_int(repeats, "repeats", must="an integer >= 1")
    if warmup:
        base(), other()
    base_s, other_s, last = [], [], None
    for _ in range(repeats):
        base_s.append(timed(base)[0])
        seconds, last = timed(other)
        other_s.append(seconds)
    return Interleaved(base_s, other_s, last)
