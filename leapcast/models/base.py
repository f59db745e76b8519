"""The contract between the engine and a model.

A model builds per-series state once (scaling, the encoder or context pass, and
anything the sample rows of a series share), and runs ``n >= 1`` new steps per
row at given positions, returning the head (the distribution) of the next step
at each of them. The engine owns positions, sampling, batching and rollback; a
model never samples, and the engine never knows a layer.

Words (shared/DESIGN.md): a *series* is one context; a *row* is one sample path
of one series. Rows are laid out series-major: row ``r`` belongs to series
``r // rows_per_series``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch


@dataclass
class DecoderState:
    """Everything a decode pass reads besides the new steps.

    ``caches`` is model-specific (KV buffers allocated once); ``num_series`` and
    ``rows_per_series`` fix the row layout; ``max_steps`` is the cache capacity
    in decoder positions.
    """

    caches: Any  # the family's own (Chronos-T5: _ChronosCaches)
    num_series: int
    rows_per_series: int
    max_steps: int

    @property
    def num_rows(self) -> int:
        return self.num_series * self.rows_per_series


@dataclass(frozen=True)
class Tokenized:
    """A batch of contexts in token space.

    tokens: [B, L] long; mask: [B, L] bool (False where the context was NaN or
    padding); scale: [B] float32, the per-series scale used to tokenize.
    """

    tokens: torch.Tensor
    mask: torch.Tensor
    scale: torch.Tensor


class StepModel(Protocol):
    """What the engine, the forecaster and the CLI need from a model family; nothing else of a model is read
    (tests/engine/test_families.py records every attribute they touch). docs/families.md walks through it.

    A *step* is what one autoregressive pass adds: one token (Chronos-T5) or one patch of ``patch_size``
    values per variate (Toto). Steps travel in the head's own type: token ids [R] long, or values [R, V * P].
    """

    name: str
    patch_size: int  # values per step
    context_length: int  # longest context the model reads (values); longer ones keep their end
    prediction_length: int  # steps per forward window; longer horizons roll out by ``extend``
    default_horizon: int  # values forecast when the caller names no horizon
    head_kind: str  # "categorical" (drafts can be verified) or "continuous"
    rescalable: bool  # True: its forecast of 2**k * y is 2**k times that of y (the forecaster may rescale inputs)
    multivariate: bool  # True: reads [B, V, T] contexts, the variates of one item together
    min_context: int | None  # fewest history values it forecasts soundly from; fewer: a warning (None: no floor)

    @property
    def device(self) -> torch.device: ...

    def default_sampling(self) -> dict:
        """The checkpoint's own sampling settings: ``num_samples``, ``temperature``, ``top_k``, ``top_p``."""

    def check_sampling(self, sampling) -> None:
        """Raise ValueError, naming the setting, for sampling settings that do not apply to this model's heads."""

    def check_draft(self, draft: StepModel) -> None:
        """Raise ValueError, naming what differs, unless ``draft``'s steps mean what this model's steps mean."""

    def describe(self) -> dict[str, str]:
        """What ``leapcast info`` prints: family, sizes, default sampling, ..."""

    def row_cache_bytes(self, positions: int, variates: int = 1) -> int:
        """Bytes one row's decoder state takes with room for ``positions`` decoder positions (what grows with the
        rows and the window; the forecaster keeps a batch within the free memory)."""

    def prefix(self, contexts: torch.Tensor, rows_per_series: int, capacity: int) -> object:
        """contexts [B, T] (or [B, V, T]) float32, NaN where missing, leading NaN as padding -> the state of
        B series x ``rows_per_series`` rows (series-major): everything done once per series, room for
        ``capacity`` decoder positions per row."""

    def start_inputs(self, state) -> torch.Tensor:
        """The input at decoder position 0 of every row: [R, *step]."""

    def step(self, state, inputs: torch.Tensor, positions: int | torch.Tensor):
        """inputs [R, n, *step] at decoder ``positions`` (an int for all rows, or [R] long) + 0..n-1 -> the head of
        the next step after each, [R, n] (``leapcast.models.heads``). Caches are written by position and never read
        past it, so a rejected proposal is undone by calling again at a smaller position."""

    def values(self, state, steps: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """steps [R', n, *step] of the state's rows ``rows`` [R'] -> values [R', V * n * P] float32 in their series' scale."""

    def extend(self, contexts: torch.Tensor, samples: torch.Tensor) -> torch.Tensor:
        """The roll-out rule past one window: contexts [B, (V,) T], samples [B, S, m] -> contexts [B, (V,) T + m']."""

    def select(self, state, rows: torch.Tensor):
        """Keep ``rows`` [R'] in that order (series left with none are dropped): series leave. May consume
        ``state`` (rows moved within its memory: ``leapcast.models.rows.take_rows``)."""

    def merge(self, a, b):
        """The rows of ``a`` then those of ``b``: series join a running batch. May consume ``a`` (``b``'s rows
        written into room after ``a``'s: ``leapcast.models.rows.append_rows``)."""

    def context_steps(self, state) -> tuple[torch.Tensor, torch.Tensor]:
        """The context as steps (steps [B, L], observed [B, L]) for the seasonal proposer; categorical families."""


@runtime_checkable
class EarlyExitModel(Protocol):
    """Optional: a model whose first layers can propose for it (``early-exit`` drafts)."""

    num_decoder_layers: int

    def early_exit_state(self, state: DecoderState, num_layers: int) -> DecoderState:
        """A state running only the first ``num_layers`` decoder layers, sharing ``state``'s encoder pass."""

    def layer_costs(self) -> tuple[float, float]:
        """(multiply-adds of one decoder layer per step, of the output head): the cost ratio of an exit."""


def graphs_built() -> int:
    """Graphs torch.compile has built in this process so far (0 while it has not loaded: nothing imports it here).
    The compiled step checks it for compiling its signature missed; adaptive k leaves out a pass that compiled, which
    timed the compiling, not the work (one such k = 0 pass kept the chooser off plain decoding for good)."""
    utils = sys.modules.get("torch._dynamo.utils")
    return int(utils.counters["stats"]["unique_graphs"]) if utils is not None else 0
