"""Self-speculation: the target's own first m decoder layers, final norm and head propose.

No second model: the draft reuses the target's encoder output and
cross-attention keys and values, and keeps self-attention caches for its m
layers (Draft & Verify, arXiv 2309.08168; Kangaroo, arXiv 2404.18911;
LayerSkip, arXiv 2404.16710).

m is the user's, or calibrated on the first batch's contexts
(``num_layers=None``, the ``early-exit`` draft name without ``:M``) and kept
for later windows and batches: the context's last tokens are read by the
decoder as if they were its own past steps, once through each exit and once
through the full stack; the agreement a_m = sum_x min(p_full, p_m) and
the cost ratio c_m give the expected speedup bound
(1 - a^(k+1)) / ((1 - a)(k c + 1)), and the best m wins. Calibration only
chooses which proposer runs; the output distribution is the target's either way.
"""

from __future__ import annotations

import threading
from typing import Any

import torch

from leapcast.checks import is_int, param
from leapcast.engine.proposers._autoregressive import DecoderProposer
from leapcast.engine.sampling import SamplingConfig
from leapcast.engine.speculative import acceptance_probability, speedup_bound
from leapcast.models.base import EarlyExitModel

CALIBRATION_STEPS = 16


class EarlyExitProposer(DecoderProposer):
    def __init__(self, target, num_layers: int | None, k: int = 4, sampling: SamplingConfig | None = None) -> None:
        if not isinstance(target, EarlyExitModel):
            raise ValueError(
                f"{param('draft')} early-exit: model {target.name!r} offers no early exit; use a draft model or the "
                "seasonal proposer"
            )
        total = target.num_decoder_layers
        name = getattr(target, "name", "this target")
        if total < 2:
            raise ValueError(
                f"{param('draft')} early-exit needs a target with at least 2 decoder layers; {name!r} has "
                f"{total}: use a draft model"
            )
        if num_layers is not None and not (is_int(num_layers) and 1 <= num_layers < total):
            raise ValueError(
                f"{param('draft')} early-exit:{num_layers}: the layers must be an integer in 1..{total - 1} for "
                f"{name!r}, e.g. early-exit:{max(1, total // 2)}"
            )
        self.target: Any = target  # a family's model that is also an EarlyExitModel
        self.model = target
        self.num_layers = num_layers
        self.k = max(1, k)
        self.sampling = sampling or SamplingConfig()
        self.calibration: dict[int, dict[str, float]] = {}
        self._chosen: list[int] = []  # the calibrated depth, shared with copies (each forecast call runs a copy)
        self._calibrating = threading.Lock()  # shared too: concurrent first calls calibrate once
        self.name = "early-exit" if num_layers is None else f"early-exit:{num_layers}"

    def __copy__(self) -> EarlyExitProposer:  # each forecast call's copy shares the calibrated depth and its lock
        new = object.__new__(type(self))
        vars(new).update(vars(self))
        return new

    def __getstate__(self) -> dict:  # a lock does not pickle: an unpickled proposer gets a lock of its own
        return {name: value for name, value in vars(self).items() if name != "_calibrating"}

    def __setstate__(self, state: dict) -> None:
        vars(self).update(state, _calibrating=threading.Lock())

    def _state_for(self, contexts, rows_per_series, target_state, capacity):
        if self.num_layers is None:  # calibrated once: later windows, batches and calls reuse the depth
            with self._calibrating:
                if not self._chosen:
                    self._chosen.append(self.calibrate(target_state))
            self.num_layers = self._chosen[0]
            self.name = f"early-exit:{self.num_layers}"
        return self.target.early_exit_state(target_state, self.num_layers)

    @torch.inference_mode()
    def calibrate(self, target_state) -> int:
        """The exit depth m with the best expected speedup on these rows' contexts."""
        total = self.target.num_decoder_layers
        rows = _context_as_steps(self.target, target_state, target_state.capacity - 1)  # [R, n + 1]
        valid = rows >= 0  # positions whose input is an observed step
        rows = rows.clamp(min=0)
        full = self.target.step(self.target.early_exit_state(target_state, total), rows, 0).probs(self.sampling)
        costs = self.target.layer_costs()
        best, best_speedup = 1, -1.0
        for m in range(1, total):
            q = self.target.step(self.target.early_exit_state(target_state, m), rows, 0).probs(self.sampling)
            a = float(acceptance_probability(full, q)[valid].mean()) if valid.any() else 0.0
            c = (m * costs[0] + costs[1]) / (total * costs[0] + costs[1])
            speedup = speedup_bound(min(a, 0.999), self.k, c)
            self.calibration[m] = {"acceptance": a, "cost_ratio": c, "bound": speedup}
            if speedup > best_speedup:
                best, best_speedup = m, speedup
        return best


def _context_as_steps(target, state, most: int) -> torch.Tensor:
    """[R, n + 1] decoder inputs per row: its start input, then its series' last n <= most context steps; -1 where missing."""
    steps, observed = target.context_steps(state)  # [B, L]
    n = max(1, min(CALIBRATION_STEPS, most, steps.shape[1]))
    tail = torch.where(observed[:, -n:], steps[:, -n:], torch.full_like(steps[:, -n:], -1))[state.row_series]  # [R, n]
    start = target.start_inputs(state)
    return torch.cat([start[:, None], tail.to(start.device)], dim=1)
