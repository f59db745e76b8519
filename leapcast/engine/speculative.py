"""Speculative decoding's settings, counts and expected gains; the loop that runs it is ``leapcast.engine.loop``."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from leapcast.checks import check_flag, check_int, cli_spelled, is_real, param


@dataclass(frozen=True)
class SpecConfig:
    """How speculation runs.

    k: steps proposed per target pass (the most, when adaptive).
    adaptive: pick k in {0, 1, 2, 4, ..., k} per iteration from the measured time
        per committed step (mean progress of the active rows: an optimistic
        proxy, since a window lasts as long as its slowest row) (k = 0 is plain decoding: speculation switches itself
        off where it does not pay, e.g. large batches on a CPU). The default,
        so that a draft never makes a forecast much slower; False: always k.
        Because k follows the clock, a seeded forecast is reproducible only
        in distribution while k > 0 is being tried; use adaptive=False (or no
        draft) for paths that repeat exactly.
    stop_below: the proposer stops early once the draft's own top probability,
        averaged over the rows, falls below this (SpecDec++-style); None: never.
        The average is over the batch, so like adaptive k it ties a seeded forecast
        to its batch mates: reproducible in distribution, not path for path.
    Neither choice changes the output distribution: both depend only on the
    draft and the clock, never on the target's verdict for the current steps.
    max_residual_tries: continuous heads only: after a rejected patch, the residual is drawn by rejection
        from the target (expected tries 1 / TV(p, q)); None (default): unbounded, exact. A cap makes a row
        past it take the target's own draw, an approximation counted in ``SpecStats.residual_capped``.
    tolerance: mean decoding of continuous heads only (top_k=1): a proposed patch is kept when each value lies
        within tolerance x the context's scale of the target's mean; otherwise the target's mean is committed.
        Not lossless (0 is: only equal patches are kept); None: 0 under mean decoding, exact sampling otherwise.
    """

    k: int = 4
    adaptive: bool = True
    stop_below: float | None = None
    max_residual_tries: int | None = None
    tolerance: float | None = None

    def __post_init__(self) -> None:
        if self.tolerance is not None and not (is_real(self.tolerance) and 0 <= self.tolerance < float("inf")):
            raise ValueError(
                f"{param('tolerance')} must be a finite number >= 0{'' if cli_spelled() else ' or None'}, "
                f"got {self.tolerance!r}"
            )
        check_int(self.k, "k", high=33, must="an integer in 1..32")
        check_flag(self.adaptive, "adaptive")
        check_int(self.max_residual_tries, "max_residual_tries", none=True)
        if self.stop_below is not None and not (is_real(self.stop_below) and 0 < self.stop_below < 1):
            raise ValueError(f"{param('stop_below')} must be a number in (0, 1) or None, got {self.stop_below!r}")


@dataclass
class SpecStats:
    """Counts over all rows and windows of one forecast.

    A *draft* is one proposal of k steps for one row; ``mean_accepted_length``
    = 1 + accepted / drafts is the steps a row gains per target pass.
    """

    k: int
    target_passes: int = 0
    drafts: int = 0
    drafted_steps: int = 0
    accepted_steps: int = 0
    accepted_per_position: list[int] = field(default_factory=list)  # [k] drafts whose i-th step was kept
    draft_s: float = 0.0
    verify_s: float = 0.0
    other_s: float = 0.0
    residual_tries: int = 0  # continuous heads: draws from the target made to sample the residuals of rejected patches
    residual_capped: int = 0  # rejected patches that hit ``max_residual_tries`` (approximate; 0 without a cap)
    proposer: str = ""  # the proposer that ran (``early-exit`` names the depth it calibrated)
    passes_at_k: dict[int, int] = field(default_factory=dict)  # target passes by steps proposed (0: plain passes)

    @property
    def acceptance_rate(self) -> float:
        return self.accepted_steps / self.drafted_steps if self.drafted_steps else 0.0

    @property
    def mean_accepted_length(self) -> float:
        return 1 + self.accepted_steps / self.drafts if self.drafts else 1.0

    def merge(self, other: SpecStats) -> None:
        for name in (
            "target_passes",
            "drafts",
            "drafted_steps",
            "accepted_steps",
            "draft_s",
            "verify_s",
            "other_s",
            "residual_tries",
            "residual_capped",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.proposer = self.proposer or other.proposer
        for k, n in other.passes_at_k.items():
            self.passes_at_k[k] = self.passes_at_k.get(k, 0) + n
        if not self.accepted_per_position:
            self.accepted_per_position = [0] * len(other.accepted_per_position)
        self.accepted_per_position = [a + b for a, b in zip(self.accepted_per_position, other.accepted_per_position)]

    def as_dict(self) -> dict:
        out = {k: v for k, v in self.__dict__.items()}
        out["passes_at_k"] = dict(sorted(self.passes_at_k.items()))
        out.update(acceptance_rate=self.acceptance_rate, mean_accepted_length=self.mean_accepted_length)
        return out


def acceptance_probability(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Target and draft distributions p, q [..., V] -> [...] sum_x min(p(x), q(x)): the chance that exact
    speculative sampling keeps a step the draft drew from q (Leviathan et al., arXiv 2211.17192, the a of ``speedup_bound``)."""
    return torch.minimum(p, q).sum(-1)


def speedup_bound(a: float, k: int, c: float, v: float = 1.0) -> float:
    """The expected speedup of k proposed steps per target pass at acceptance a, draft cost ratio c (one draft
    step / one target step) and verify cost v (one target pass over k + 1 positions / one target step; 1 where the
    pass is bound by reading the weights, as on a GPU): (1 - a^(k+1)) / ((1 - a)(k c + v)), (k + 1) / (k c + v)
    at a = 1."""
    if a >= 1:
        return (k + 1) / (k * c + v)
    return (1 - a ** (k + 1)) / ((1 - a) * (k * c + v))
