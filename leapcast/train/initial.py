"""Where training starts: random weights given the initialisations that let a small CPU budget learn,
or a trained checkpoint grown to the config (stacked, re-binned, re-bucketed; train/grow.py).

Both initialisations change starting values only, never the architecture (T5's).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from leapcast.models.chronos_t5 import ChronosT5
from leapcast.models.loading import load_model
from leapcast.models.presets import random_chronos_t5
from leapcast.models.t5 import T5, T5Config, relative_position_bucket
from leapcast.registry import resolve
from leapcast.train.config import TrainConfig
from leapcast.train.crops import tokenizer_config
from leapcast.train.grow import rebin, rebucket, stack_layers


def build_model(cfg: TrainConfig) -> ChronosT5:
    """Random weights in the shape ``cfg`` gives, started as ``starting_point`` starts them."""
    t5 = T5Config(
        vocab_size=cfg.n_tokens,
        d_model=cfg.d_model,
        d_kv=cfg.d_kv,
        d_ff=cfg.d_ff,
        num_layers=cfg.num_layers,
        num_decoder_layers=cfg.num_layers,
        num_heads=cfg.num_heads,
        relative_attention_num_buckets=cfg.relative_attention_num_buckets,
    )
    chronos = tokenizer_config(cfg)
    model = random_chronos_t5(t5, chronos, seed=cfg.seed, name=Path(cfg.out_dir).name)
    return starting_point(model, cfg.embedding_init == "fourier", cfg.position_heads, cfg.seed)


def starting_point(model: ChronosT5, fourier: bool = True, position_heads: bool = True, seed: int = 0) -> ChronosT5:
    """Apply the initialisations that let a small CPU budget learn (in place; returns the model)."""
    if fourier:
        with torch.no_grad():
            special = model.chronos.n_special_tokens
            model.net.embed.weight[special:] = fourier_bin_embeddings(
                model.tokenizer.centers, model.net.cfg.d_model, seed
            )
    if position_heads:
        neighbour_heads(model.net)
    return model


def neighbour_heads(net: T5, strength: float = 8.0) -> None:
    """Start encoder head 0 attending to the previous token and head 1 to the next one.

    Mean scaling puts every context's average at 1, so a decoder that attends
    evenly over the encoder learns nothing about where the series is now; it
    must find the last observations, and T5 has only relative positions to
    find them with. With a previous-token head the EOS token carries the last
    value, and with a next-token head the last values know they sit next to
    EOS: from the first step the decoder has content to find the end of the
    context by. Training is free to change both (relative-bias init only).
    """
    cfg = net.cfg
    if cfg.num_heads < 2:
        return
    rel = torch.tensor([-1, 1])
    buckets = relative_position_bucket(
        rel, True, cfg.relative_attention_num_buckets, cfg.relative_attention_max_distance
    )
    with torch.no_grad():
        net.enc_bias.weight[:, :2] = 0.0
        net.enc_bias.weight[buckets[0], 0] = strength
        net.enc_bias.weight[buckets[1], 1] = strength


def fourier_bin_embeddings(centers: torch.Tensor, dim: int, seed: int) -> torch.Tensor:
    """[len(centers) + 1, dim] embeddings of the bin tokens, smooth in the bin's value, entries of variance 1.

    Random Fourier features, frequencies log-uniform over 0.5..100 per unit of
    mean-scaled value: neighbouring bins start similar and far bins nearly
    orthogonal, so the order of the bins is there from the first step rather
    than learned from scratch (an initialisation only; the architecture is T5's).
    The first bin token (below every boundary, never produced) reuses the first centre.
    """
    g = torch.Generator().manual_seed(seed + 7)
    freq = torch.exp(torch.empty(dim).uniform_(math.log(0.5), math.log(100.0), generator=g))
    phase = torch.empty(dim).uniform_(0, 2 * math.pi, generator=g)
    values = torch.cat([centers[:1], centers]).float()
    return math.sqrt(2.0) * torch.cos(values[:, None] * freq + phase)


def initial_model(cfg: TrainConfig) -> ChronosT5:
    """Random weights, or ``init_from`` grown ``stack`` times, re-binned to the config's
    ``n_tokens``/``low_limit``/``high_limit`` and re-bucketed to its ``relative_attention_num_buckets``
    where they differ (its other architecture fields are ignored)."""
    if cfg.init_from is None:
        return build_model(cfg)
    grown = stack_layers(load_model(resolve(cfg.init_from, "init_from")), cfg.stack)
    return rebucket(rebin(grown, cfg.n_tokens, cfg.low_limit, cfg.high_limit), cfg.relative_attention_num_buckets)
