"""Counter-based random numbers: every uniform is a function of (seed, series key, sample path, step, stream).

Nothing is drawn from a stateful generator, so which numbers a row gets does
not depend on its batch mates, on how many rows its series has, on the order
in which the engine asks, or on which decode loop runs: plain decoding,
speculative decoding at k = 0 and the plain tail of adaptive k all read
``SAMPLE`` at the step they commit, so they give the same seeded forecast;
a draft that samples with the same numbers and agrees with the target
reproduces it too. The series key is the id's stable hash in the frame APIs
and the position in the array API (``leapcast.engine.sampling.stream_key``).

Uniforms have 24 random bits (float32's mantissa, as ``torch.rand``), from a
32-bit integer hash (Wellons' ``lowbias32``) chained over the five coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

SAMPLE = 0  # the step drawn at a position: plain sampling, a draft's proposal, the bonus step
ACCEPT = 1  # the acceptance test of a proposed step
RESIDUAL = 2  # the step drawn from the residual after a rejection
_MASK = 0xFFFFFFFF


def _mix(x: torch.Tensor) -> torch.Tensor:
    """lowbias32 on int64 tensors holding 32-bit values (products wrap mod 2**64; the low 32 bits are exact)."""
    x = x & _MASK
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & _MASK
    x = x ^ (x >> 15)
    x = (x * 0x846CA68B) & _MASK
    return x ^ (x >> 16)


def _mix_int(x: int) -> int:
    """``_mix`` of one Python int (the same 32-bit arithmetic): constants mixed once, not as tensors."""
    x &= _MASK
    x ^= x >> 16
    x = (x * 0x7FEB352D) & _MASK
    x ^= x >> 15
    x = (x * 0x846CA68B) & _MASK
    return x ^ (x >> 16)


_High = tuple[torch.Tensor, torch.Tensor] | None  # (which columns pass 2**32 [m] bool, their high halves mixed [m])


def _mixed_columns(columns: torch.Tensor) -> tuple[torch.Tensor, _High]:
    """columns [m] long -> (their low halves mixed, the high part or None when every column is below 2**32):
    the columns' share of ``at_columns``, which does not depend on the keys."""
    high = columns >> 32  # columns past 2**32 (residual tries) mix their high half in too; lower ones are unchanged
    past = high != 0
    return _mix((columns & _MASK) + 0x5BD1E995), (past, _mix(high + 0x68E31DA4)) if bool(past.any()) else None


@lru_cache(maxsize=64)
def _column_range(offset: int, count: int, device: str) -> tuple[torch.Tensor, _High]:
    """``_mixed_columns`` of columns offset..offset+count-1, made once for the few (offset, count) a decoder asks
    for step after step."""
    return _mixed_columns(torch.arange(offset, offset + count, dtype=torch.int64, device=device))


def _from_keys(keys: torch.Tensor, low: torch.Tensor, high: _High) -> torch.Tensor:
    h = _mix(keys[..., None] ^ low)
    if high is not None:
        h = torch.where(high[0], _mix(h ^ high[1]), h)
    return (h >> 8).to(torch.float32) * (1.0 / (1 << 24))


