"""Proposals at no model cost: the same phase one season back.

The time-series analogue of prompt-lookup decoding: the step proposed for
position t is the token at t - s in the row's own history (context tokens,
then its committed steps, then the proposals just made), s the series'
season. The season is given, or taken per series as the lag in 2..L/2 with
the highest autocorrelation of the context tokens (the bins are monotone in
value, so token ids keep the shape of the series); with no clear season
(autocorrelation below 0.3) the last step is repeated (s = 1).
"""

from __future__ import annotations

import math

import torch

from leapcast.checks import check_int
from leapcast.deseason import autocorrelation
from leapcast.engine.proposers.base import Proposal, ProposalInput


class SeasonalProposer:
    def __init__(self, target, season: int | None = None, min_autocorrelation: float = 0.3) -> None:
        self.season = check_int(season, "season", none=True, must="a positive integer or None (detect)")
        self.target = target
        self.min_autocorrelation = min_autocorrelation
        self.name = "seasonal" if season is None else f"seasonal:{season}"

    def _history(self, target_state, rows_per_series: int):
        tokens, mask = self.target.context_steps(target_state)  # [B, L]
        lags = torch.full((tokens.shape[0],), self.season or 1, dtype=torch.long)
        if self.season is None:
            lags = detect_season(tokens.float(), mask, self.min_autocorrelation)
        rows = target_state.row_series  # [R]
        device = self.target.device
        return tokens[rows].to(device), mask.long().argmax(dim=1)[rows].to(device), lags[rows].to(device)

    def start(self, contexts, rows_per_series, target_state, capacity) -> None:
        self.history, self.first_valid, self.lags = self._history(target_state, rows_per_series)  # [R, Lc], [R], [R]

    def join(self, contexts, rows_per_series, target_state, capacity) -> None:
        history, first_valid, lags = self._history(target_state, rows_per_series)
        width = max(history.shape[1], self.history.shape[1])  # left-pad the narrower histories; first_valid moves along
        pad_old, pad_new = width - self.history.shape[1], width - history.shape[1]
        self.history = torch.cat(
            [torch.nn.functional.pad(self.history, (pad_old, 0)), torch.nn.functional.pad(history, (pad_new, 0))]
        )
        self.first_valid = torch.cat([self.first_valid + pad_old, first_valid + pad_new])
        self.lags = torch.cat([self.lags, lags])

    def select(self, rows: torch.Tensor) -> None:
        self.history, self.first_valid, self.lags = self.history[rows], self.first_valid[rows], self.lags[rows]

    def stop(self) -> None:
        for name in ("history", "first_valid", "lags"):
            vars(self).pop(name, None)

    def propose(self, x: ProposalInput) -> Proposal:
        lc = self.history.shape[1]
        full = torch.cat(
            [self.history, x.committed, torch.zeros_like(x.committed[:, : x.k])], dim=1
        )  # [R, Lc + cap + k]
        rows = torch.arange(full.shape[0], device=full.device)
        steps = []
        for i in range(x.k):
            target = lc + x.n + i
            source = target - self.lags
            source = torch.where(source >= self.first_valid, source, target - 1).clamp(min=0)
            step = full[rows, source]
            full[rows, target] = step
            steps.append(step)
        return Proposal(steps=torch.stack(steps, dim=1), probs=None)


def detect_season(values: torch.Tensor, mask: torch.Tensor, min_autocorrelation: float) -> torch.Tensor:
    """values, mask [B, L] -> season [B] long: for each series of n observed values, the argmax of its
    autocorrelation over lags 2 .. n // 2 - 1, or 1 when none reaches ``min_autocorrelation``. Each series'
    lags are its own: a short series beside it does not narrow them (its season, and so its forecast, would
    depend on the batch)."""
    b, length = values.shape
    acf = autocorrelation(values, length - 1, mask)  # [B, L] lag 0..L-1
    lags = torch.arange(acf.shape[1], device=acf.device)
    allowed = (lags >= 2) & (lags < mask.sum(dim=1, keepdim=True) // 2)  # [B, L]
    best, lag = acf.masked_fill(~allowed, -math.inf).max(dim=1)
    return torch.where(allowed.any(dim=1) & (best >= min_autocorrelation), lag, 1).long()
