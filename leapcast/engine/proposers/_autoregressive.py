"""Shared by the proposers that run a decoder of their own: k sampled steps, one at a time."""

from __future__ import annotations

import torch

from leapcast.engine.proposers.base import Proposal, ProposalInput
from leapcast.engine.sampling import draw, probabilities


def propose_autoregressively(model, state, x: ProposalInput) -> Proposal:
    """Run ``model.decode`` k times on ``state``; steps drawn from the warped draft distribution.

    The first call also feeds the step before ``pending`` (at n-1): when the
    previous iteration accepted all k proposals, the draft never read the last
    of them; otherwise it rewrites an identical cache entry.
    """
    if x.first:
        logits = model.decode(x.pending[:, None], x.n, state)[:, -1]
    else:
        logits = model.decode(torch.stack([x.prev, x.pending], dim=1), x.n - 1, state)[:, -1]
    steps, probs = [], []
    for i in range(x.k):
        q = probabilities(logits, x.sampling, model.banned_tokens)  # [R, V]
        step = draw(q, x.uniforms[:, i])
        steps.append(step)
        probs.append(q)
        if x.stop_below is not None and q.max(dim=-1).values.mean() < x.stop_below:
            break  # the draft is unsure: verify what we have
        if i + 1 < x.k:
            logits = model.decode(step[:, None], x.n + i + 1, state)[:, -1]
    return Proposal(steps=torch.stack(steps, dim=1), probs=torch.stack(probs, dim=1))
