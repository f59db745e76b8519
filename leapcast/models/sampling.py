"""Sampling settings and the draw of one step from target logits.

Warping follows Hugging Face ``generate`` as chronos-forecasting calls it:
banned tokens (EOS) to -inf, then temperature, then top-k (ties with the k-th
value are kept), then top-p (the smallest set whose mass exceeds ``top_p``,
counted from the least likely token up). A step is drawn by inverting the CDF
of the warped distribution at a uniform number the engine supplies
(``leapcast.engine.streams``), so a row's randomness is its own and a
forecast does not depend on its batch mates. The categorical head
(``leapcast.models.heads.Categorical``) draws with these functions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from leapcast.checks import check_int, is_real, param, setting


@dataclass(frozen=True)
class SamplingConfig:
    """How steps are drawn. ``top_k=1`` is greedy decoding."""

    num_samples: int = 20
    temperature: float = 1.0
    top_k: int | None = 50
    top_p: float = 1.0
    seed: int | None = None

    def __post_init__(self) -> None:
        check_int(self.num_samples, "num_samples", must="an integer >= 1")
        if not (is_real(self.temperature) and np.isfinite(self.temperature) and self.temperature >= MIN_TEMPERATURE):
            raise ValueError(
                f"{param('temperature')} must be a finite number >= {MIN_TEMPERATURE:g}, got {self.temperature!r}; "
                f"use {setting('top_k', 1)} for greedy decoding"
            )
        check_int(self.top_k, "top_k", low=0, none=True, must="an integer >= 1 (or 0/None for no limit)")
        if not (is_real(self.top_p) and 0 < self.top_p <= 1):
            raise ValueError(f"{param('top_p')} must be in (0, 1], got {self.top_p!r}")
        check_int(self.seed, "seed", low=0, high=2**64, none=True, must="an integer in [0, 2**64) or None")

    @property
    def greedy(self) -> bool:
        return self.top_k == 1


# below it, logits / temperature overflow float32 (logits of 30 pass 3.4e38 near 1e-37) and every draw is the same
# arbitrary step; the distribution is already the greedy step's long before
MIN_TEMPERATURE = 1e-6


def warp(logits: torch.Tensor, cfg: SamplingConfig, banned: tuple[int, ...] = ()) -> torch.Tensor:
    """logits [..., V] -> warped logits [..., V], -inf where a step can't be drawn."""
    logits = logits.float().clone()
    if banned:
        logits[..., list(banned)] = -float("inf")
    if cfg.temperature != 1.0:
        logits = logits / cfg.temperature
    vocab = logits.shape[-1]
    if cfg.top_k:
        kth = torch.topk(logits, min(cfg.top_k, vocab), dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, -float("inf"))
    if cfg.top_p < 1.0:
        ascending, order = torch.sort(logits, dim=-1)
        cumulative = ascending.softmax(dim=-1).cumsum(dim=-1)
        remove = cumulative <= (1 - cfg.top_p)
        remove[..., -1:] = False
        logits = logits.masked_fill(remove.scatter(-1, order, remove), -float("inf"))
    return logits


def probabilities(logits: torch.Tensor, cfg: SamplingConfig, banned: tuple[int, ...] = ()) -> torch.Tensor:
    """logits [..., V] -> the distribution steps are drawn from, [..., V]."""
    return warp(logits, cfg, banned).softmax(dim=-1)


def draw(probs: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """Inverse-CDF draw: probs [R, V], uniforms [R] in [0, 1) -> steps [R] long.

    The step returned always has positive probability: the target point is
    kept strictly below the total mass, and the first CDF entry above it is a
    step where the CDF rises.
    """
    cdf = probs.cumsum(dim=-1)  # [R, V]
    total = cdf[:, -1:]
    point = torch.minimum(uniforms[:, None].to(cdf.dtype) * total, torch.nextafter(total, torch.zeros_like(total)))
    return torch.searchsorted(cdf, point, right=True).squeeze(-1).clamp_(max=probs.shape[-1] - 1)


def sample(
    logits: torch.Tensor, cfg: SamplingConfig, uniforms: torch.Tensor, banned: tuple[int, ...] = ()
) -> torch.Tensor:
    """logits [R, V], uniforms [R] -> steps [R] long."""
    if cfg.greedy:
        masked = logits.float().clone()
        if banned:
            masked[:, list(banned)] = -float("inf")
        return masked.argmax(dim=-1)
    probs, index = sorted_probabilities(logits, cfg, banned)  # [R, K] each, most likely first
    return index.gather(1, draw(probs, uniforms)[:, None]).squeeze(1)


def sorted_probabilities(
    logits: torch.Tensor, cfg: SamplingConfig, banned: tuple[int, ...] = ()
) -> tuple[torch.Tensor, torch.Tensor]:
    """The warped distribution over its candidate steps, most likely first.

    logits [R, V] -> (probs [R, K], steps [R, K]): K = top_k when no row has a
    tie at the k-th value (the usual case, and ~100x less work at V=4096),
    else K = V. Same distribution as ``probabilities``.
    """
    logits = logits.float()
    if banned:
        logits = logits.clone()
        logits[:, list(banned)] = -float("inf")
    if cfg.greedy:  # the argmax alone, as ``sample`` takes it (warping would keep exact ties and split them)
        return torch.ones(logits.shape[0], 1, device=logits.device), logits.argmax(dim=-1, keepdim=True)
    if cfg.temperature != 1.0:
        logits = logits / cfg.temperature
    k, vocab = cfg.top_k, logits.shape[-1]
    if k and k < vocab:
        values, steps = torch.topk(logits, k + 1, dim=-1)  # sorted, descending
        if not bool((values[:, k - 1] == values[:, k]).any()):  # ties with the k-th value are kept: full path
            values, steps = values[:, :k], steps[:, :k]
            if cfg.top_p < 1.0:
                ascending = values.flip(-1)
                remove = ascending.softmax(dim=-1).cumsum(dim=-1) <= (1 - cfg.top_p)
                remove[:, -1] = False
                values = values.masked_fill(remove.flip(-1), -float("inf"))
            return values.softmax(dim=-1), steps
    plain = SamplingConfig(num_samples=cfg.num_samples, temperature=1.0, top_k=cfg.top_k, top_p=cfg.top_p)
    values, steps = torch.sort(warp(logits, plain), dim=-1, descending=True)
    return values.softmax(dim=-1), steps
