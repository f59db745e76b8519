"""The optimisation loop pretraining runs share, whatever the family: AdamW with linear warm-up and cosine
decay, gradients clipped at norm 1, a progress bar, and resumable checkpoints.

Each save writes the model (``save_model``: config.json + model.safetensors in the family's official layout)
with the optimizer state and the loss log into ``out/checkpoint-<step>`` and ``out/last``; a run whose
``out/last`` holds them resumes there, drawing fresh crops (``reseed``).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm


def start_run(cfg, record: str = "train_config.json") -> Path:
    """What every run does first: torch's threads and seed from ``cfg``, its out_dir made, ``cfg`` recorded there
    as ``record``; returns ``out_dir/last``, where a resumed run's checkpoint is."""
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / record).write_text(json.dumps(asdict(cfg), indent=2) + "\n")
    return out / "last"


def fit(
    cfg,
    net: nn.Module,
    next_loss: Callable[[], torch.Tensor],
    save_model: Callable[[Path], None],
    reseed: Callable[[int], None],
    desc: str,
    progress: bool = True,
) -> Path:
    """Train ``net`` to ``cfg.steps`` (lr, warmup, weight_decay, save_every from ``cfg``) on ``next_loss()``
    batches, resuming from ``cfg.out_dir/last``; returns that folder."""
    out = Path(cfg.out_dir)
    last = out / "last"
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    step, log = 0, []
    if (last / "trainer_state.pt").is_file():
        state = torch.load(last / "trainer_state.pt", weights_only=True)
        opt.load_state_dict(state["optimizer"])
        step, log = int(state["step"]), json.loads((last / "log.json").read_text())
    reseed(step)
    seconds = float((last / "wall_seconds.txt").read_text()) if (last / "wall_seconds.txt").is_file() else 0.0

    def schedule(s: int) -> float:  # linear warm-up, then cosine decay to 0 at cfg.steps
        return min(1.0, (s + 1) / cfg.warmup) * 0.5 * (1 + math.cos(math.pi * min(s, cfg.steps) / cfg.steps))

    net.train()
    bar = tqdm(total=cfg.steps, initial=step, desc=desc, disable=not progress)
    started = time.perf_counter()
    while step < cfg.steps:
        for group in opt.param_groups:
            group["lr"] = cfg.lr * schedule(step)
        loss = next_loss()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        step += 1
        log.append({"step": step, "loss": loss.item(), "lr": opt.param_groups[0]["lr"]})
        bar.set_postfix(loss=f"{log[-1]['loss']:.3f}")
        bar.update(1)
        if step % cfg.save_every == 0 or step == cfg.steps:
            net.eval()
            for folder in (out / f"checkpoint-{step}", last):
                save_model(folder)
                torch.save({"optimizer": opt.state_dict(), "step": step}, folder / "trainer_state.pt")
                (folder / "log.json").write_text(json.dumps(log) + "\n")
            # wall time over every session of the run: the CPU-hours a model card states
            (last / "wall_seconds.txt").write_text(f"{seconds + time.perf_counter() - started:.0f}\n")
            net.train()
    bar.close()
    net.eval()
    return last