def at_columns(keys: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
    """keys [...] int64 (``RowStreams.keys``), columns [m] long (any non-negative, e.g. strided) -> [..., m]
    uniforms: column c of each key."""
    return _from_keys(keys, *_mixed_columns(columns.to(keys.device)))


def column_block(keys: torch.Tensor, count: int, offset: int = 0) -> torch.Tensor:
    """keys [...] -> [..., count] uniforms: columns offset..offset+count-1 (``RowStreams.block`` from kept keys)."""
    return _from_keys(keys, *_column_range(offset, count, str(keys.device)))


@dataclass(frozen=True)
class RowStreams:
    """The random streams of R rows; row r is sample path ``path[r]`` of series key ``key[r]``.

    base: [R, 2] int64, two 32-bit hashes of (seed, key, path) with different salts that every
    uniform of the row starts from: 64 bits, so two rows of a large batch share a stream with
    probability ~R^2 / 2^65, not R^2 / 2^33.
    """

    base: torch.Tensor

    @classmethod
    def for_series(
        cls, seed: int, keys: list[int], rows_per_series: int, device: str | torch.device = "cpu"
    ) -> RowStreams:
        """Rows series-major: ``rows_per_series`` paths (0..S-1) of each key in ``keys`` (64-bit non-negative ints)."""
        for name, value in [("seed", seed), *(("series key", k) for k in keys)]:
            if not 0 <= value < 2**64:
                raise ValueError(f"a {name} must be in [0, 2**64), got {value!r}")
        low = torch.tensor([k & _MASK for k in keys], dtype=torch.int64).repeat_interleave(rows_per_series)
        high = torch.tensor([k >> 32 for k in keys], dtype=torch.int64).repeat_interleave(rows_per_series)
        paths = torch.arange(rows_per_series, dtype=torch.int64).repeat(len(keys))
        lanes = []
        for salt in (0x243F6A88, 0x85A308D3):  # two independent chains
            h = _mix(torch.full_like(low, (seed & _MASK) ^ salt))
            h = _mix(h ^ ((seed >> 32) & _MASK))
            h = _mix(h ^ low)
            h = _mix(h ^ high)
            lanes.append(_mix(h ^ paths))
        return cls(base=torch.stack(lanes, dim=1).to(device))

    def __len__(self) -> int:
        return len(self.base)

    def select(self, rows: torch.Tensor) -> RowStreams:
        return RowStreams(base=self.base[rows.to(self.base.device)])

    def uniforms(self, steps: torch.Tensor, stream: int) -> torch.Tensor:
        """steps [R, n] long (absolute step indices of each row) -> uniforms [R, n] float32 in [0, 1):
        column 0 of ``block``, the number a categorical step is drawn with."""
        return self.block(steps, stream, 1)[..., 0]

    def block(self, steps: torch.Tensor, stream: int, count: int, offset: int = 0) -> torch.Tensor:
        """steps [R, n] -> [R, n, count] uniforms: columns offset..offset+count-1 of each (row, step, stream),
        for heads that need several numbers per step (a patch of values, rejection tries)."""
        return column_block(self.keys(steps, stream), count, offset)

    def columns(self, steps: torch.Tensor, stream: int, columns: torch.Tensor) -> torch.Tensor:
        """steps [R, n], columns [m] long (any non-negative, e.g. strided) -> [R, n, m] uniforms: ``block`` for
        columns that are not one contiguous range (residual tries reading their own stretch of a stream at once)."""
        return at_columns(self.keys(steps, stream), columns)

    def keys(self, steps: torch.Tensor, stream: int) -> torch.Tensor:
        """steps [R, n] -> [R, n] int64: the hash of (row, step, stream) that each of its columns is mixed into
        (``at_columns``). A decoder keeps them for its rows' window steps, so that a draw of many numbers a step
        mixes only its columns."""
        steps = steps.to(self.base.device)
        a = _mix(self.base[:, None, 0] ^ _mix(steps + 0x9E3779B9))
        b = _mix(self.base[:, None, 1] ^ _mix(steps + 0x7F4A7C15))
        h = _mix(a ^ _mix(b ^ 0x1B873593))
        return _mix(h ^ _mix_int(stream + 0x632BE5AB))

    def rand(self, steps: torch.Tensor, stream: int):
        """The ``Rand`` a head draws from at ``steps`` [R, n]: (count, offset) -> [R, n, count]."""
        return lambda count, offset=0: self.block(steps, stream, count, offset)

    def window(self, start: int, n: int, stream: int = SAMPLE) -> torch.Tensor:
        """[R, n] uniforms of steps start..start+n-1 for every row."""
        steps = torch.arange(start, start + n, dtype=torch.int64, device=self.base.device)
        return self.uniforms(steps.expand(len(self), n), stream)


def random_seed() -> int:
    """A fresh seed for an unseeded call (numpy's OS entropy)."""
    return int(np.random.SeedSequence().generate_state(2, dtype=np.uint32).view(np.uint64)[0] >> 1)
