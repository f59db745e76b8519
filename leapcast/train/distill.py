"""Distil a draft for any Chronos-T5 target: match its warped next-step distributions.

Loss: KL(p_target || q_draft) per decoder position, p warped as it is sampled
(temperature, top-k, top-p of the target's defaults), on training contexts
with two kinds of decoder inputs: the data's own continuation and, for a
fraction ``on_policy`` of batches, the target's sampled continuation (the
sequences a draft meets at inference; FastDraft, arXiv 2411.11055; online
speculative decoding, arXiv 2310.07177). The draft shares the target's
tokenizer, so it can propose for it.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from leapcast.engine.sampling import SamplingConfig, probabilities, sample
from leapcast.engine.speculative import acceptance_probability
from leapcast.models.chronos_t5 import ChronosT5
from leapcast.models.loading import load_model
from leapcast.models.presets import random_chronos_t5, save_chronos_t5
from leapcast.models.t5 import T5Config
from leapcast.registry import resolve
from leapcast.train.config import DistillConfig, TrainConfig, pipeline_options
from leapcast.train.crops import CropSampler, series_pool
from leapcast.train.grow import rebin
from leapcast.train.initial import starting_point
from leapcast.train.loop import check_loss, check_weights, resume, save, start_run


def kl_loss(
    target_logits: torch.Tensor, draft_logits: torch.Tensor, sampling: SamplingConfig, banned: tuple[int, ...]
) -> torch.Tensor:
    """Mean over positions of KL(p || q): p the warped target [.., V], q the draft's softmax [.., V]."""
    p = probabilities(target_logits, sampling, banned)
    log_q = F.log_softmax(draft_logits.float(), dim=-1)
    terms = torch.where(p > 0, p * (torch.log(p.clamp(min=1e-30)) - log_q), torch.zeros_like(p))
    return terms.sum(-1).mean()


@torch.no_grad()
def acceptance_per_step(
    target: ChronosT5, draft: ChronosT5, tokens, mask, decoder_inputs, sampling: SamplingConfig
) -> torch.Tensor:
    """[B, n] sum_x min(p(x), q(x)) at each decoder position, both warped as sampled: exact speculation's acceptance."""
    p = probabilities(target.net(tokens, mask, decoder_inputs), sampling, target.banned_tokens)
    q = probabilities(draft.net(tokens, mask, decoder_inputs), sampling, draft.banned_tokens)
    return acceptance_probability(p, q)


def expected_acceptance(
    target: ChronosT5, draft: ChronosT5, tokens, mask, decoder_inputs, sampling: SamplingConfig
) -> float:
    """Mean over positions of ``acceptance_per_step``: the acceptance rate of exact speculation."""
    return float(acceptance_per_step(target, draft, tokens, mask, decoder_inputs, sampling).mean())


