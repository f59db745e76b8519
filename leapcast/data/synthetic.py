"""Synthetic training series: KernelSynth and TSMixup (Ansari et al. 2024, "Chronos", arXiv 2403.07815, appendix).

KernelSynth (their Algorithm 2): draw ``j ~ U{1, J}`` kernels from a bank (periodic,
linear, RBF, rational quadratic, white noise, constant; see ``kernels.py``), fold
them with a random ``+`` or ``*``, and draw one path of length ``T`` from
``GP(0, K)``.

Cost per series of length T: the Gram matrix is one gather of T^2 values (plus T^2
multiply-adds per non-stationary Linear factor), and the sample is a Cholesky
factorisation (T^3 / 3 flops, torch's LAPACK) and one matrix-vector product. At
T = 1024 that is an 8 MB matrix and some 0.4 GFLOP: 25-60 ms per series on one or
two busy CPU cores (T = 256: a few ms). Memory grows as T^2 and time as T^3, so
keep T around 1024 or below; for many series run several processes with
different seeds.

TSMixup (their Algorithm 1): draw ``k ~ U{1, k_max}`` series and a length
``l ~ U{lo, hi}``, take a random crop of length ``l`` from each, divide each crop by
its mean absolute value, and mix them with weights ``~ Dirichlet(alpha, ..., alpha)``.

Both generators take a ``seed`` and are deterministic for it; series ``i`` uses
the ``i``-th child of ``np.random.SeedSequence(seed)``, so the first ``n`` series
do not depend on how many are asked for.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from leapcast.checks import check_int
from leapcast.data.kernels import KERNEL_BANK, Kernel, random_kernel

JITTERS = (1e-10, 1e-8, 1e-6, 1e-4)  # tried in turn, relative to the mean diagonal of K


def _rngs(seed: int, count: int) -> list[np.random.Generator]:
    return [np.random.default_rng(child) for child in np.random.SeedSequence(seed).spawn(count)]


def _ids(prefix: str, count: int) -> np.ndarray:
    width = len(str(max(count - 1, 0)))
    return np.array([f"{prefix}-{i:0{width}d}" for i in range(count)], dtype=object)


def _sqrt_cov(cov: np.ndarray) -> np.ndarray:
    """A factor ``L`` with ``L @ L.T ~= cov``, ``[T, T]``: Cholesky with growing jitter, else eigh.

    torch's LAPACK is used rather than NumPy's: NumPy's bundled OpenBLAS Cholesky
    slows down by orders of magnitude on a busy machine with few cores.
    """
    matrix = torch.from_numpy(np.ascontiguousarray(cov, dtype=np.float64))  # [T, T]
    scale = max(float(matrix.diagonal().mean()), 1e-12)
    eye = torch.eye(len(cov), dtype=torch.float64)
    for jitter in JITTERS:
        factor, info = torch.linalg.cholesky_ex(matrix + jitter * scale * eye)
        if int(info) == 0:
            return factor.numpy()
    values, vectors = torch.linalg.eigh(matrix)  # symmetric PSD up to rounding
    return (vectors * values.clamp(min=0.0).sqrt()).numpy()


def sample_gp(kernel: Kernel, length: int, rng: np.random.Generator) -> np.ndarray:
    """One path ``[length]`` from ``GP(0, kernel)`` on steps ``0..length-1``."""
    factor = _sqrt_cov(kernel.gram(length))  # [T, T]
    return factor @ rng.standard_normal(length)  # [T]


def kernel_synth(
    n_series: int,
    length: int = 1024,
    seed: int = 0,
    *,
    max_kernels: int = 5,
    kernel: Kernel | None = None,
    bank: Sequence[Kernel] = KERNEL_BANK,
) -> pd.DataFrame:
    """KernelSynth series as a long frame ``[n_series * length, 3]``.

    ``unique_id`` "ks-0", "ks-1", ... (zero-padded), integer ``ds`` 0..length-1, float64 ``y``.

    max_kernels: J, the most bank kernels combined per series (Chronos: 5).
    kernel: use this kernel for every series instead of random draws (tests, ablations).
    bank: the kernels to draw from.
    """
    check_int(n_series, "n_series", must=">= 1")
    check_int(length, "length", must=">= 1")
    bank = tuple(bank)
    paths = []
    for rng in _rngs(seed, n_series):
        chosen = kernel if kernel is not None else random_kernel(rng, max_kernels, bank)
        paths.append(sample_gp(chosen, length, rng))
    return pd.DataFrame(
        {
            "unique_id": np.repeat(_ids("ks", n_series), length),
            "ds": np.tile(np.arange(length, dtype=np.int64), n_series),
            "y": np.concatenate(paths),
        }
    )


@dataclass(frozen=True, eq=False)
class Mixture:
    """One TSMixup series and how it was made.

    values: ``[l]`` the mixed series, ``sum_i weights[i] * crop_i / scales[i]``.
    sources: ``[k]`` indices of the input series; starts: ``[k]`` first step of each crop.
    weights: ``[k]`` Dirichlet weights (>= 0, sum 1); scales: ``[k]`` mean |crop_i| (1 where that is 0 or NaN).
    """

    values: np.ndarray
    sources: np.ndarray
    starts: np.ndarray
    weights: np.ndarray
    scales: np.ndarray


def _check_mixup(n_series, length_range, k_max, alpha):
    check_int(n_series, "n_series", must=">= 1")
    lo, hi = length_range
    if not 1 <= lo <= hi:
        raise ValueError(f"`length_range` must be (lo, hi) with 1 <= lo <= hi, got {tuple(length_range)}")
    check_int(k_max, "k_max", must=">= 1")
    if alpha <= 0:
        raise ValueError(f"`alpha` must be > 0, got {alpha}")
    return int(lo), int(hi)


def mixup_arrays(
    series: Sequence[np.ndarray],
    n_series: int,
    length_range: tuple[int, int] = (128, 2048),
    k_max: int = 3,
    alpha: float = 1.5,
    seed: int = 0,
) -> list[Mixture]:
    """TSMixup over a list of 1-D arrays ``[T_i]``; returns ``n_series`` mixtures.

    Lengths are drawn from ``length_range`` capped at the longest input; each crop comes
    from a series at least that long (ValueError if the longest is shorter than ``lo``).
    """
    lo, hi = _check_mixup(n_series, length_range, k_max, alpha)
    arrays = [np.asarray(s, dtype=np.float64) for s in series]
    lengths = np.array([len(a) for a in arrays])
    if len(arrays) == 0 or lengths.max() < lo:
        longest = int(lengths.max()) if len(arrays) else 0
        raise ValueError(f"`length_range` starts at {lo} but the longest input series has {longest} steps")
    hi = min(hi, int(lengths.max()))
    out = []
    for rng in _rngs(seed, n_series):
        k = int(rng.integers(1, k_max + 1))
        size = int(rng.integers(lo, hi + 1))
        eligible = np.flatnonzero(lengths >= size)
        sources = rng.choice(eligible, size=k, replace=True)
        starts = np.array([rng.integers(0, lengths[s] - size + 1) for s in sources])
        crops = np.stack([arrays[s][a : a + size] for s, a in zip(sources, starts)])  # [k, l]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN crop: scale 1 below
            scales = np.nanmean(np.abs(crops), axis=1)  # [k]
        scales = np.where(np.isfinite(scales) & (scales > 0), scales, 1.0)
        weights = rng.dirichlet(np.full(k, alpha))  # [k]
        values = (weights / scales) @ crops  # [l]
        out.append(Mixture(values, sources, starts, weights, scales))
    return out


def ts_mixup(
    df: pd.DataFrame,
    n_series: int,
    length_range: tuple[int, int] = (128, 2048),
    k_max: int = 3,
    alpha: float = 1.5,
    seed: int = 0,
    *,
    id_col: str = "unique_id",
    time_col: str = "ds",
    target_col: str = "y",
) -> pd.DataFrame:
    """TSMixup of the series of a long frame; returns ``[sum l_i, 3]`` with ids "mix-0..", integer ``ds`` 0..l_i-1.

    Input series are taken in ``(id, ds)`` order; NaN values stay NaN in every mixture that uses them.
    Output columns carry the input's column names. See :func:`mixup_arrays` for the arrays and weights.
    """
    ordered = df.sort_values([id_col, time_col], kind="stable")
    counts = ordered.groupby(id_col, sort=False, dropna=False).size().to_numpy()  # null ids: a series, not dropped
    values = ordered[target_col].to_numpy(dtype=np.float64)
    series = np.split(values, np.cumsum(counts)[:-1])
    mixtures = mixup_arrays(series, n_series, length_range, k_max, alpha, seed)
    sizes = [len(m.values) for m in mixtures]
    return pd.DataFrame(
        {
            id_col: np.repeat(_ids("mix", n_series), sizes),
            time_col: np.concatenate([np.arange(s, dtype=np.int64) for s in sizes]),
            target_col: np.concatenate([m.values for m in mixtures]),
        }
    )
