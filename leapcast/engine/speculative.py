"""Propose -> verify -> commit, batched over rows with their own positions.

Each row (series x sample path) accepts its own number of steps per target
pass; positions advance per row, and a rejection only moves a position: the
stale cache entries past it are masked by causality and overwritten next pass.
The target runs once per iteration over k+1 positions for all rows, which
reads its weights once for up to k+1 steps.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from leapcast.engine.proposers.base import ProposalInput, Proposer
from leapcast.engine.sampling import SamplingConfig, probabilities
from leapcast.engine.verify import verify
from leapcast.models.base import StepModel, Tokenized


@dataclass(frozen=True)
class SpecConfig:
    """``k`` steps proposed per target pass."""

    k: int = 4

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, int) or not 1 <= self.k <= 32:
            raise ValueError(f"`k` must be an integer in 1..32, got {self.k!r}")


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

    @property
    def acceptance_rate(self) -> float:
        return self.accepted_steps / self.drafted_steps if self.drafted_steps else 0.0

    @property
    def mean_accepted_length(self) -> float:
        return 1 + self.accepted_steps / self.drafts if self.drafts else 1.0

    def merge(self, other: "SpecStats") -> None:
        for name in ("target_passes", "drafts", "drafted_steps", "accepted_steps", "draft_s", "verify_s", "other_s"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        if not self.accepted_per_position:
            self.accepted_per_position = [0] * len(other.accepted_per_position)
        self.accepted_per_position = [a + b for a, b in zip(self.accepted_per_position, other.accepted_per_position)]

    def as_dict(self) -> dict:
        out = {k: v for k, v in self.__dict__.items()}
        out.update(acceptance_rate=self.acceptance_rate, mean_accepted_length=self.mean_accepted_length)
        return out


def speculative_window(
    model: StepModel,
    proposer: Proposer,
    batch: Tokenized,
    num_steps: int,
    sampling: SamplingConfig,
    spec: SpecConfig,
    generators: list[torch.Generator],
) -> tuple[torch.Tensor, SpecStats]:
    """Sample ``num_steps`` steps for every row -> (steps [B, S, num_steps] long, stats)."""
    t_start = time.perf_counter()
    b, s, k = len(generators), sampling.num_samples, spec.k
    rows = b * s
    capacity = num_steps + k + 1
    state = model.setup(batch, rows_per_series=s, max_steps=capacity)
    proposer.start(batch, state, capacity)
    stats = SpecStats(k=k, accepted_per_position=[0] * k)
    committed = torch.zeros(rows, capacity, dtype=torch.long)
    n = torch.zeros(rows, dtype=torch.long)
    pending = torch.full((rows,), model.start_token, dtype=torch.long)
    prev = pending.clone()
    first = True
    while bool((n < num_steps).any()):
        active = n < num_steps  # [R]
        u = _uniforms(generators, s, k)  # [R, 2k+1]
        at = n.clamp(max=num_steps)  # finished rows ride along in bounds; their results are dropped
        t0 = time.perf_counter()
        proposal = proposer.propose(ProposalInput(pending, prev, at, committed, first, k, u[:, :k], sampling))
        t1 = time.perf_counter()
        logits = model.decode(torch.cat([pending[:, None], proposal.steps], dim=1), at, state)  # [R, k+1, V]
        target_probs = probabilities(logits, sampling, model.banned_tokens)
        verdict = verify(proposal.steps, proposal.probs, target_probs, u[:, k : 2 * k], u[:, 2 * k])
        t2 = time.perf_counter()

        accepted = torch.where(active, verdict.accepted, 0)
        new = proposal.steps.clone()
        new = torch.cat([new, torch.zeros_like(new[:, :1])], dim=1).scatter_(1, verdict.accepted[:, None], verdict.next_step[:, None])
        offsets = torch.arange(k + 1)
        write = active[:, None] & (offsets[None, :] <= verdict.accepted[:, None])  # [R, k+1]
        where = (at[:, None] + offsets).clamp(max=capacity - 1)
        committed.scatter_(1, where, torch.where(write, new, committed.gather(1, where)))
        last_accepted = proposal.steps.gather(1, (verdict.accepted - 1).clamp(min=0)[:, None]).squeeze(1)
        prev = torch.where(active, torch.where(verdict.accepted > 0, last_accepted, pending), prev)
        pending = torch.where(active, verdict.next_step, pending)
        n = n + torch.where(active, verdict.accepted + 1, 0)
        first = False

        n_active = int(active.sum())
        stats.target_passes += 1
        stats.drafts += n_active
        stats.drafted_steps += n_active * k
        stats.accepted_steps += int(accepted.sum())
        for i in range(k):
            stats.accepted_per_position[i] += int((accepted > i).sum())
        stats.draft_s += t1 - t0
        stats.verify_s += t2 - t1
    stats.other_s = time.perf_counter() - t_start - stats.draft_s - stats.verify_s
    return committed[:, :num_steps].view(b, s, num_steps), stats


def _uniforms(generators: list[torch.Generator], rows_per_series: int, k: int) -> torch.Tensor:
    """[R, 2k+1]: k for the proposer, k for acceptance, 1 for the recovered or bonus step.

    Each series draws one block per iteration from its own generator.
    """
    return torch.cat([torch.rand(rows_per_series, 2 * k + 1, generator=g) for g in generators])
