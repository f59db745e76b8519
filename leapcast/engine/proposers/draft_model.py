"""A smaller model with the same tokenizer proposes (e.g. chronos-t5-tiny for chronos-t5-large)."""

from __future__ import annotations

from leapcast.engine.proposers._autoregressive import DecoderProposer
from leapcast.models.base import DecoderState, Tokenized

class DraftModelProposer(DecoderProposer):
    def __init__(self, draft, target) -> None:
        target.check_draft(draft)
        self.draft = self.model = draft
        self.name = f"draft:{draft.name}"

    def start(self, batch: Tokenized, target_state: DecoderState, capacity: int) -> None:
        self._began(self.draft.setup(batch, target_state.rows_per_series, capacity))
