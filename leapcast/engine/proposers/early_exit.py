"""Self-speculation: the target's own first m decoder layers, final norm and head propose.

No second model: the draft reuses the target's encoder output and
cross-attention keys and values, and keeps self-attention caches for its m
layers (Draft & Verify, arXiv 2309.08168; Kangaroo, arXiv 2404.18911;
LayerSkip, arXiv 2404.16710).
"""

from __future__ import annotations

from leapcast.engine.proposers._autoregressive import DecoderProposer
from leapcast.models.base import DecoderState, Tokenized


class EarlyExitProposer(DecoderProposer):
    def __init__(self, target, num_layers: int) -> None:
        total = len(target.net.dec_layers)
        if isinstance(num_layers, bool) or not isinstance(num_layers, int) or not 1 <= num_layers < total:
            raise ValueError(f"early-exit layers must be an integer in 1..{total - 1} for this target, got {num_layers!r}")
        self.target = self.model = target
        self.num_layers = num_layers
        self.name = f"early-exit:{num_layers}"

    def start(self, batch: Tokenized, target_state: DecoderState, capacity: int) -> None:
        self._began(self.target.early_exit_state(target_state, self.num_layers))
