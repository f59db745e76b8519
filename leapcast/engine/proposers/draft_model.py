"""A smaller model with the same tokenizer proposes (e.g. chronos-t5-tiny for chronos-t5-large)."""

from __future__ import annotations

from leapcast.engine.proposers._autoregressive import DecoderProposer
from leapcast.models.base import DecoderState, Tokenized

# Fields that must agree for draft tokens to mean the same values as the target's.
TOKENIZER_FIELDS = ("n_tokens", "n_special_tokens", "pad_token_id", "eos_token_id", "use_eos_token", "low_limit", "high_limit", "context_length")


class DraftModelProposer(DecoderProposer):
    def __init__(self, draft, target) -> None:
        for name in TOKENIZER_FIELDS:
            a, b = getattr(draft.chronos, name), getattr(target.chronos, name)
            if a != b:
                raise ValueError(
                    f"draft {draft.name!r} and target {target.name!r} tokenize differently: `{name}` is {a!r} "
                    f"in the draft and {b!r} in the target; a draft must share the target's vocabulary, bins and scaling"
                )
        if draft.net.cfg.decoder_start_token_id != target.net.cfg.decoder_start_token_id:
            raise ValueError("draft and target use different decoder start tokens")
        self.draft = self.model = draft
        self.name = f"draft:{draft.name}"

    def start(self, batch: Tokenized, target_state: DecoderState, capacity: int) -> None:
        self._began(self.draft.setup(batch, target_state.rows_per_series, capacity))
