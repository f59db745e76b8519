"""The plain decode loop and the rollout past a model's prediction window.

For each window: tokenize the contexts, run the encoder once per series, then
one decoder pass per step for all rows (series x samples) at once. Horizons
longer than the model's ``prediction_length`` roll out as chronos-forecasting
does: the per-series median of the window's samples is appended to the
context, which is re-tokenized (new scale) for the next window.
"""

from __future__ import annotations

import time

import torch

from leapcast.engine.sampling import SamplingConfig, sample
from leapcast.engine.streams import RowStreams
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


def rollout(
    model: StepModel,
    contexts: torch.Tensor,
    horizon: int,
    sampling: SamplingConfig,
    streams: RowStreams,
    proposer=None,
    spec=None,
    chooser=None,
    first_step: int = 0,
) -> tuple[torch.Tensor, object]:
    """contexts [B, T] float32 (NaN = missing, left padding) -> (samples [B, S, horizon] float32, SpecStats or None).

    ``streams`` holds the B * S rows' random streams (series-major); step t of
    the horizon reads its numbers at step ``first_step + t`` (non-zero to go on
    from an earlier forecast), whichever window and loop commit it. With a
    ``proposer`` (and its ``spec``) each window is decoded speculatively.
    """
    from leapcast.engine.speculative import SpecStats, speculative_window

    windows = []
    stats = SpecStats(k=spec.k, accepted_per_position=[0] * spec.k) if proposer is not None else None
    done = 0
    b, s = contexts.shape[0], sampling.num_samples
    horizon += first_step
    done = first_step
    while done < horizon:
        n = min(horizon - done, model.prediction_length)  # windows of the model's length from first_step on
        batch = model.tokenize(contexts)
        # adaptive k settled on 0 runs whole windows in the plain loop, with no speculative overhead
        if proposer is None or (chooser is not None and not chooser.speculate()):
            started = time.perf_counter()
            steps = decode_window(model, batch, n, sampling, streams.window(done, n).view(b, s, n))
            if stats is not None:  # so that the stats' passes and times still cover the forecast
                stats.target_passes += n
                stats.other_s += time.perf_counter() - started
        else:
            steps, window_stats = speculative_window(model, proposer, batch, n, sampling, spec, streams, done, chooser)
            stats.merge(window_stats)
        values = model.detokenize(steps, batch.scale)  # [B, S, n]
        windows.append(values)
        done += n
        if done < horizon:
            contexts = torch.cat([contexts, values.median(dim=1).values], dim=-1)
    return torch.cat(windows, dim=-1), stats
