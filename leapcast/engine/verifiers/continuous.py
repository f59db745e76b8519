"""Exact speculative sampling for continuous steps: whole patches of values with a density.

A draft proposes k patches x_1..x_k for a row, each drawn from its own density q_i (for Toto a
Student-T mixture per value; a patch's density is the product over its values, and over the
variates of a multivariate item). One target pass gives the densities p_1..p_{k+1}. Left to right:

- **accepted**: x_i is kept with probability min(1, p_i(x_i) / q_i(x_i));
- **recovered**: at the first rejection, position i, a patch is drawn from the residual
  norm(max(0, p_i - q_i)): draw y from p_i and keep it with probability max(0, 1 - q_i(y) / p_i(y)),
  repeating until one is kept; the row stops there;
- **bonus**: when all k are kept, one more patch is drawn from p_{k+1}.

Why this is exact (Leviathan, Kalman & Matias 2023, arXiv 2211.17192; Chen et al. 2023, arXiv
2302.01318; their argument holds for densities on R^P as for probabilities on a vocabulary): the
density of the patch committed at a position is
q(x) min(1, p(x)/q(x)) + (1 - a) r(x), with a = ∫ min(p, q) and r = max(0, p - q) / (1 - a),
= min(p, q)(x) + max(0, p - q)(x) = p(x). The residual loop draws from p and keeps y with
probability max(0, p - q)(y) / p(y): rejection sampling of r with envelope p, so each try is kept
with probability 1 - a = TV(p, q), and the number of tries is geometric with mean 1 / TV.

Why whole patches, not value by value: a patch is kept with probability ∫ min(p, q) over R^P, the
overlap of the joint densities. Accepting value by value would need each value's conditional
overlap in turn, and a row would stop at the first rejected value, so a patch would survive only
when all P values do: for independent values the chance of a whole patch is the product of P
per-value overlaps, which falls geometrically with P (0.9^64 ~ 0.001), while the joint test keeps
the same proposal whenever the joint likelihood ratio allows.

Densities are evaluated in log space (``StudentTMixture.log_prob``: logsumexp over components, each
value's scale in value space, so the scale's Jacobian is counted for draft and target separately) at
the values as proposed, before anything replaces extreme values. The loop of residual tries runs in
vectorised blocks; with ``max_tries`` unset (the default) it is unbounded and exact. A cap makes a row
that exhausts it take the target's own draw instead: an approximation, counted (``Verdict.capped``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from leapcast.models.sampling import SamplingConfig

TRY_STRIDE = 1 << 24  # residual stream columns per try: column 0 its acceptance number, then its draw's numbers
FIRST_BLOCK = 8  # residual tries drawn together at first; each later block doubles, up to MAX_BLOCK
MAX_BLOCK = 512

# (columns [m] long, rows [R''] of the R' rejected rows) -> [R'', 1, m] uniforms of those rows' residual streams
# at their verified window steps
WindowRand = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
BUDGET = 1 << 24  # uniforms a block of tries may hash at once (rows x tries x numbers per try)


@dataclass(frozen=True)
class ContinuousVerdict:
    accepted: torch.Tensor  # [R] long, proposed patches kept (0..k)
    next_step: torch.Tensor  # [R, *step], the recovered patch (accepted < k) or the bonus patch (accepted == k)
    tries: torch.Tensor  # [R] long, residual tries drawn (0 where nothing was rejected)
    capped: torch.Tensor  # [R] bool, rows whose residual loop hit ``max_tries`` (an approximation; never without a cap)


def verify_patches(
    proposal: torch.Tensor,
    draft_heads,
    target_heads,
    accept_uniforms: torch.Tensor,
    bonus: torch.Tensor,
    residual_rand: Callable[[torch.Tensor, torch.Tensor], WindowRand],
    sampling: SamplingConfig,
    max_tries: int | None = None,
    active: torch.Tensor | None = None,
) -> ContinuousVerdict:
    """active [R] bool: rows still decoding (finished rows riding along draw no residual).

    proposal [R, k, *step] (as drawn); draft_heads [R, k] (q at each proposed position); target_heads
    [R, k+1] (p); accept_uniforms [R, k]; bonus [R, *step]: the patch plain decoding draws from p_{k+1}
    (the same numbers, so a draft equal to the target reproduces plain sampling); residual_rand(rows, accepted):
    the residual stream of ``rows`` [R'] at their rejected window steps as a ``WindowRand``."""
    rows, k = proposal.shape[:2]
    log_p = target_heads.slice(0, k).log_prob(proposal)  # [R, k]
    log_q = draft_heads.log_prob(proposal)
    keep = torch.log(accept_uniforms) < log_p - log_q  # u < p / q; p = 0 is never kept
    accepted = keep.long().cumprod(dim=1).sum(dim=1)  # [R] leading run of kept patches
    next_step = bonus.clone()
    tries = torch.zeros(rows, dtype=torch.long, device=proposal.device)
    capped = torch.zeros(rows, dtype=torch.bool, device=proposal.device)
    rejected = (accepted < k).nonzero().squeeze(1) if active is None else ((accepted < k) & active).nonzero().squeeze(1)
    if len(rejected):
        at = accepted[rejected]
        p = target_heads.rows(rejected).pick(at)  # [R', 1]
        q = draft_heads.rows(rejected).pick(at)
        y, n, cut = residual(p, q, residual_rand(rejected, at), sampling, max_tries)
        next_step[rejected] = y
        tries[rejected], capped[rejected] = n, cut
    return ContinuousVerdict(accepted, next_step, tries, capped)


def verify_points(
    proposal: torch.Tensor, target_heads, tolerance: float = 0.0, scale: torch.Tensor | None = None
) -> ContinuousVerdict:
    """Mean decoding (the target's output is its mean patch): proposal [R, k, *step], target_heads [R, k+1];
    patch i is kept when max over its values of |x - mu| / scale <= ``tolerance`` (scale [R, *step], the context's;
    ``tolerance`` 0: only a proposal equal to the target's mean, so the output is plain mean decoding's). On
    rejection, and after all k, the target's mean patch is committed. With a tolerance > 0 this is not lossless:
    a kept patch may differ from the target's mean by up to tolerance x scale per value."""
    rows, k = proposal.shape[:2]
    mu = target_heads.mean()  # [R, k + 1, *step]
    gap = (proposal - mu[:, :k]).abs().flatten(2)  # [R, k, values]
    if tolerance > 0:
        assert scale is not None, "a tolerance is measured in the context's scale"
        gap = gap / scale.flatten(1)[:, None]
    keep = gap.amax(dim=-1) <= tolerance
    accepted = keep.long().cumprod(dim=1).sum(dim=1)
    next_step = mu[torch.arange(rows, device=mu.device), accepted]
    zeros = torch.zeros(rows, dtype=torch.long, device=mu.device)
    return ContinuousVerdict(accepted, next_step, zeros, zeros.bool())


def residual(p, q, rand: WindowRand, sampling: SamplingConfig, max_tries: int | None = None):
    """One patch per row from norm(max(0, p - q)), by rejection from p: heads p, q [R, 1] ->
    (patches [R, *step], tries [R] long, capped [R] bool). Try t reads the residual stream's columns
    t * TRY_STRIDE (its acceptance number) and t * TRY_STRIDE + 1 ... (its draw from p), whichever block it is in."""
    rows, device = p.loc.shape[0], p.loc.device
    out = None
    tries = torch.zeros(rows, dtype=torch.long, device=device)
    todo = torch.ones(rows, dtype=torch.bool, device=device)
    done_tries, block = 0, FIRST_BLOCK
    while bool(todo.any()):
        if max_tries is not None:
            block = min(block, max_tries - done_tries)
            if block <= 0:
                break
        idx = todo.nonzero().squeeze(1)
        per_try = 1 + 9 * math.prod(p.loc.shape[2:-1])  # an acceptance number, then a draw's first block
        block = max(1, min(block, BUDGET // (len(idx) * per_try)))
        pb, qb = p.rows(idx).repeat(block), q.rows(idx).repeat(block)  # [R', block]
        starts = (done_tries + torch.arange(block, device=device)) * TRY_STRIDE  # [block] each try's first column

        def tries_rand(count: int, offset: int = 0, idx=idx, starts=starts) -> torch.Tensor:
            columns = (starts[:, None] + 1 + offset + torch.arange(count, device=starts.device)).reshape(-1)
            return rand(columns, idx).view(len(idx), len(starts), count)  # [R', block, count]

        y = pb.sample(sampling, tries_rand)  # [R', block, *step]
        u = rand(starts, idx).view(len(idx), block)  # [R', block]: each try's acceptance number
        log_p, log_q = pb.log_prob(y), qb.log_prob(y).nan_to_num(nan=-math.inf)  # a draft without a density: q = 0
        kept = (log_p > log_q) & (torch.log(u) < torch.log1p(-torch.exp((log_q - log_p).clamp(max=0.0))))  # u < 1 - q/p
        kept |= torch.isnan(log_p)  # a target without a density: its draw, as plain decoding would commit
        found = kept.any(dim=1)
        first = kept.float().argmax(dim=1)  # the first try kept
        if out is None:
            out = y.new_zeros((rows, *y.shape[2:]))
        hit = idx[found]
        out[hit] = y[found, first[found]]
        tries[idx] += torch.where(found, first + 1, block)
        todo[hit] = False
        done_tries += block
        block = min(2 * block, MAX_BLOCK)
    capped = todo.clone()
    if bool(capped.any()):  # past the cap: the target's own draw (an approximation, counted by the caller)
        idx = capped.nonzero().squeeze(1)
        start = done_tries * TRY_STRIDE + 1

        def fallback_rand(count: int, offset: int = 0, idx=idx) -> torch.Tensor:
            return rand(torch.arange(start + offset, start + offset + count, device=device), idx)

        fallback = p.rows(idx).sample(sampling, fallback_rand)
        if out is None:
            out = fallback.new_zeros((rows, *fallback.shape[2:]))
        out[idx] = fallback[:, 0]
    return out, tries, capped
