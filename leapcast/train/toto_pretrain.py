"""Pretrain a univariate Toto-architecture model on CPU (``"family": "toto"`` configs).

The checkpoints are Toto's own folder layout (``toto_presets.save_toto``): the reference's ``toto-ts`` loads
them as they are. Data as for the Chronos-T5 models (``crops.series_pool``; M3, Tourism and ETT never),
crops and scaling in ``patches``, the reference's loss in ``loss.patch_loss``, the loop in ``loop``.

Where the weights start (``initial_toto``): random as ``toto_presets.random_toto`` draws them, with
``lag_heads`` heads of the first layer started as look-ups of one fixed patch lag each. A season of s values
puts the values a patch needs s / P patches back; a small model from random weights takes thousands of
steps to find such offsets by itself (a pilot with learned positions never did), while a head whose query
and key are constants can point at one relative position from the start: with rotary positions the score
of a query at patch t and a key at patch u is sum_i |q_i| |k_i| cos(theta_i (t - u) - phi_i), so keys turned
by phi_i = theta_i * lag against the queries peak at t - u = lag. The lags are those of the common seasons.

``own_draws`` (parallel scheduled sampling, Duckworth et al., arXiv 1906.04331): teacher forcing only ever shows
the model true histories, while a forecast feeds it its own draws, whose noise it may read as a change of level
and carry on for hundreds of patches. With a share r > 0, a first pass without gradients draws every next patch
from the model given the true history, r of the whole patches are replaced by those draws, and the loss trains
the true next patches on these mixed inputs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from leapcast.models.heads import StudentTMixture
from leapcast.models.loading import load_model
from leapcast.models.sampling import SamplingConfig
from leapcast.models.toto import Toto, TotoOptions
from leapcast.models.toto_net import TotoConfig, TotoNet
from leapcast.models.toto_presets import random_toto, save_toto
from leapcast.registry import resolve
from leapcast.train.config import TotoDistillConfig, TotoTrainConfig
from leapcast.train.crops import series_pool
from leapcast.train.loop import fit, start_run
from leapcast.train.loss import patch_loss
from leapcast.train.patches import PatchSampler, scale_patches

SEASONS = (12, 4, 24, 52, 7, 13, 26, 6)  # values; the lag heads' seasons, most common first
LAG_SHARPNESS = 20.0  # the score at the lag (above the next best by about 2: ~0.8 of the attention over 128 patches)
LAG_FREQUENCY = 0.05  # only rotary frequencies above this (periods under ~125 patches) tell one lag from the next


def network_config(cfg: TotoTrainConfig | TotoDistillConfig, patch_size: int | None = None) -> TotoConfig:
    """A univariate Toto of ``cfg``'s shape (a draft: with its target's ``patch_size``): no space-wise layers, no
    dropout (leapcast's training runs none)."""
    patch_size = patch_size or cfg.patch_size
    return TotoConfig(
        patch_size=patch_size,
        stride=patch_size,
        embed_dim=cfg.embed_dim,
        num_layers=cfg.num_layers,
        num_heads=cfg.num_heads,
        mlp_hidden_dim=cfg.mlp_hidden_dim,
        spacewise_every_n_layers=-1,
        k_components=cfg.k_components,
        dropout=0.0,
    )


def options(cfg: TotoTrainConfig) -> TotoOptions:
    return TotoOptions(
        context_length=cfg.context_length,
        num_samples=cfg.num_samples,
        horizon=cfg.prediction_length,
        clip_scales=cfg.clip_scales,
        spread=cfg.spread,
    )


def season_lag(season: int, patch_size: int) -> int:
    """The patch lag (from the query's patch) of the patch one season before the predicted one."""
    return max(0, round(season / patch_size) - 1)


def lag_heads(net: TotoNet, count: int) -> None:
    """Start the first ``count`` heads of the first layer as look-ups of the lags of ``SEASONS``: constant queries
    and keys (biases; their weights zeroed), the keys turned so that the score peaks at the lag."""
    cfg = net.cfg
    hd, d = cfg.head_dim, cfg.embed_dim
    layer = net.layers[0]
    with torch.no_grad():
        for head, season in enumerate(SEASONS[:count]):
            lag = season_lag(season, cfg.patch_size)
            angle = net.inv_freq.double() * lag  # [hd / 2]
            used = (net.inv_freq >= LAG_FREQUENCY).double()  # [hd / 2]
            q = torch.stack([used, torch.zeros_like(used)], dim=-1)
            k = torch.stack([angle.cos(), angle.sin()], dim=-1) * used[:, None]  # q turned by theta_i * lag
            size = (LAG_SHARPNESS * hd**0.5 / used.sum()) ** 0.5  # the score at the lag (SDPA divides by sqrt(hd))
            for part, vector in ((0, q), (1, k)):
                rows = slice(part * d + head * hd, part * d + (head + 1) * hd)  # qkv rows are [3, H, hd]
                layer.qkv.weight[rows] = 0.0
                layer.qkv.bias[rows] = (size * vector.flatten()).float()


def initial_toto(cfg: TotoTrainConfig) -> Toto:
    """Where a run starts: ``init_from``'s weights, or random ones with ``lag_heads``."""
    if cfg.init_from is not None:
        start = load_model(resolve(cfg.init_from, "init_from"))
        if not isinstance(start, Toto) or start.cfg != network_config(cfg):
            raise ValueError(
                f"train config `init_from` {cfg.init_from!r} is not a Toto checkpoint of this config's shape "
                f"({network_config(cfg)}); start from one trained with the same patch_size, embed_dim, layers and heads"
            )
        return Toto(start.net, options(cfg), name=Path(cfg.out_dir).name)
    model = random_toto(network_config(cfg), seed=cfg.seed, options=options(cfg), name=Path(cfg.out_dir).name)
    lag_heads(model.net, cfg.lag_heads)
    return model


def train_toto(cfg: TotoTrainConfig, progress: bool = True) -> Path:
    """Run (or resume) pretraining; returns the folder of the last checkpoint."""
    last = start_run(cfg)
    model = load_model(last) if (last / "config.json").is_file() else initial_toto(cfg)
    if not isinstance(model, Toto):
        raise ValueError(f"{last} holds a {type(model).__name__} checkpoint, not Toto; use a fresh `out_dir`")
    net = model.net
    net.requires_grad_(True)
    sampler = PatchSampler(cfg, *series_pool(cfg))

    def reseed(step: int) -> None:  # a resumed run draws fresh crops
        sampler.rng = np.random.default_rng([cfg.seed, step])

    def next_loss() -> torch.Tensor:
        values = sampler.values()
        if cfg.own_draws > 0:
            mixed = own_draws(net, values, cfg.own_draws, cfg.clip_scales, sampler.rng)
            return patch_loss(net, scale_patches(mixed, net.cfg, truth=values), cfg.lambda_nll, cfg.robust_delta)
        return patch_loss(net, scale_patches(values, net.cfg), cfg.lambda_nll, cfg.robust_delta)

    return fit(cfg, net, next_loss, lambda folder: save_toto(model, folder), reseed, "pretrain", progress)


def own_draws(
    net: TotoNet, values: np.ndarray, share: float, clip: float | None, rng: np.random.Generator
) -> np.ndarray:
    """values [B, L * P] float64 (NaN: missing or padding) -> a copy with about ``share`` of the whole observed
    patches after the first replaced by the model's draws given the true values before them. Each draw is clipped
    to +- ``clip`` in the scaled space of the patch before (its causal mean and scale so far): a local stand-in
    for a forecast's clip, which bounds what it feeds back by the whole context's mean +- ``clip`` scales."""
    p = net.cfg.patch_size
    batch = scale_patches(values, net.cfg)
    with torch.no_grad():
        h = net(batch.inputs)[:, :, :-1]  # [B, 1, L - 1, D]
        head = StudentTMixture(*(t.squeeze(1) for t in net.distribution(h)))  # [B, L - 1, P, C] each
    draws = sample_mixture(head, rng)  # [B, L - 1, P], scaled space
    if clip is not None:
        draws = np.clip(draws, -clip, clip)
    raw = draws * batch.scale[:, 0, :-1].double().numpy() + batch.loc[:, 0, :-1].double().numpy()
    whole = batch.observed[:, 0].all(dim=-1).numpy()  # [B, L - 1]: patches 1..L-1 without a missing value
    pick = whole & (rng.random(whole.shape) < share)
    out = values.copy().reshape(len(values), -1, p)  # [B, L, P]
    out[:, 1:][pick] = raw[pick]
    return out.reshape(values.shape)


def sample_mixture(head: StudentTMixture, rng: np.random.Generator) -> np.ndarray:
    """One draw per value of a Student-T mixture [R, n, P, C] -> [R, n, P] float64: the head's own sampler,
    handed fresh uniforms from ``rng`` (training needs no keyed streams)."""
    rows = head.loc.shape[:2]

    def rand(count: int, offset: int) -> torch.Tensor:
        return torch.from_numpy(rng.random((*rows, count))).float()

    return head.sample(SamplingConfig(), rand).double().numpy()
