"""Gaussian-process kernels for KernelSynth, on the step grid ``t = 0, ..., length - 1``.

The kernels follow scikit-learn's definitions (the Chronos reference script builds
its bank from them), written in NumPy so that no sklearn is needed. As in Chronos,
time runs over ``x = t / length`` in ``[0, 1)``: length scales of RBF and
RationalQuadratic and the Linear kernel see that unit interval, whereas a
Periodic kernel's ``period`` is counted in steps (Chronos writes it as
``periodicity = period / LENGTH``).

Kernels compose with ``+`` and ``*``. ``gram(length)`` returns the ``[length, length]``
covariance. Stationary kernels (all but Linear) are functions of the lag
``|i - j|`` only: they evaluate ``length`` values (``profile``) and spread them into
the Toeplitz matrix with one gather, so a sum or product of stationary kernels
costs O(length) transcendental calls plus one O(length^2) gather.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from leapcast.checks import check_int


@lru_cache(maxsize=4)
def _lags(length: int) -> np.ndarray:
    """``[length, length]`` matrix of ``|i - j|`` (read-only, cached)."""
    steps = np.arange(length)
    lags = np.abs(steps[:, None] - steps[None, :])
    lags.setflags(write=False)
    return lags


class Kernel:
    """A covariance function on the step grid of a series of ``length`` steps."""

    stationary = True

    def profile(self, length: int) -> np.ndarray:
        """``[length]``: the covariance at lag 0, 1, ..., length - 1 (stationary kernels only)."""
        raise NotImplementedError

    def gram(self, length: int) -> np.ndarray:
        """``[length, length]`` covariance matrix."""
        return self.profile(length)[_lags(length)]

    def __add__(self, other: Kernel) -> Kernel:
        return Sum(self, other)

    def __mul__(self, other: Kernel) -> Kernel:
        return Product(self, other)


@dataclass(frozen=True)
class Periodic(Kernel):
    """ExpSineSquared: ``exp(-2 sin^2(pi lag / period) / length_scale^2)``, ``period`` in steps."""

    period: float
    length_scale: float = 1.0

    def __post_init__(self):
        if self.period <= 0 or self.length_scale <= 0:
            raise ValueError(f"`period` and `length_scale` must be > 0, got {self.period}, {self.length_scale}")

    def profile(self, length):
        lag = np.arange(length)
        return np.exp(-2.0 * np.sin(np.pi * lag / self.period) ** 2 / self.length_scale**2)


@dataclass(frozen=True)
class RBF(Kernel):
    """``exp(-(lag / length)^2 / (2 length_scale^2))``: smooth variation."""

    length_scale: float = 1.0

    def profile(self, length):
        lag = np.arange(length) / length
        return np.exp(-0.5 * (lag / self.length_scale) ** 2)


@dataclass(frozen=True)
class RationalQuadratic(Kernel):
    """``(1 + (lag / length)^2 / (2 alpha length_scale^2))^(-alpha)``: a mixture of RBF scales."""

    alpha: float = 1.0
    length_scale: float = 1.0

    def profile(self, length):
        lag = np.arange(length) / length
        return (1.0 + lag**2 / (2.0 * self.alpha * self.length_scale**2)) ** -self.alpha


@dataclass(frozen=True)
class White(Kernel):
    """``noise_level`` on the diagonal: independent noise."""

    noise_level: float = 1.0

    def profile(self, length):
        out = np.zeros(length)
        out[0] = self.noise_level
        return out


@dataclass(frozen=True)
class Constant(Kernel):
    """``value`` everywhere: a random level."""

    value: float = 1.0

    def profile(self, length):
        return np.full(length, float(self.value))


@dataclass(frozen=True)
class Linear(Kernel):
    """DotProduct: ``sigma_0^2 + x_i x_j`` with ``x = t / length``: a random linear trend."""

    sigma_0: float = 1.0
    stationary = False

    def gram(self, length):
        x = np.arange(length) / length
        return self.sigma_0**2 + np.outer(x, x)


@dataclass(frozen=True)
class Sum(Kernel):
    left: Kernel
    right: Kernel

    @property
    def stationary(self):
        return self.left.stationary and self.right.stationary

    def profile(self, length):
        return self.left.profile(length) + self.right.profile(length)

    def gram(self, length):
        if self.stationary:
            return super().gram(length)
        return self.left.gram(length) + self.right.gram(length)


@dataclass(frozen=True)
class Product(Kernel):
    left: Kernel
    right: Kernel

    @property
    def stationary(self):
        return self.left.stationary and self.right.stationary

    def profile(self, length):
        return self.left.profile(length) * self.right.profile(length)

    def gram(self, length):
        if self.stationary:
            return super().gram(length)
        return self.left.gram(length) * self.right.gram(length)


# The Chronos KernelSynth bank (Ansari et al. 2024, appendix; scripts/kernel-synth.py):
# periods for hourly (24, 48, 96 and the weekly 168, 336, 672), daily (7, 14, 30, 60, 365, 730),
# weekly (4, 26, 52), monthly (4, 6, 12), quarterly (4, 40) and yearly (10) data.
PERIODS = (24, 48, 96, 168, 336, 672, 7, 14, 30, 60, 365, 730, 4, 26, 52, 4, 6, 12, 4, 40, 10)
KERNEL_BANK: tuple[Kernel, ...] = (
    *(Periodic(p) for p in PERIODS),
    Linear(0.0),
    Linear(1.0),
    Linear(10.0),
    RBF(0.1),
    RBF(1.0),
    RBF(10.0),
    RationalQuadratic(0.1),
    RationalQuadratic(1.0),
    RationalQuadratic(10.0),
    White(0.1),
    White(1.0),
    Constant(1.0),
)


def random_kernel(rng: np.random.Generator, max_kernels: int = 5, bank: tuple[Kernel, ...] = KERNEL_BANK) -> Kernel:
    """Draw ``j ~ U{1, max_kernels}`` kernels from ``bank`` (with replacement), fold them with random + or *."""
    check_int(max_kernels, "max_kernels", must=">= 1")
    count = int(rng.integers(1, max_kernels + 1))
    picks = rng.integers(0, len(bank), size=count)
    kernel = bank[picks[0]]
    for pick in picks[1:]:
        kernel = kernel + bank[pick] if rng.random() < 0.5 else kernel * bank[pick]
    return kernel
