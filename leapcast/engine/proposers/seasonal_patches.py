"""Proposals at no model cost for patch models: the same values one season back (tolerance mode only).

The patch proposed for forecast patch t holds, for each of its values, the value s steps earlier in the row's
own history (its context, then its committed patches, then the patches just proposed), s the series' season
in values: given, or detected per series on the first variate's context (``seasonal.detect_season``; no clear
season: s = 1, the last value repeated). A fixed value has probability zero under a continuous density, so
exact verification would reject every such proposal: this proposer runs only with a tolerance on mean
decoding (``SpecConfig(tolerance=...)``, ``verifiers.continuous.verify_points``).
"""

from __future__ import annotations

import torch

from leapcast.checks import check_int
from leapcast.engine.proposers.base import Proposal, ProposalInput
from leapcast.engine.proposers.seasonal import detect_season


class SeasonalPatchProposer:
    def __init__(self, target, season: int | None = None, min_autocorrelation: float = 0.3) -> None:
        self.season = check_int(season, "season", none=True, must="a positive integer or None (detect)")
        self.target = target
        self.min_autocorrelation = min_autocorrelation
        self.name = "seasonal" if season is None else f"seasonal:{season}"

    def _history(self, contexts: torch.Tensor, rows_per_series: int) -> tuple[torch.Tensor, torch.Tensor]:
        """contexts [B, (V,) T] -> (history [R, V, T] float32, NaN where missing; lags [R] long)."""
        x = contexts.float().cpu()
        x = x[:, None] if x.dim() == 2 else x
        observed = ~torch.isnan(x[:, 0])
        lags = torch.full((x.shape[0],), self.season or 1, dtype=torch.long)
        if self.season is None:
            lags = detect_season(torch.nan_to_num(x[:, 0]), observed, self.min_autocorrelation)
        device = self.target.device
        return x.repeat_interleave(rows_per_series, dim=0).to(device), lags.repeat_interleave(rows_per_series).to(
            device
        )

    def start(self, contexts, rows_per_series, target_state, capacity) -> None:
        self.history, self.lags = self._history(contexts, rows_per_series)

    def join(self, contexts, rows_per_series, target_state, capacity) -> None:
        history, lags = self._history(contexts, rows_per_series)
        width = max(history.shape[2], self.history.shape[2])  # left-pad the shorter histories with NaN
        pad = [torch.nn.functional.pad(h, (width - h.shape[2], 0), value=float("nan")) for h in (self.history, history)]
        self.history, self.lags = torch.cat(pad), torch.cat([self.lags, lags])

    def select(self, rows: torch.Tensor) -> None:
        self.history, self.lags = self.history[rows], self.lags[rows]

    def stop(self) -> None:
        for name in ("history", "lags"):
            vars(self).pop(name, None)

    def propose(self, x: ProposalInput) -> Proposal:
        r, v, t = self.history.shape
        cap = x.committed.shape[1]
        p = x.committed.shape[2] // v
        committed = x.committed.float().view(r, cap, v, p).permute(0, 2, 1, 3).reshape(r, v, cap * p)
        full = torch.cat([self.history, committed], dim=2)  # [R, V, T + cap P]
        first = t + x.n[:, None] * p  # [R, 1] where the first proposed value goes
        target = first + torch.arange(x.k * p, device=full.device)  # [R, k P]
        # one season back, and further back by whole seasons until the value is known (not itself proposed now)
        back = torch.div(target - first + self.lags[:, None], self.lags[:, None], rounding_mode="floor")
        source = (target - self.lags[:, None] * back).clamp(min=0)
        values = full.gather(2, source[:, None].expand(r, v, -1))  # [R, V, k P]
        return Proposal(steps=values.view(r, v, x.k, p).permute(0, 2, 1, 3).reshape(r, x.k, v * p), probs=None)
