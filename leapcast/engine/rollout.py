"""Forecasts past a model's prediction window, window by window.

Each window tokenizes the contexts (a new scale) and decodes up to
``prediction_length`` steps, plainly or speculatively; horizons longer than
that roll out as chronos-forecasting does: the per-series median of the
window's samples is appended to the context for the next window.
"""

from __future__ import annotations

import time

import torch

from leapcast.engine.decode import decode_window
from leapcast.engine.sampling import SamplingConfig
from leapcast.engine.speculative import SpecStats, speculative_window
from leapcast.engine.streams import RowStreams
from leapcast.models.base import StepModel


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
