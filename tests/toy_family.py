"""A test-only model family: patches of 4 values, a 2-component Student-T mixture per value.

It exists to show that the engine knows no family: the same decode loop that
runs Chronos-T5 runs this, through the contract of ``leapcast.models.base``
(docs/families.md walks through it). Random weights, no cache: each step reads
a summary of its series' context (the context) and the patch before it (its
last patch, at position 0 the context's own last patch).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from leapcast.models.heads import StudentTMixture

PATCH = 4
COMPONENTS = 2
WIDTH = 16
SUMMARY = 32  # context values the summary reads


@dataclass
class ToyState:
    """summary [B, WIDTH] and scale [B] per series; start [R, PATCH] the scaled last context patch of each
    row's series; row_series [R]."""

    summary: torch.Tensor
    scale: torch.Tensor
    start: torch.Tensor
    row_series: torch.Tensor

    @property
    def num_rows(self) -> int:
        return len(self.row_series)


class ToyPatchModel:
    name = "toy-patch"
    patch_size = PATCH
    context_length = 64
    prediction_length = 3  # steps (12 values) per window; longer horizons roll out
    default_horizon = 12
    head_kind = "continuous"
    rescalable = True
    multivariate = False
    min_context = None
    device = torch.device("cpu")
    dtype = torch.float32

    def __init__(self, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)

        def w(*shape):
            return torch.randn(*shape, generator=g) / shape[-1] ** 0.5

        self.w_context = w(WIDTH, SUMMARY)
        self.w_patch = w(WIDTH, PATCH)
        self.position = torch.randn(64, WIDTH, generator=g) * 0.1
        self.w_out = w(PATCH * COMPONENTS * 4, WIDTH)  # per value and component: weight, loc, scale, df

    # the contract
    def default_sampling(self) -> dict:
        return {"num_samples": 8, "temperature": 1.0, "top_k": 0, "top_p": 1.0}

    def check_sampling(self, sampling) -> None:
        """The toy samples its mixtures whatever the warping (the engine ignores it for continuous heads)."""

    def check_draft(self, draft) -> None:
        raise ValueError("the toy family has no drafts")

    def describe(self) -> dict[str, str]:
        return {"family": "toy-patch", "patch": str(PATCH), "components": str(COMPONENTS)}

    def row_cache_bytes(self, positions: int, variates: int = 1) -> int:
        return 0  # no caches: each step reads the series' summary

    def prefix(self, contexts: torch.Tensor, rows_per_series: int, capacity: int) -> ToyState:
        """contexts [B, T] float32, NaN where missing (left padding too)."""
        observed = ~torch.isnan(contexts)
        scale = torch.where(observed, contexts.abs(), 0.0).sum(-1) / observed.sum(-1).clamp(min=1)
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))  # [B]
        x = torch.nan_to_num(contexts / scale[:, None])
        window = F.pad(x, (max(0, SUMMARY - x.shape[1]), 0))[:, -SUMMARY:]  # [B, SUMMARY]
        summary = torch.tanh(window @ self.w_context.T)  # [B, WIDTH]
        row_series = torch.arange(len(contexts)).repeat_interleave(rows_per_series)
        start = window[:, -PATCH:][row_series]  # [R, PATCH]
        return ToyState(summary, scale, start, row_series)

    def start_inputs(self, state: ToyState) -> torch.Tensor:
        return state.start

    def step(self, state: ToyState, inputs: torch.Tensor, positions) -> StudentTMixture:
        """inputs [R, n, PATCH] scaled patches at positions (+0..n-1) -> the head of the next patch, [R, n]."""
        r, n, _ = inputs.shape
        pos = (torch.as_tensor(positions).reshape(-1, 1) + torch.arange(n)).expand(r, n)  # [R, n]
        h = torch.tanh(
            inputs @ self.w_patch.T + state.summary[state.row_series][:, None] + self.position[pos]
        )  # [R, n, WIDTH]
        out = (h @ self.w_out.T).view(r, n, PATCH, COMPONENTS, 4)
        weight, loc, scale, df = out.unbind(-1)
        return StudentTMixture(weight, loc, F.softplus(scale) + 0.05, 2.0 + F.softplus(df))

    def values(self, state: ToyState, steps: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """steps [R', n, PATCH] -> values [R', n * PATCH] in the series' scale."""
        return (steps * state.scale[state.row_series[rows]][:, None, None]).reshape(len(rows), -1)

    def extend(self, contexts: torch.Tensor, samples: torch.Tensor) -> torch.Tensor:
        """Roll out by the mean path: contexts [B, T], samples [B, S, m] -> [B, T + m]."""
        return torch.cat([contexts, samples.mean(dim=1)], dim=-1)

    def select(self, state: ToyState, rows: torch.Tensor) -> ToyState:
        series, row_series = torch.unique(state.row_series[rows], return_inverse=True)
        return ToyState(state.summary[series], state.scale[series], state.start[rows], row_series)

    def merge(self, a: ToyState, b: ToyState) -> ToyState:
        return ToyState(
            torch.cat([a.summary, b.summary]),
            torch.cat([a.scale, b.scale]),
            torch.cat([a.start, b.start]),
            torch.cat([a.row_series, b.row_series + len(a.summary)]),
        )


def reference_mean_forecast(model: ToyPatchModel, contexts: torch.Tensor, horizon: int, samples: int) -> torch.Tensor:
    """Mean decoding written out by hand, window by window: [B, T] -> [B, S, horizon * PATCH]."""
    windows, done = [], 0
    while done < horizon:
        n = min(horizon - done, model.prediction_length)
        state = model.prefix(contexts, samples, n + 1)
        x = state.start  # [R, PATCH]
        steps = []
        for t in range(n):
            x = model.step(state, x[:, None], t).mean()[:, 0]
            steps.append(x)
        rows = torch.arange(state.num_rows)
        values = model.values(state, torch.stack(steps, dim=1), rows).view(len(contexts), samples, -1)
        windows.append(values)
        done += n
        if done < horizon:
            contexts = model.extend(contexts, values)
    return torch.cat(windows, dim=-1)
