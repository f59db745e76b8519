"""Row layouts shared by every family's state: which rows belong to which series, and padding for merges.

Rows are series-major (docs/families.md). When series join a running batch, their states are
concatenated: context-like tensors pad on the left (the padding is masked), position-indexed caches on
the right (positions past a row's own are never read before they are written).
"""

from __future__ import annotations

import torch


def grouped(row_series: torch.Tensor) -> int | None:
    """Rows per series when ``row_series`` [R] is series-major with equal counts (0,0,1,1,...), else None."""
    counts = torch.bincount(row_series)
    if len(counts) == 0 or bool((counts != counts[0]).any()):
        return None
    s = int(counts[0])
    return s if torch.equal(row_series, torch.arange(len(counts)).repeat_interleave(s)) else None


def pad_left(x: torch.Tensor, length: int, dim: int, value=0) -> torch.Tensor:
    """Pad ``dim`` on the left to ``length`` with ``value``."""
    extra = length - x.shape[dim]
    if extra == 0:
        return x
    shape = list(x.shape)
    shape[dim] = extra
    return torch.cat([torch.full(shape, value, dtype=x.dtype, device=x.device), x], dim=dim)


def pad_right(x: torch.Tensor, length: int, dim: int) -> torch.Tensor:
    """Pad ``dim`` on the right to ``length`` with zeros."""
    extra = length - x.shape[dim]
    if extra == 0:
        return x
    shape = list(x.shape)
    shape[dim] = extra
    return torch.cat([x, x.new_zeros(shape)], dim=dim)
