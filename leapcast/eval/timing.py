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


def round_robin(calls: dict[str, Callable[[], object]], repeats: int, warmup: int = 2) -> dict[str, float]:
    """Median seconds of each call, timed in turn (a, b, c, a, b, c, ...) ``repeats`` times after ``warmup``
    untimed rounds: cost ratios between them (a verify pass over k + 1 positions against one step, a draft
    step against a target step) see the same background load, as in ``interleaved``."""
    check_int(repeats, "repeats", must="an integer >= 1")
    for _ in range(warmup):
        for fn in calls.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, fn in calls.items():
            times[name].append(timed(fn)[0])
    return {name: statistics.median(t) for name, t in times.items()}


def pass_costs(
    models: dict, contexts, samples: int, widths: list[int], capacity: int, at: int, repeats: int
) -> dict[tuple[str, int], float]:
    """Median seconds of one decoder pass over ``width`` new positions for every row at position ``at``, per
    (model name, width), every model and width timed in turn (``round_robin``): the cost ratios v(k) (a pass over
    k + 1 positions / one step) and c (a draft step / a target step) of speculative decoding. ``models``: name ->
    a model of the engine's contract (``leapcast.models.base``); contexts [B, T]; ``samples`` rows per series in
    caches of ``capacity`` positions. The inputs are the start input repeated: a pass costs the same whatever
    the steps."""
    calls = {}
    for name, model in models.items():
        state = model.prefix(contexts, samples, capacity)
        start = model.start_inputs(state)  # [R, *step]
        for width in widths:
            inputs = start[:, None].expand(-1, width, *start.shape[1:]).contiguous()
            calls[(name, width)] = lambda model=model, state=state, inputs=inputs: model.step(state, inputs, at)
    return round_robin(calls, repeats)
