"""Heads: the distribution a model gives for its next step, as objects the engine samples and scores.

A model's ``step`` returns one head for a batch of positions ``[R, n]``; the
engine and the verifiers talk to the head, never to logits or mixture
parameters. Each head draws from the numbers it is handed (``Rand``: counter-
based uniforms from ``leapcast.engine.streams``, so a draw is a function of
(seed, series, path, step) and nothing else), gives log-densities or
probabilities where they are defined, and its mean.

- ``Categorical``: one token per step over a vocabulary (Chronos-T5's bins);
  warped by temperature, top-k and top-p, drawn by inverse CDF.
- ``StudentTMixture``: a patch of P values per step, each value a mixture of
  Student-T components (Toto's output); ``gaussian`` is its special case
  (one component, infinite degrees of freedom).
- ``Point``: a patch of P values with no distribution (point heads); sampling
  returns the values. ``Quantiles``: a point patch with quantiles beside it
  (TimesFM); decoding follows the point.

Greedy decoding (``top_k=1``) takes a categorical head's most likely token and
a continuous head's mean: the deterministic forecast of each.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from leapcast.models.sampling import SamplingConfig, sample, sorted_probabilities

# rand(count, offset) -> [R, n, count] uniforms in [0, 1), independent columns; offset starts a fresh block
Rand = Callable[[int, int], torch.Tensor]
BAILEY_BLOCK = 4  # tries per value per block of the polar method; a value left undecided takes another block


@dataclass(frozen=True)
class Categorical:
    """logits [R, n, V]; ``banned`` tokens are never drawn. Steps are token ids [R, n] long."""

    logits: torch.Tensor
    banned: tuple[int, ...] = ()

    @property
    def vocab_size(self) -> int:
        return self.logits.shape[-1]

    def pick(self, index: torch.Tensor) -> Categorical:
        """One position per row: index [R] long into n -> a head [R, 1]."""
        return Categorical(
            self.logits[torch.arange(len(index), device=self.logits.device), index.to(self.logits.device)][:, None],
            self.banned,
        )

    def sorted(self, sampling: SamplingConfig) -> tuple[torch.Tensor, torch.Tensor]:
        """The warped distribution over its candidate steps, most likely first, in the order every draw
        uses: (probs [R, n, K], steps [R, n, K]); K = top_k unless ties make it V."""
        r, n, v = self.logits.shape
        probs, steps = sorted_probabilities(self.logits.reshape(r * n, v), sampling, self.banned)
        return probs.view(r, n, -1), steps.view(r, n, -1)

    def probs(self, sampling: SamplingConfig, ordered: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """The warped distribution steps are drawn from: [R, n, V] float32 (from ``ordered``, ``sorted``'s
        result, when the caller has it)."""
        probs, steps = ordered if ordered is not None else self.sorted(sampling)
        return probs.new_zeros(self.logits.shape).scatter_(-1, steps, probs)

    def sample(self, sampling: SamplingConfig, rand: Rand) -> torch.Tensor:
        r, n, v = self.logits.shape
        u = rand(1, 0)[..., 0].reshape(r * n)
        return sample(self.logits.reshape(r * n, v), sampling, u, self.banned).view(r, n)

    def log_prob(self, steps: torch.Tensor, sampling: SamplingConfig) -> torch.Tensor:
        """steps [R, n] long -> log-probabilities [R, n] under the warped distribution."""
        return self.probs(sampling).gather(-1, steps[..., None]).squeeze(-1).log()


@dataclass(frozen=True)
class StudentTMixture:
    """A mixture of Student-T components per value: every parameter [R, n, P, C].

    weights: mixture logits; loc, scale (> 0), df (> 0, ``inf`` for a Gaussian).
    Steps are patches of values [R, n, P] float32.
    """

    weights: torch.Tensor
    loc: torch.Tensor
    scale: torch.Tensor
    df: torch.Tensor

    @classmethod
    def gaussian(cls, loc: torch.Tensor, scale: torch.Tensor) -> StudentTMixture:
        """loc, scale [R, n, P] -> one Gaussian component per value."""
        loc, scale = loc[..., None], scale[..., None]
        return cls(torch.zeros_like(loc), loc, scale, torch.full_like(loc, math.inf))

    @property
    def patch_size(self) -> int:
        return self.loc.shape[2]

    def _map(self, fn) -> StudentTMixture:
        return StudentTMixture(fn(self.weights), fn(self.loc), fn(self.scale), fn(self.df))

    def rows(self, index: torch.Tensor) -> StudentTMixture:
        """The heads of rows ``index`` [R'] -> [R', n]."""
        return self._map(lambda t: t[index.to(t.device)])

    def slice(self, start: int, stop: int) -> StudentTMixture:
        """Positions start..stop-1 of every row -> [R, stop - start]."""
        return self._map(lambda t: t[:, start:stop])

    def pick(self, index: torch.Tensor) -> StudentTMixture:
        """One position per row: index [R] long into n -> a head [R, 1]."""
        rows = torch.arange(len(index), device=self.loc.device)
        return self._map(lambda t: t[rows, index.to(t.device)][:, None])

    def repeat(self, n: int) -> StudentTMixture:
        """[R, 1] -> [R, n]: the one position's head n times (independent draws read other numbers)."""
        return self._map(lambda t: t.expand(-1, n, *t.shape[2:]))

    @staticmethod
    def cat(heads: list[StudentTMixture]) -> StudentTMixture:
        """Heads [R, n_i] side by side along positions -> [R, sum n_i]."""
        return StudentTMixture(
            *(torch.cat([getattr(h, f) for h in heads], dim=1) for f in ("weights", "loc", "scale", "df"))
        )

    def mean(self) -> torch.Tensor:
        """[R, n, P]: the mixture mean (components with df <= 1 have none; their location stands in)."""
        return (self.weights.softmax(dim=-1) * self.loc).sum(dim=-1)

    def log_prob(self, values: torch.Tensor) -> torch.Tensor:
        """values [R, n, P] -> log-density of each whole patch [R, n] (the sum over its values), float64: a
        speculative acceptance compares two such sums over thousands of values, and lgamma of a large df
        loses 1e-4 in float32."""
        return self.value_log_prob(values).sum(dim=-1)

    def value_log_prob(self, values: torch.Tensor) -> torch.Tensor:
        """values [..., P] -> the log-density of each value [..., P], float64 (differentiable: the training loss)."""
        x = values.double()[..., None]  # [..., P, 1]
        loc, scale, df = self.loc.double(), self.scale.double(), self.df.double()
        z = (x - loc) / scale
        finite = torch.isfinite(df)
        nu = torch.where(finite, df, torch.ones_like(df))  # placeholder where Gaussian
        student = (
            torch.lgamma((nu + 1) / 2)
            - torch.lgamma(nu / 2)
            - 0.5 * torch.log(nu * math.pi)
            - (nu + 1) / 2 * torch.log1p(z * z / nu)
        )
        normal = -0.5 * z * z - 0.5 * math.log(2 * math.pi)
        per_component = torch.where(finite, student, normal) - torch.log(scale)
        return torch.logsumexp(self.weights.double().log_softmax(dim=-1) + per_component, dim=-1)

    def sample(self, sampling: SamplingConfig, rand: Rand) -> torch.Tensor:
        """[R, n, P] values: a component by inverse CDF, then a Student-T draw by Bailey's polar method
        (Bailey 1994; Marsaglia's polar method for Gaussians), which needs no inverse CDF. Greedy: the mean."""
        if sampling.greedy:
            return self.mean()
        p = self.patch_size
        numbers = rand(p + 2 * p * BAILEY_BLOCK, 0)  # columns 0..P-1 pick components, the rest the first block of tries
        cdf = self.weights.float().softmax(dim=-1).cumsum(dim=-1)  # [R, n, P, C]
        u = numbers[..., :p, None] * cdf[..., -1:]
        component = torch.searchsorted(cdf, u.contiguous(), right=True).clamp_(max=cdf.shape[-1] - 1)  # [R, n, P, 1]
        loc, scale, df = (t.gather(-1, component).squeeze(-1).float() for t in (self.loc, self.scale, self.df))
        return loc + scale * _student_t(df, rand, offset=p, first_block=numbers[..., p:])


