"""Distil a draft for a Toto target: the draft learns the target's next-patch distributions from its draws.

Target and draft read the same patches scaled the same way (a draft must: ``Toto.check_draft``), so both
mixtures live in one scaled space. Each batch of training crops goes through the target once, teacher
forced; ``draws`` values per position and value are drawn from its mixtures, and the draft maximises their
log-density: a Monte Carlo estimate of KL(target || draft) up to the target's entropy, which the log
reports added back (so the logged loss is the KL estimate itself, >= 0 in expectation).

``expected_acceptance`` is what the draft is for: exact speculative decoding keeps a proposed patch x ~ q
with probability min(1, p(x) / q(x)) of the whole patch's joint densities (the product over its values),
estimated here by Monte Carlo over the draft's draws, beside the per-value overlap E min(1, p_j / q_j).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from leapcast.models.heads import StudentTMixture
from leapcast.models.loading import load_model
from leapcast.models.toto import Toto
from leapcast.models.toto_presets import random_toto, save_toto
from leapcast.registry import resolve
from leapcast.train.config import TotoDistillConfig, TotoTrainConfig
from leapcast.train.crops import series_pool
from leapcast.train.loop import fit, start_run
from leapcast.train.patches import PatchBatch, PatchSampler, scale_patches
from leapcast.train.toto_pretrain import lag_heads, network_config


def draw(head: StudentTMixture, count: int) -> torch.Tensor:
    """``count`` independent draws of every value of ``head`` (parameters [..., P, C]) -> [count, ..., P]."""
    probs = head.weights.softmax(-1).expand(count, *head.weights.shape)
    component = torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1).view(*probs.shape[:-1], 1)

    def pick(t: torch.Tensor) -> torch.Tensor:
        return t.expand(count, *t.shape).gather(-1, component).squeeze(-1)

    return torch.distributions.StudentT(pick(head.df), pick(head.loc), pick(head.scale)).sample()


def heads(net, batch: PatchBatch) -> StudentTMixture:
    """The teacher-forced next-patch mixtures of every position but the last, in the scaled space: [B, L - 1, P, C]."""
    return StudentTMixture(*(t[:, 0, :-1] for t in net.distribution(net(batch.inputs))))


def distill_loss(target: Toto, draft: Toto, batch: PatchBatch, draws: int) -> torch.Tensor:
    """KL(target || draft) per value, estimated from ``draws`` of the target at each observed position."""
    with torch.no_grad():
        p = heads(target.net, batch)
        x = draw(p, draws)  # [M, B, L - 1, P]
        log_p = p.value_log_prob(x)
    log_q = heads(draft.net, batch).value_log_prob(x)
    observed = batch.observed[:, 0].expand(draws, *batch.observed[:, 0].shape)
    return (log_p - log_q).float()[observed].mean()


@torch.no_grad()
def expected_acceptance(target: Toto, draft: Toto, batch: PatchBatch, draws: int = 256) -> tuple[float, float]:
    """``acceptance`` of the draft's teacher-forced proposals for the target on ``batch``."""
    return acceptance(heads(target.net, batch), heads(draft.net, batch), batch.observed[:, 0], draws)


def acceptance(p: StudentTMixture, q: StudentTMixture, observed: torch.Tensor, draws: int) -> tuple[float, float]:
    """(E over x ~ q of min(1, p(x) / q(x)) with the whole patch's joint densities, the same per value) for heads
    [..., P, C], averaged over the positions whose whole patch is ``observed`` [..., P] (per value: each observed value)."""
    x = draw(q, draws)  # [M, ..., P]
    log_ratio = p.value_log_prob(x) - q.value_log_prob(x)  # [M, ..., P]
    patch = log_ratio.sum(-1).clamp(max=0).exp().mean(0)[observed.all(-1)]
    value = log_ratio.clamp(max=0).exp().mean(0)[observed]
    return float(patch.mean()), float(value.mean())


def initial_draft(cfg: TotoDistillConfig, target: Toto) -> Toto:
    """Random weights of the config's shape with the target's patches, scaler and options (so it may propose for it)."""
    shape = network_config(cfg, patch_size=target.patch_size)
    if cfg.init_from is not None:
        start = load_model(resolve(cfg.init_from, "init_from"))
        if not isinstance(start, Toto) or start.cfg != shape:
            raise ValueError(
                f"distill config `init_from` {cfg.init_from!r} is not a Toto draft of this config's shape ({shape})"
            )
        return Toto(start.net, target.options, name=Path(cfg.out_dir).name)
    draft = random_toto(shape, seed=cfg.seed, options=target.options, name=Path(cfg.out_dir).name)
    lag_heads(draft.net, cfg.lag_heads)
    return draft


def data_config(cfg: TotoDistillConfig, target: Toto) -> TotoTrainConfig:
    """The crops a draft trains on: the target's patch size, the distillation's data settings."""
    shared = {k: v for k, v in asdict(cfg).items() if k in TotoTrainConfig.__dataclass_fields__}
    return TotoTrainConfig(**{**shared, "patch_size": target.patch_size})


def distill_toto(cfg: TotoDistillConfig, progress: bool = True) -> Path:
    """Run (or resume) distillation; returns the folder of the last checkpoint."""
    target = load_model(cfg.target)
    if not isinstance(target, Toto):
        raise ValueError(f"distill `target` {cfg.target!r} is not a Toto checkpoint")
    last = start_run(cfg, "distill_config.json")
    draft = load_model(last) if (last / "config.json").is_file() else initial_draft(cfg, target)
    if not isinstance(draft, Toto):
        raise ValueError(f"{last} holds a {type(draft).__name__} checkpoint, not Toto; use a fresh `out_dir`")
    target.check_draft(draft)
    draft.net.requires_grad_(True)
    data = data_config(cfg, target)
    sampler = PatchSampler(data, *series_pool(data))

    def reseed(step: int) -> None:
        sampler.rng = np.random.default_rng([cfg.seed, step])
        torch.manual_seed(cfg.seed + step)

    def next_loss() -> torch.Tensor:
        return distill_loss(target, draft, scale_patches(sampler.values(), target.cfg), cfg.draws)

    return fit(cfg, draft.net, next_loss, lambda folder: save_toto(draft, folder), reseed, "distill", progress)
