"""The plain decode loop of one window: the encoder once per series, then one
decoder pass per step for all rows (series x samples) at once."""

from __future__ import annotations

import torch

from leapcast.engine.sampling import SamplingConfig, sample
from leapcast.models.base import StepModel, Tokenized


def decode_window(model: StepModel, batch: Tokenized, num_steps: int, sampling: SamplingConfig, uniforms: torch.Tensor) -> torch.Tensor:
    """Sample ``num_steps`` steps for every row.

    batch: B tokenized contexts; uniforms [B, S, num_steps] -> steps [B, S, num_steps] long.
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
