"""Training crops for patch models: random windows of the series pool, cut into patches and scaled as Toto scales them.

A crop is at most ``max_patches * patch_size`` values of one series, from a random end point back. Its first
patch gets 0 to P - 1 missing values in front (a context that does not fill its first patch is padded so at
inference), and a crop shorter than the batch's longest ends in whole patches of padding. Every patch is
scaled by the causal statistics through its own last value (``toto_net.patch_stats``), and is the input that
predicts the next patch; the next patch's values, scaled by the same statistics, are its targets.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from leapcast.models.toto_net import TotoConfig, global_bounds, patch_stats
from leapcast.train.config import TotoTrainConfig
from leapcast.train.crops import with_trend


@dataclass(frozen=True)
class PatchBatch:
    """inputs [B, 1, L, P] scaled patches (missing values as 0 before scaling, as at inference); targets
    [B, 1, L - 1, P] the next patch's values in the scaled space of the patch before; observed [B, 1, L - 1, P]
    (False: missing or padding, no loss); loc, scale [B, 1, L, 1] each patch's causal statistics."""

    inputs: torch.Tensor
    targets: torch.Tensor
    observed: torch.Tensor
    loc: torch.Tensor
    scale: torch.Tensor


def scale_patches(values: np.ndarray, cfg: TotoConfig, truth: np.ndarray | None = None) -> PatchBatch:
    """values [B, L * P] float64, NaN where missing or padding -> the batch the loss reads.

    truth: the values the targets are (default ``values``), when some input patches were replaced (``own_draws``):
    the inputs and their statistics come from ``values``, each target is the true next patch in their scale."""
    p = cfg.patch_size
    if truth is not None and (truth.shape != values.shape or not np.array_equal(np.isnan(truth), np.isnan(values))):
        raise ValueError("`truth` must have the shape of `values` and NaN (missing or padding) in the same places")
    x = torch.from_numpy(values)[:, None]  # [B, 1, L * P]
    weights = (~torch.isnan(x)).double()
    x = torch.where(weights > 0, x, 0.0)
    bounds = global_bounds(x, weights, cfg)
    loc, scale, _ = patch_stats(x, weights, torch.zeros(*x.shape[:2], 3, dtype=torch.float64), bounds, p)
    patches = x.unflatten(-1, (-1, p))  # [B, 1, L, P]
    # float32 statistics, as the model rounds them at inference
    loc, scale = loc.float()[..., None], scale.float()[..., None]  # [B, 1, L, 1]
    inputs = (patches.float() - loc) / scale
    if truth is not None:
        patches = torch.from_numpy(np.nan_to_num(truth, nan=0.0))[:, None].unflatten(-1, (-1, p))
    targets = (patches[:, :, 1:].float() - loc[:, :, :-1]) / scale[:, :, :-1]
    observed = weights.unflatten(-1, (-1, p))[:, :, 1:] > 0
    return PatchBatch(inputs, torch.where(observed, targets, 0.0), observed, loc, scale)


class PatchSampler:
    """Random crops of the pool (synthetic with probability ``synthetic_fraction``), as ``PatchBatch``es."""

    def __init__(self, cfg: TotoTrainConfig, real: list[np.ndarray], synthetic: list[np.ndarray]) -> None:
        self.cfg = cfg
        self.real, self.synthetic = real, synthetic
        self.rng = np.random.default_rng(cfg.seed)

    def values(self) -> np.ndarray:
        """[B, L * P] float64 crops (NaN: missing or padding); L is the batch's longest crop, in patches."""
        cfg, rng, p = self.cfg, self.rng, self.cfg.patch_size
        rows = []
        for _ in range(cfg.batch_size):
            pool = (
                self.synthetic
                if (self.synthetic and (not self.real or rng.random() < cfg.synthetic_fraction))
                else self.real
            )
            y = pool[rng.integers(len(pool))]
            lead = int(rng.integers(p))  # missing values in front of the first patch
            end = int(rng.integers(min(len(y), cfg.min_context + 1), len(y) + 1))
            patches = cfg.max_patches  # a short crop: log-uniform in 2..max_patches (at most max_patches)
            if cfg.short_crops and rng.random() < cfg.short_crops:
                patches = min(cfg.max_patches, int(np.exp(rng.uniform(np.log(2), np.log(cfg.max_patches + 1)))))
            crop = y[max(0, end - (patches * p - lead)) : end]
            if rng.random() < cfg.trend_augmentation:
                split = int(rng.integers(1, len(crop))) if len(crop) > 1 else len(crop)
                past, future = with_trend(crop[:split], crop[split:], rng, cfg.max_trend, cfg.min_trend_damping)
                crop = np.concatenate([past, future])
            # no draw when off: earlier configs keep their crops
            if cfg.level_shifts and rng.random() < cfg.level_shifts:
                crop = with_level_shift(crop, rng)
            rows.append(np.concatenate([np.full(lead, np.nan), crop]))
        width = -(-max(len(r) for r in rows) // p) * p
        out = np.full((cfg.batch_size, width), np.nan)
        for i, r in enumerate(rows):
            out[i, : len(r)] = r
        return out


def with_level_shift(crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """crop [N] (NaN: missing) -> the crop with a lasting level shift from a random point on (the point and all
    after it).

    Yearly and other short histories often end just after a break (a new level that stays: Tourism-yearly's
    shortest histories); synthetic series have none, so a model trained on them reads a last value off the
    level as noise and forecasts the old level. Non-negative crops are scaled from the point on by
    exp(+-U(0.1, 1.5)) (they stay non-negative; zeros stay zeros); others get +-U(1, 10) (log-uniform) typical
    steps added, a typical step being the median |difference| of the finite values (their standard deviation, or
    1, where that is 0).
    """
    finite = crop[np.isfinite(crop)]
    if len(crop) < 2 or len(finite) == 0:
        return crop
    at = int(rng.integers(1, len(crop)))
    sign = 1.0 if rng.random() < 0.5 else -1.0
    out = crop.copy()
    if finite.min() >= 0:
        out[at:] = out[at:] * np.exp(sign * rng.uniform(0.1, 1.5))
        return out
    step = float(np.median(np.abs(np.diff(finite)))) if len(finite) > 1 else 0.0
    if step == 0:
        step = float(np.std(finite)) or 1.0
    out[at:] = out[at:] + sign * float(np.exp(rng.uniform(0.0, np.log(10.0)))) * step
    return out
