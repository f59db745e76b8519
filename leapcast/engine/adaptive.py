"""Adaptive k: choose the proposal length per iteration from the measured time per committed step.

Which k runs never changes the output distribution: the choice depends on
the clock and the draft, never on the target's verdict for the current steps.
"""

from __future__ import annotations

import threading


class KChooser:
    """Picks k for the next iteration from measured seconds per committed step.

    Candidates 0, 1, 2, 4, ... up to k_max are tried cheapest first, and larger
    ones only while each beats the one before; then the fastest so far is
    used, re-trying its neighbours every 32nd iteration. One chooser serves
    every forecast of one shape, so what it learns carries across windows,
    batches and calls. Once k = 0 has won, the rest of the window and then
    whole windows run a plain decode loop (no speculative bookkeeping), and every ``recheck``-th window
    goes back to the speculative loop to re-measure k = 0 once and k = 1 three times.
    """

    def __init__(self, k_max: int, recheck: int = 8) -> None:
        self.candidates = sorted({0, k_max} | {2**i for i in range(6) if 2**i < k_max})
        self.cost: dict[int, float] = {}
        self.iteration = 0
        self.exploring = True
        self.recheck = recheck
        self.windows = 0
        self.queue: list[int] = []  # candidates to try next, before anything else
        self._lock = threading.RLock()  # forecast calls from several threads share a shape's chooser

    def __getstate__(self) -> dict:  # a lock does not pickle: a copy gets a lock of its own
        return {name: value for name, value in vars(self).items() if name != "_lock"}

    def __setstate__(self, state: dict) -> None:
        vars(self).update(state, _lock=threading.RLock())

    @property
    def off(self) -> bool:
        """Exploration is over and plain decoding (k = 0) is the fastest."""
        with self._lock:
            return not self.exploring and min(self.cost, key=self.cost.__getitem__) == 0

    @property
    def settled(self) -> bool:
        """Plain decoding won and no re-check is queued: k = 0, and nothing to time."""
        with self._lock:
            return self.off and not self.queue

    def speculate(self) -> bool:
        """Whether the next window runs the speculative loop (False: the plain loop)."""
        with self._lock:
            self.windows += 1
            if not self.off:
                return True
            if self.windows % self.recheck == 0:
                self.queue = [0] + [self.candidates[1]] * 3  # a fresh plain cost, then enough passes to move k = 1's
                return True
            return False

    def choose(self) -> int:
        with self._lock:
            self.iteration += 1
            if self.iteration == 1:
                return 0
            if self.queue:
                return self.queue.pop(0)
            if self.exploring:
                tried = [k for k in self.candidates if k in self.cost]
                if len(tried) >= 2 and self.cost[tried[-1]] > self.cost[tried[-2]]:
                    self.exploring = False  # slower than the one before: larger k will not pay either
                elif len(tried) < len(self.candidates):
                    return self.candidates[len(tried)]
                else:
                    self.exploring = False
            best = min(self.cost, key=self.cost.__getitem__)
            if self.iteration % 32 == 0:
                i = self.candidates.index(best)
                neighbours = self.candidates[max(0, i - 1) : i + 2]
                return neighbours[(self.iteration // 32) % len(neighbours)]
            return best

    def record(self, k: int, seconds: float, steps: float) -> None:
        """One iteration at ``k`` took ``seconds`` and moved the active rows ``steps`` on average."""
        with self._lock:
            if self.iteration == 1:
                return  # the first pass pays one-off costs (allocation, warm caches); it would flatter every later k
            per_step = seconds / max(steps, 1)
            self.cost[k] = per_step if k not in self.cost else 0.7 * self.cost[k] + 0.3 * per_step
