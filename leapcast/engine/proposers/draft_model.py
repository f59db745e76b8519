"""A smaller model with the same tokenizer proposes (e.g. chronos-t5-tiny for chronos-t5-large)."""

from __future__ import annotations

from leapcast.engine.proposers._autoregressive import DecoderProposer


class DraftModelProposer(DecoderProposer):
    def __init__(self, draft, target) -> None:
        target.check_draft(draft)
        self.draft = self.model = draft
        draft.proposes = True  # its passes need not repeat its own steps bit for bit (``ChronosT5.exact_passes``)
        self.name = f"draft:{draft.name}"

    def _state_for(self, contexts, rows_per_series, target_state, capacity):
        return self.draft.prefix(contexts, rows_per_series, capacity)
