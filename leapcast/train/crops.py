"""The training data: a pool of real and synthetic series, and random (context, horizon) crops of it, tokenized.

Chronos recipe, small: series from offline data sets (held-out ones
excluded), KernelSynth, seasonal structural and TSMixup series; random crops
of context plus horizon, a share of them given a trend (``with_trend``); the
context is mean-scaled and both parts tokenized with its scale.
"""

from __future__ import annotations

import numpy as np
import torch

from leapcast.deseason import seasonally_adjusted
from leapcast.models.chronos_tokenizer import ChronosTokenizer, ChronosTokenizerConfig
from leapcast.train.config import TrainConfig


def series_pool(cfg: TrainConfig) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(real series, synthetic series), each a list of float64 arrays."""
    from leapcast.data import kernel_synth, load, mixup_arrays, structural_synth

    real, raw = [], []  # raw: unadjusted, for TSMixup
    for name in cfg.datasets:
        ds = load(name)
        for _, g in ds.full().groupby("unique_id"):
            y = g["y"].to_numpy(dtype=np.float64)
            if np.isfinite(y).sum() >= cfg.min_context + 1:
                raw.append(y)
                # whole-history indices: crops come from anywhere in the series (the bundled models were trained so)
                real.append(seasonally_adjusted(y, ds.season_length, seasons=None) if cfg.seasonal_adjustment else y)
    synthetic = []
    if cfg.kernel_synth:
        ks = kernel_synth(cfg.kernel_synth, cfg.kernel_synth_length, seed=cfg.seed)
        synthetic += [g["y"].to_numpy() for _, g in ks.groupby("unique_id")]
    if cfg.seasonal_synth:
        ss = structural_synth(cfg.seasonal_synth, cfg.kernel_synth_length, seed=cfg.seed)
        synthetic += [g["y"].to_numpy() for _, g in ss.groupby("unique_id")]
    if cfg.mixup and raw:
        synthetic += [
            m.values
            for m in mixup_arrays(
                raw,
                cfg.mixup,
                (cfg.min_context + cfg.prediction_length, cfg.context_length + cfg.prediction_length),
                seed=cfg.seed,
            )
        ]
    return real, synthetic


class CropSampler:
    """Random (context, horizon) crops, tokenized as Chronos trains: context [B, C], labels [B, H+1]."""

    def __init__(self, cfg: TrainConfig, real: list[np.ndarray], synthetic: list[np.ndarray]) -> None:
        self.cfg = cfg
        self.real, self.synthetic = real, synthetic
        self.rng = np.random.default_rng(cfg.seed)
        self.tokenizer = ChronosTokenizer(tokenizer_config(cfg))

    def batch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        c, h = self.cfg.context_length, self.cfg.prediction_length
        ctx = np.full((self.cfg.batch_size, c), np.nan)
        fut = np.full((self.cfg.batch_size, h), np.nan)
        for i in range(self.cfg.batch_size):
            pool = (
                self.synthetic
                if (self.synthetic and (not self.real or self.rng.random() < self.cfg.synthetic_fraction))
                else self.real
            )
            y = pool[self.rng.integers(len(pool))]
            split = self.rng.integers(self.cfg.min_context, len(y)) if len(y) > self.cfg.min_context else len(y) - 1
            past, future = y[max(0, split - c) : split], y[split : split + h]
            if self.rng.random() < self.cfg.trend_augmentation:
                past, future = with_trend(past, future, self.rng, self.cfg.max_trend, self.cfg.min_trend_damping)
            ctx[i, c - len(past) :] = past
            fut[i, : len(future)] = future
        tok = self.tokenizer.tokenize(torch.from_numpy(ctx).float())
        special = self.tokenizer.config
        scaled = torch.from_numpy(fut).float() / tok.scale[:, None]  # the context's scale, as Chronos trains
        label_tokens = torch.bucketize(scaled, self.tokenizer.boundaries, right=True) + special.n_special_tokens
        label_tokens = label_tokens.clamp(0, self.cfg.n_tokens - 1)
        label_tokens[torch.isnan(scaled)] = -100  # ignored by the loss
        eos = torch.full((self.cfg.batch_size, 1), special.eos_token_id)
        return tok.tokens, tok.mask, torch.cat([label_tokens, eos], dim=1)


def with_trend(
    past: np.ndarray, future: np.ndarray, rng: np.random.Generator, max_rate: float, min_damping: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """A crop with a steady growth (or decline) laid over its context, going on (damped) into the horizon.

    Mean scaling divides by the context's mean |y|, so a context that grew
    10% a step ends near 5 (52 steps) or 10 (100 steps) times its scale; real
    training series rarely get there, and a model that never saw it pulls its
    forecast back toward the mean. The rate per step is log-uniform in
    [max_rate / 40, max_rate], growing four times in five. In the horizon the
    rate shrinks by phi ~ U(min_damping, 1) a step (damped trend: trends that
    go on for ever are rarer than trends that fade). Positive crops are
    multiplied by exp(trend), others get trend * mean|y| added. The horizon
    stops where the trend has grown e^2 past the last context value, so the
    labels stay inside the bins.
    """
    rate = float(np.exp(rng.uniform(np.log(max_rate / 40), np.log(max_rate)))) * (1.0 if rng.random() < 0.8 else -1.0)
    phi = rng.uniform(min_damping, 1.0) if min_damping < 1.0 else 1.0
    ahead = rate * np.cumsum(
        phi ** np.arange(1, len(future) + 1)
    )  # the trend at horizon step j: rate * sum_{k<=j+1} phi^k
    keep = max(1, int(np.sum(np.abs(ahead) <= 2.0)))
    trend = np.concatenate([rate * np.arange(-len(past) + 1, 1, dtype=np.float64), ahead[:keep]])
    crop = np.concatenate([past, future[:keep]])
    if not np.isfinite(crop).any():
        return past, future
    if np.nanmin(crop) > 0:
        crop = crop * np.exp(trend)
    else:
        crop = crop + np.nanmean(np.abs(crop)) * trend
    return crop[: len(past)], crop[len(past) :]


def tokenizer_config(cfg: TrainConfig) -> ChronosTokenizerConfig:
    return ChronosTokenizerConfig(
        n_tokens=cfg.n_tokens,
        low_limit=cfg.low_limit,
        high_limit=cfg.high_limit,
        context_length=cfg.context_length,
        prediction_length=cfg.prediction_length,
    )
