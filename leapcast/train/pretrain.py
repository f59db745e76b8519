"""Pretrain a Chronos-T5-architecture model from scratch on CPU: the training loop and its checkpoints.

Chronos recipe, small (``crops``: the series pool and the tokenized crops;
``initial``: where the weights start; ``loss``: cross-entropy, optionally
with Gaussian soft labels): AdamW with linear warm-up and cosine decay,
gradients clipped at norm 1. Checkpoints (config.json + model.safetensors +
optimizer state) land in ``out_dir/checkpoint-<step>`` and ``out_dir/last``;
a run resumes from ``last``.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from leapcast.models.chronos_t5 import ChronosT5
from leapcast.models.loading import load_model
from leapcast.models.presets import save_chronos_t5
from leapcast.train.config import TrainConfig, pipeline_options
from leapcast.train.crops import CropSampler, series_pool
from leapcast.train.initial import initial_model
from leapcast.train.loss import loss_on

__all__ = ["TrainConfig", "pipeline_options", "train"]


def train(cfg: TrainConfig, progress: bool = True) -> Path:
    """Run (or resume) pretraining; returns the folder of the last checkpoint."""
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "train_config.json").write_text(json.dumps(asdict(cfg), indent=2) + "\n")
    last = out / "last"
    model = load_model(last) if (last / "config.json").is_file() else initial_model(cfg)
    net = model.net.train()
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    step, log = 0, []
    if (last / "trainer_state.pt").is_file():
        state = torch.load(last / "trainer_state.pt", weights_only=True)
        opt.load_state_dict(state["optimizer"])
        step, log = int(state["step"]), json.loads((last / "log.json").read_text())
    real, synthetic = series_pool(cfg)
    sampler = CropSampler(cfg, real, synthetic)
    sampler.rng = np.random.default_rng([cfg.seed, step])  # a resumed run draws fresh crops

    def schedule(s: int) -> float:  # linear warm-up, then cosine decay to 0 at cfg.steps
        return min(1.0, (s + 1) / cfg.warmup) * 0.5 * (1 + math.cos(math.pi * min(s, cfg.steps) / cfg.steps))

    bar = tqdm(total=cfg.steps, initial=step, desc="pretrain", disable=not progress)
    started = time.perf_counter()
    while step < cfg.steps:
        for group in opt.param_groups:
            group["lr"] = cfg.lr * schedule(step)
        loss = loss_on(
            net, *sampler.batch(), sigma=cfg.label_sigma, first_bin=sampler.tokenizer.config.n_special_tokens
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        step += 1
        log.append({"step": step, "loss": loss.item(), "lr": opt.param_groups[0]["lr"]})
        bar.set_postfix(loss=f"{log[-1]['loss']:.3f}")
        bar.update(1)
        if step % cfg.save_every == 0 or step == cfg.steps:
            _save(model, opt, step, log, out, time.perf_counter() - started, pipeline_options(cfg))
    bar.close()
    return last


def _save(model: ChronosT5, opt, step: int, log: list, out: Path, seconds: float, options: dict) -> None:
    net = model.net.eval()
    for folder in (out / f"checkpoint-{step}", out / "last"):
        save_chronos_t5(model, folder, options)
        torch.save({"optimizer": opt.state_dict(), "step": step}, folder / "trainer_state.pt")
        (folder / "log.json").write_text(json.dumps(log) + "\n")
    (out / "last" / "wall_seconds.txt").write_text(f"{seconds:.0f}\n")
    net.train()