def _student_t(df: torch.Tensor, rand: Rand, offset: int, first_block: torch.Tensor | None = None) -> torch.Tensor:
    """Standard Student-T draws with ``df`` [R, n, P] degrees of freedom (inf: standard normal).

    Bailey's polar method: (U, V) uniform on the square [-1, 1]^2 until W = U^2 + V^2 lies in (0, 1),
    then T = U * sqrt(df (W^(-2/df) - 1) / W). Tries come in blocks of ``BAILEY_BLOCK`` per value from
    fresh columns of ``rand`` (the first block may come drawn already, ``first_block``: the same columns); a value
    whose tries all miss (probability 0.215^4 per block) takes the next block.
    """
    shape = df.shape
    p = shape[-1]
    out = torch.empty(shape, dtype=torch.float32, device=df.device)
    todo = torch.ones(shape, dtype=torch.bool, device=df.device)
    block = 0
    while bool(todo.any()):
        fresh = (
            first_block
            if block == 0 and first_block is not None
            else rand(2 * p * BAILEY_BLOCK, offset + block * 2 * p * BAILEY_BLOCK)
        )
        uv = fresh.reshape(*shape, BAILEY_BLOCK, 2) * 2 - 1
        w = (uv * uv).sum(dim=-1)  # [R, n, P, B]
        ok = (w > 0) & (w < 1)
        first = ok.float().argmax(dim=-1, keepdim=True)  # the first try that landed
        found = ok.any(dim=-1) & todo
        w1, u1 = w.gather(-1, first).squeeze(-1), uv[..., 0].gather(-1, first).squeeze(-1)
        gaussian = -2 * torch.log(w1) / w1
        student = (
            df * torch.expm1(-2 / df * torch.log(w1)) / w1
        )  # expm1: exact for large df, where pow(w, -2/df) - 1 cancels
        t = u1 * torch.sqrt(torch.where(torch.isfinite(df), student, gaussian))
        out = torch.where(found, t, out)
        todo &= ~found
        block += 1
    return out


@dataclass(frozen=True)
class Point:
    """values [R, n, P]: a point head (no distribution); sampling and the mean return the values."""

    values: torch.Tensor

    def mean(self) -> torch.Tensor:
        return self.values

    def sample(self, sampling: SamplingConfig, rand: Rand) -> torch.Tensor:
        return self.values


@dataclass(frozen=True)
class Quantiles:
    """A point patch with quantiles beside it (TimesFM): point [R, n, P], quantiles [R, n, P, Q] at ``levels``.

    Decoding follows the point (as TimesFM rolls its point forecast out); the quantiles are read, not sampled.
    """

    point: torch.Tensor
    quantiles: torch.Tensor
    levels: tuple[float, ...]

    def mean(self) -> torch.Tensor:
        return self.point

    def sample(self, sampling: SamplingConfig, rand: Rand) -> torch.Tensor:
        return self.point

    def quantile(self, level: float) -> torch.Tensor:
        """[R, n, P] at one of ``levels``."""
        if level not in self.levels:
            raise ValueError(f"`level` {level!r} is not one of this head's levels {self.levels}")
        return self.quantiles[..., self.levels.index(level)]
