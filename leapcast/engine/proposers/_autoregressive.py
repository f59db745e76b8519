"""Shared by the proposers that run a decoder of their own: catch up, then k sampled steps."""

from __future__ import annotations

from typing import Any

import torch

from leapcast.engine.proposers.base import Proposal, ProposalInput
from leapcast.engine.sampling import draw


class DecoderProposer:
    """A proposer that runs a decoder of its own (``model`` on ``state``); subclasses say how to build
    the state for new rows (``_state_for``)."""

    model: Any = None  # a family's model (the contract in leapcast.models.base)
    state: Any = None  # its DecoderState for the proposer's rows

    def _state_for(self, contexts: torch.Tensor, rows_per_series: int, target_state, capacity: int):
        raise NotImplementedError

    def start(self, contexts, rows_per_series, target_state, capacity) -> None:
        self.state = self._state_for(contexts, rows_per_series, target_state, capacity)
        self.fed = torch.zeros(
            self.state.num_rows, dtype=torch.long, device=self.model.device
        )  # cache positions holding committed inputs

    def join(self, contexts, rows_per_series, target_state, capacity) -> None:
        new = self._state_for(contexts, rows_per_series, target_state, capacity)
        self.state = self.model.merge(self.state, new)
        self.fed = torch.cat([self.fed, torch.zeros(new.num_rows, dtype=torch.long, device=self.fed.device)])

    def propose(self, x: ProposalInput) -> Proposal:
        proposal, self.fed = propose_autoregressively(self.model, self.state, x, self.fed)
        return proposal

    def select(self, rows: torch.Tensor) -> None:
        self.state = self.model.select(self.state, rows)
        self.fed = self.fed[rows]

    def stop(self) -> None:
        self.state, self.fed = None, self.fed[:0]


def propose_autoregressively(model, state, x: ProposalInput, fed: torch.Tensor) -> tuple[Proposal, torch.Tensor]:
    """Run ``model.step`` on ``state``: one catch-up call, then k-1 single steps.

    ``fed[r]``: decoder positions 0..fed[r]-1 of row r hold committed inputs in
    the draft's cache. The catch-up call feeds positions fed..n (the steps
    committed since the last proposal, including accepted proposals the draft
    already read, which rewrites identical entries) as one chunk of the widest
    row's width; rows with less to catch up start earlier and rewrite more.
    Returns the proposal and the new ``fed`` (n + 1: the pending input is read).
    """
    n = x.n
    width = int((n + 1 - fed).max())
    start = (n + 1 - width).clamp(min=0)  # [R]
    pos = start[:, None] + torch.arange(width, device=n.device)  # [R, width] decoder positions
    extra = (1,) * (x.committed.dim() - 2)  # a step's own dimensions (none for tokens, [V * P] for patches)
    index = (pos - 1).clamp(min=0, max=x.committed.shape[1] - 1)
    previous = x.committed.gather(1, index.view(*index.shape, *extra).expand(-1, -1, *x.committed.shape[2:]))
    first = model.start_inputs(state).to(previous.device)[:, None].expand_as(previous)  # the input at position 0
    inputs = torch.where((pos == 0).view(*pos.shape, *extra), first, previous)
    inputs = torch.where((pos == n[:, None]).view(*pos.shape, *extra), x.pending[:, None], inputs)
    head = model.step(state, inputs, start).pick(n - start)  # [R, 1] at position n
    if x.rand is not None:
        return _propose_patches(model, state, x, head), n + 1
    steps, probs = [], []
    for i in range(x.k):
        ordered = head.sorted(x.sampling)  # the order plain sampling draws in: one number, one step
        step = ordered[1][:, 0].gather(1, draw(ordered[0][:, 0], x.uniforms[:, i])[:, None]).squeeze(1)
        q = head.probs(x.sampling, ordered)[:, 0]  # [R, V]
        steps.append(step)
        probs.append(q)
        if x.stop_below is not None and ordered[0][:, 0, 0].mean() < x.stop_below:  # the top probability
            break  # the draft is unsure: verify what we have
        if i + 1 < x.k:
            head = model.step(state, step[:, None], n + i + 1)
    return Proposal(steps=torch.stack(steps, dim=1), probs=torch.stack(probs, dim=1)), n + 1


def _propose_patches(model, state, x: ProposalInput, head) -> Proposal:
    """k patches drawn from the draft's continuous heads, each with the numbers plain sampling would use at its
    position (so a draft equal to the target proposes what plain decoding draws); the heads come back too."""
    assert x.rand is not None  # the loop hands continuous heads their numbers
    steps, heads = [], []
    for i in range(x.k):
        step = head.sample(x.sampling, x.rand(i))[:, 0]  # [R, *step]
        steps.append(step)
        heads.append(head)
        if i + 1 < x.k:
            head = model.step(state, step[:, None], x.n + i + 1)
    return Proposal(steps=torch.stack(steps, dim=1), probs=None, heads=type(head).cat(heads))
