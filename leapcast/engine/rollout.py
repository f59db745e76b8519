"""Forecasts past a model's prediction window, window by window.

Each window builds the model's state of the contexts (for Chronos, a new
scale) and decodes up to ``prediction_length`` steps, plainly or
speculatively; horizons longer than that roll out by the model's own rule
(``model.extend``: for Chronos, the per-series median of the window's
samples is appended to the context, as chronos-forecasting does).
"""

from __future__ import annotations

import time

import torch

from leapcast.engine.loop import Decoder
from leapcast.engine.sampling import SamplingConfig
from leapcast.engine.speculative import SpecStats
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
) -> tuple[torch.Tensor, SpecStats | None]:
    """contexts [B, T] float32 (NaN = missing, left padding) -> (samples [B, S, horizon * P] float32, SpecStats or None).

    ``streams`` holds the B * S rows' random streams (series-major); step t of
    the horizon reads its numbers at step ``first_step + t`` (non-zero to go on
    from an earlier forecast), whichever window and loop commit it. With a
    ``proposer`` (and its ``spec``) windows are decoded speculatively; an
    adaptive ``chooser`` that has settled on plain decoding runs whole windows
    without the proposer, re-checking every few windows.
    """
    windows = []
    stats = SpecStats(k=spec.k, accepted_per_position=[0] * spec.k) if proposer is not None else None
    b, s = contexts.shape[0], sampling.num_samples
    done, end = first_step, first_step + horizon
    while done < end:
        n = min(end - done, model.prediction_length)
        speculate = proposer is not None and (chooser is None or chooser.speculate())
        decoder = Decoder(model, proposer if speculate else None, spec, chooser)
        started = time.perf_counter()
        ids = decoder.add(contexts, n, sampling, streams, first_step=done)
        out = decoder.run()
        values = torch.stack([out[i] for i in ids]).view(b, s, -1)  # [B, S, n * P]
        if stats is not None:
            if speculate:
                stats.merge(decoder.stats)
            else:  # so that the stats' passes and times still cover the forecast
                stats.target_passes += decoder.stats.target_passes
                stats.other_s += time.perf_counter() - started
        windows.append(values)
        done += n
        if done < end:
            contexts = model.extend(contexts, values)
    return torch.cat(windows, dim=-1), stats
