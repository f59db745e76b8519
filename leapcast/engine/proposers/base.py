"""What the speculative loop asks of a proposer."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch

from leapcast.engine.sampling import SamplingConfig
from leapcast.models.heads import Rand


@dataclass(frozen=True)
class ProposalInput:
    """Where each row stands when a proposal is asked for.

    Row r has committed ``n[r]`` steps, ``committed[r, :n[r]]``. The decoder
    input at position n[r] is ``pending[r]`` (the start token, or the last
    committed step); at position j < n[r] it is ``committed[r, j-1]`` (the
    start token at 0).
    """

    pending: torch.Tensor  # [R, *step] (token ids [R] long, or patches [R, V * P])
    n: torch.Tensor  # [R] long, clamped to the window so that finished rows stay in bounds
    committed: torch.Tensor  # [R, capacity, *step]
    k: int
    uniforms: torch.Tensor  # [R, k] for proposers that sample a categorical step (one number each)
    sampling: SamplingConfig
    stop_below: float | None = None  # stop once the mean top draft probability falls below this
    rand: Callable[[int], Rand] | None = None  # rand(i): the numbers of proposal position i (continuous heads)


@dataclass(frozen=True)
class Proposal:
    steps: torch.Tensor  # [R, k', *step], 1 <= k' <= k
    probs: torch.Tensor | None  # [R, k', V] the distributions the steps were drawn from; None: point masses
    heads: object | None = None  # continuous heads: the draft's heads [R, k'] the patches were drawn from


class Proposer(Protocol):
    """Proposes k steps per row; keeps whatever state it needs for the rows now decoding."""

    name: str

    def start(self, contexts: torch.Tensor, rows_per_series: int, target_state, capacity: int) -> None:
        """Prepare for new rows: contexts [B, T], B * rows_per_series rows of ``target_state`` (the target's
        state of exactly these rows), ``capacity`` positions each. Forgets rows from before."""

    def join(self, contexts: torch.Tensor, rows_per_series: int, target_state, capacity: int) -> None:
        """As ``start``, for rows added after the rows already held (series joining a running batch)."""

    def propose(self, x: ProposalInput) -> Proposal:
        """k proposed steps per row."""

    def select(self, rows: torch.Tensor) -> None:
        """Keep only these rows [R'] (in that order): finished series left."""

    def stop(self) -> None:
        """Forget every row (the decoder has none left): what was kept for them (a draft's caches) goes. Optional:
        the loop calls it where a proposer has it."""
