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

from leapcast.engine.sampling import draw, draw_sorted


@dataclass(frozen=True)
class Verdict:
    accepted: torch.Tensor  # [R] long, proposed steps kept (0..k)
    next_step: torch.Tensor  # [R] long, the recovered step (accepted < k) or the bonus step (accepted == k)


def verify(
    proposal: torch.Tensor,
    draft_probs: torch.Tensor | None,
    target_probs: torch.Tensor,
    accept_uniforms: torch.Tensor,
    bonus_uniforms: torch.Tensor,
    residual_uniforms: torch.Tensor,
    bonus: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> Verdict:
    """proposal [R, k] long; draft_probs [R, k, V] or None (point masses); target_probs [R, k+1, V];
    uniforms in [0, 1): accept [R, k] (one per proposed step), bonus [R] (the step after all k),
    residual [R, k] (the step recovered at position i reads column i).
    bonus: the last position's distribution in the order plain sampling draws in (probs [R, K], steps [R, K],
    ``Categorical.sorted``), so a bonus step is the step plain decoding would draw with the same number;
    None: ``target_probs[:, k]`` by falling probability. Recovered steps draw in vocabulary order."""
    rows, k = proposal.shape
    arange = torch.arange(rows, device=proposal.device)
    p_x = target_probs[:, :k].gather(-1, proposal[..., None]).squeeze(-1)  # [R, k]
    q_x = torch.ones_like(p_x) if draft_probs is None else draft_probs.gather(-1, proposal[..., None]).squeeze(-1)
    keep = accept_uniforms * q_x < p_x  # u < p/q without dividing; p = 0 is never kept
    accepted = keep.long().cumprod(dim=1).sum(dim=1)  # [R] leading run of kept steps

    at = accepted.clamp(max=k - 1)
    p_at = target_probs[arange, at]  # [R, V]
    if draft_probs is None:
        q_at = torch.zeros_like(p_at).scatter_(1, proposal[arange, at][:, None], 1.0)
    else:
        q_at = draft_probs[arange, at]
    residual = (p_at - q_at).clamp(min=0)
    # p == q leaves no residual mass; a rejection is then impossible, the fallback only keeps draw() defined.
    residual = torch.where(residual.sum(-1, keepdim=True) > 0, residual, p_at)
    recovered = draw(residual, residual_uniforms[arange, at])
    if bonus is None:
        extra = draw_sorted(target_probs[:, k], bonus_uniforms)
    else:
        extra = bonus[1].gather(1, draw(bonus[0], bonus_uniforms)[:, None]).squeeze(1)
    return Verdict(accepted=accepted, next_step=torch.where(accepted == k, extra, recovered))
