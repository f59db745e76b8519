"""Exact speculative sampling for categorical steps.

A proposer offers k steps x_1..x_k for a row, drawn from its distributions
q_1..q_k (a point mass when the proposer is deterministic). One target pass
gives p_1..p_{k+1} at the same positions. Then, left to right:

- **accepted**: x_i is kept with probability min(1, p_i(x_i) / q_i(x_i));
- **recovered**: at the first rejection, position i, the step is drawn from
  the residual norm(max(0, p_i - q_i)) and the row stops there;
- **bonus**: when all k are kept, one more step is drawn from p_{k+1}.

Every row so gains between 1 and k+1 steps per target pass, and each step has
exactly the distribution p, the target's own (Leviathan, Kalman & Matias,
"Fast Inference from Transformers via Speculative Decoding", arXiv 2211.17192;
Chen et al., "Accelerating Large Language Model Decoding with Speculative
Sampling", arXiv 2302.01318). p and q must be taken after the same warping
(temperature, top-k, top-p) the user asked for: the output then follows the
warped target, which is what plain sampling draws from. A deterministic
proposal is the case q = one_hot(x): kept with probability p(x), residual p
without x.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from leapcast.engine.sampling import draw


@dataclass(frozen=True)
class Verdict:
    accepted: torch.Tensor  # [R] long, proposed steps kept (0..k)
    next_step: torch.Tensor  # [R] long, the recovered step (accepted < k) or the bonus step (accepted == k)


def verify(
    proposal: torch.Tensor,
    draft_probs: torch.Tensor | None,
    target: tuple[torch.Tensor, torch.Tensor],
    accept_uniforms: torch.Tensor,
    bonus_uniforms: torch.Tensor,
    residual_uniforms: torch.Tensor,
) -> Verdict:
    """proposal [R, k] long; draft_probs [R, k, V] or None (point masses); target: the target's distributions at
    the k + 1 positions over their candidate steps, most likely first (probs [R, k+1, K], steps [R, k+1, K]:
    ``Categorical.sorted``); uniforms in [0, 1): accept [R, k] (one per proposed step), bonus [R] (the step after
    all k), residual [R, k] (the step recovered at position i reads column i).

    Steps outside the target's candidates have p = 0, so the residual max(0, p - q) lives on them too: the bonus
    and the recovered step are one inverse-CDF draw over K candidates in the target's order (the bonus is then
    the step plain decoding draws with the same number), never a pass over the vocabulary."""
    rows, k = proposal.shape
    p_sorted, steps_sorted = target
    arange = torch.arange(rows, device=proposal.device)
    p_x = (p_sorted[:, :k] * (steps_sorted[:, :k] == proposal[..., None])).sum(-1)  # [R, k]
    q_x = torch.ones_like(p_x) if draft_probs is None else draft_probs.gather(-1, proposal[..., None]).squeeze(-1)
    keep = accept_uniforms * q_x < p_x  # u < p/q without dividing; p = 0 is never kept
    accepted = keep.long().cumprod(dim=1).sum(dim=1)  # [R] leading run of kept steps

    p_at, steps_at = p_sorted[arange, accepted], steps_sorted[arange, accepted]  # [R, K]: the bonus where all kept
    at = accepted.clamp(max=k - 1)
    if draft_probs is None:
        q_at = (steps_at == proposal[arange, at][:, None]).to(p_at.dtype)
    else:
        q_at = draft_probs[arange, at].gather(1, steps_at)
    bonus = (accepted == k)[:, None]
    residual = torch.where(bonus, p_at, (p_at - q_at).clamp(min=0))
    # p == q leaves no residual mass; a rejection is then impossible, the fallback only keeps draw() defined.
    residual = torch.where(residual.sum(-1, keepdim=True) > 0, residual, p_at)
    u = torch.where(bonus[:, 0], bonus_uniforms, residual_uniforms[arange, at])
    return Verdict(accepted=accepted, next_step=steps_at.gather(1, draw(residual, u)[:, None]).squeeze(1))
