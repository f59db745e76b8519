"""The contract between the engine and a model.

A model turns contexts into tokens, builds per-series state once (the encoder
pass and anything the sample rows of a series share), and runs its decoder over
``n >= 1`` new steps per row at given positions, returning the logits of the
next step at each of them. The engine owns positions, sampling, batching and
rollback; a model never samples, and the engine never knows a layer.

Words (shared/DESIGN.md): a *series* is one context; a *row* is one sample path
of one series. Rows are laid out series-major: row ``r`` belongs to series
``r // rows_per_series``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch


@dataclass
class DecoderState:
    """Everything a decode pass reads besides the new steps.

    ``caches`` is model-specific (KV buffers allocated once); ``num_series`` and
    ``rows_per_series`` fix the row layout; ``max_steps`` is the cache capacity
    in decoder positions.
    """

    caches: object
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
    """What the engine needs from a model family; the engine reaches nothing else of a model.

    A step is one value token here (Chronos-T5); ``patch_size`` says how many
    values one step holds.
    """

    name: str
    patch_size: int  # values per step
    vocab_size: int
    context_length: int  # longest context the model reads; longer ones keep their end
    prediction_length: int  # steps per forward window; longer horizons roll out
    start_token: int  # the step fed at decoder position 0
    banned_tokens: tuple[int, ...]  # never sampled (e.g. EOS, as Chronos does)

    @property
    def device(self) -> torch.device: ...

    def default_sampling(self) -> dict:
        """The checkpoint's own sampling settings: ``num_samples``, ``temperature``, ``top_k``, ``top_p``."""

    def check_draft(self, draft: "StepModel") -> None:
        """Raise ValueError, naming what differs, unless ``draft``'s steps mean what this model's steps mean."""

    def describe(self) -> dict[str, str]:
        """What ``leapcast info`` prints: family, sizes, default sampling, ..."""

    def tokenize(self, contexts: torch.Tensor) -> Tokenized:
        """contexts [B, T] float32, NaN where missing -> tokens for ``setup``."""

    def context_steps(self, batch: Tokenized) -> tuple[torch.Tensor, torch.Tensor]:
        """The context as steps: (steps [B, L] long, observed [B, L] bool), without special tokens."""

    def detokenize(self, steps: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """steps [B, S, n] long, scale [B] -> values [B, S, n] float32."""

    def setup(self, batch: Tokenized, rows_per_series: int, max_steps: int) -> DecoderState:
        """Run the encoder once per series and allocate decoder caches for
        ``B * rows_per_series`` rows and ``max_steps`` positions."""

    def select_series(self, state: DecoderState, series: torch.Tensor) -> DecoderState:
        """Keep only ``series`` [B'] (indices into the state's series) and their rows."""

    def decode(self, steps: torch.Tensor, start: int | torch.Tensor, state: DecoderState) -> torch.Tensor:
        """steps [R, n] long at positions ``start + 0..n-1`` (``start`` an int
        shared by all rows, or [R] long per row) -> logits [R, n, V] float32.

        Writes the steps' keys and values into the caches at those positions;
        positions past them are never read until written again, so rolling back
        only means calling again with a smaller ``start``.
        """


@runtime_checkable
class EarlyExitModel(Protocol):
    """Optional: a model whose first layers can propose for it (``early-exit`` drafts)."""

    num_decoder_layers: int

    def early_exit_state(self, state: DecoderState, num_layers: int) -> DecoderState:
        """A state running only the first ``num_layers`` decoder layers, sharing ``state``'s encoder pass."""

    def layer_costs(self) -> tuple[float, float]:
        """(multiply-adds of one decoder layer per step, of the output head): the cost ratio of an exit."""
