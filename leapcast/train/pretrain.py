"""Pretrain a Chronos-T5-architecture model from scratch on CPU: the training loop and its checkpoints.

Chronos recipe, small (``crops``: the series pool and the tokenized crops;
``initial``: where the weights start; ``loss``: cross-entropy, optionally
with Gaussian soft labels; ``loop``: AdamW, the schedule and the resumable
checkpoints in ``out_dir/checkpoint-<step>`` and ``out_dir/last``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from leapcast.models.loading import load_model
from leapcast.models.presets import save_chronos_t5
from leapcast.train.config import TrainConfig, pipeline_options
from leapcast.train.crops import CropSampler, series_pool
from leapcast.train.initial import initial_model
from leapcast.train.loop import fit, start_run
from leapcast.train.loss import loss_on

__all__ = ["TrainConfig", "pipeline_options", "train"]


def train(cfg: TrainConfig, progress: bool = True) -> Path:
    """Run (or resume) pretraining; returns the folder of the last checkpoint."""
    last = start_run(cfg)
    model = load_model(last) if (last / "config.json").is_file() else initial_model(cfg)
    sampler = CropSampler(cfg, *series_pool(cfg))

    def reseed(step: int) -> None:  # a resumed run draws fresh crops
        sampler.rng = np.random.default_rng([cfg.seed, step])

    def next_loss() -> torch.Tensor:
        first_bin = sampler.tokenizer.config.n_special_tokens
        return loss_on(model.net, *sampler.batch(), sigma=cfg.label_sigma, first_bin=first_bin)

    return fit(
        cfg,
        model.net,
        next_loss,
        lambda folder: save_chronos_t5(model, folder, pipeline_options(cfg)),
        reseed,
        "pretrain",
        progress,
    )
