"""Self-speculation: the target's own first m decoder layers, final norm and head propose.

No second model: the draft reuses the target's encoder output and
cross-attention keys and values, and keeps self-attention caches for its m
layers (Draft & Verify, arXiv 2309.08168; Kangaroo, arXiv 2404.18911;
LayerSkip, arXiv 2404.16710).
"""

from __future__ import annotations

import torch

from leapcast.engine.proposers._autoregressive import propose_autoregressively
from leapcast.engine.proposers.base import Proposal, ProposalInput
from leapcast.models.base import DecoderState, Tokenized


class EarlyExitProposer:
    def __init__(self, target, num_layers: int) -> None:
        total = len(target.net.dec_layers)
        if isinstance(num_layers, bool) or not isinstance(num_layers, int) or not 1 <= num_layers < total:
            raise ValueError(f"early-exit layers must be an integer in 1..{total - 1} for this target, got {num_layers!r}")
        self.target = target
        self.num_layers = num_layers
        self.name = f"early-exit:{num_layers}"
        self.state: DecoderState | None = None

    def start(self, batch: Tokenized, target_state: DecoderState, capacity: int) -> None:
        self.state = self.target.early_exit_state(target_state, self.num_layers)
        self.fed = torch.zeros(target_state.num_rows, dtype=torch.long)  # cache positions holding committed inputs

    def propose(self, x: ProposalInput) -> Proposal:
        proposal, self.fed = propose_autoregressively(self.target, self.state, x, self.fed)
        return proposal

    def select(self, series: torch.Tensor, rows: torch.Tensor) -> None:
        self.state = self.target.select_series(self.state, series)
        self.fed = self.fed[rows]