def distill(cfg: DistillConfig, progress: bool = True) -> Path:
    target = load_model(cfg.target)
    chronos = target.chronos
    sampling = SamplingConfig(num_samples=1, temperature=chronos.temperature, top_k=chronos.top_k, top_p=chronos.top_p)
    out = Path(cfg.out_dir)
    last = start_run(cfg, "distill_config.json")
    t5 = T5Config(
        vocab_size=target.vocab_size,
        d_model=cfg.d_model,
        d_kv=cfg.d_kv,
        d_ff=cfg.d_ff,
        num_layers=cfg.num_layers,
        num_decoder_layers=cfg.num_layers,
        num_heads=cfg.num_heads,
        decoder_start_token_id=target.start_token,
    )
    if (last / "config.json").is_file():  # a resumed run: the draft as last saved
        draft = load_model(last)
    elif cfg.init_from is None:
        draft = starting_point(random_chronos_t5(t5, chronos, seed=cfg.seed, name=out.name), seed=cfg.seed)
    else:
        net = rebin(
            load_model(resolve(cfg.init_from, "init_from")), chronos.n_tokens, chronos.low_limit, chronos.high_limit
        ).net
        draft = ChronosT5(net, chronos, name=out.name)  # the target's tokenizer and sampling settings, whole
    data_cfg = TrainConfig(
        out_dir=str(out),
        n_tokens=chronos.n_tokens,
        low_limit=chronos.low_limit,
        high_limit=chronos.high_limit,
        context_length=chronos.context_length,
        prediction_length=chronos.prediction_length,
        batch_size=cfg.batch_size,
        datasets=cfg.datasets,
        kernel_synth=cfg.kernel_synth,
        mixup=cfg.mixup,
        seasonal_synth=cfg.seasonal_synth,
        seasonal_adjustment=cfg.seasonal_adjustment,
        trend_augmentation=cfg.trend_augmentation,
        min_trend_damping=cfg.min_trend_damping,
        seed=cfg.seed,
    )
    sampler = CropSampler(data_cfg, *series_pool(data_cfg))
    rng = np.random.default_rng(cfg.seed)
    opt = torch.optim.AdamW(draft.net.parameters(), lr=cfg.lr)
    done, log = resume(last, opt)
    if done:  # resume after the last save; fresh crops and on-policy draws from there
        sampler.rng = np.random.default_rng([cfg.seed, done])
        rng = np.random.default_rng([cfg.seed, done, 1])
        torch.manual_seed(cfg.seed + done)
    draft.net.train()
    for step in tqdm(
        range(done + 1, cfg.steps + 1), desc="distill", disable=not progress, initial=done, total=cfg.steps
    ):
        tokens, mask, labels = sampler.batch()
        if rng.random() < cfg.on_policy:  # the target's own continuation
            from leapcast.models.base import Tokenized

            batch = Tokenized(tokens=tokens, mask=mask, scale=torch.ones(len(tokens)))
            u = torch.rand(len(tokens), 1, labels.shape[1] - 1)
            continuation = sample_tokens(target, batch, labels.shape[1] - 1, sampling, u)[
                :, 0
            ].clone()  # [B, H], out of inference mode
            inputs = torch.cat([torch.full_like(continuation[:, :1], target.start_token), continuation], dim=1)[:, :-1]
        else:
            inputs = torch.cat([torch.full_like(labels[:, :1], target.start_token), labels[:, :-1].clamp(min=0)], dim=1)
        with torch.no_grad():
            target_logits = target.net(tokens, mask, inputs)
        for group in opt.param_groups:
            group["lr"] = cfg.lr * min(1.0, step / cfg.warmup) * 0.5 * (1 + math.cos(math.pi * step / cfg.steps))
        loss = kl_loss(target_logits, draft.net(tokens, mask, inputs), sampling, target.banned_tokens)
        check_loss(loss, step, opt.param_groups[0]["lr"], last)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(draft.net.parameters(), 1.0)
        opt.step()
        log.append({"step": step, "kl": loss.item()})
        if step % cfg.save_every == 0 or step == cfg.steps:
            check_weights(draft.net, step, opt.param_groups[0]["lr"], last)
            draft.net.eval()
            save(last, lambda into: save_chronos_t5(draft, into, pipeline_options(cfg)), opt, step, log)
            draft.net.train()
    return last


@torch.inference_mode()
def sample_tokens(
    model: ChronosT5, batch, num_steps: int, sampling: SamplingConfig, uniforms: torch.Tensor
) -> torch.Tensor:
    """The target's own sampled continuation of tokenized contexts, for on-policy distillation and the
    acceptance benchmark: batch of B, uniforms [B, S, num_steps] -> steps [B, S, num_steps] long.

    Forecasts go through the engine (``leapcast.engine.loop``); this is training's direct use of the decoder.
    """
    b, s = uniforms.shape[:2]
    state = model.setup(batch, rows_per_series=s, max_steps=num_steps)
    rows = b * s
    u = uniforms.reshape(rows, num_steps)  # [R, n], series-major rows
    step = torch.full((rows, 1), model.start_token, dtype=torch.long)
    out = torch.empty(rows, num_steps, dtype=torch.long)
    for t in range(num_steps):
        logits = model.decode(step, t, state)[:, -1]  # [R, V]
        step = sample(logits, sampling, u[:, t], model.banned_tokens)[:, None].cpu()
        out[:, t] = step[:, 0]
    return out.view(b, s, num_steps)
