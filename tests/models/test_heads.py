"""Heads sample and score themselves: checked against scipy, with a control that must fail."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from leapcast.engine.streams import SAMPLE, RowStreams
from leapcast.models.heads import Categorical, Point, Quantiles, StudentTMixture
from leapcast.models.sampling import SamplingConfig

N = 20000
SAMPLED = SamplingConfig(num_samples=1, top_k=0)
GREEDY = SamplingConfig(num_samples=1, top_k=1)


def rand_for(rows: int, n: int, seed: int = 0):
    streams = RowStreams.for_series(seed, list(range(rows)), 1)
    return streams.rand(torch.arange(n).expand(rows, n), SAMPLE)


def mixture(rows: int, weights, loc, scale, df, p: int = 1) -> StudentTMixture:
    def full(values):
        return torch.tensor(values, dtype=torch.float32).expand(rows, 1, p, len(values)).clone()

    return StudentTMixture(full(np.log(weights)), full(loc), full(scale), full(df))


def mixture_cdf(x, weights, loc, scale, df):
    return sum(
        w * (stats.norm.cdf(x, m, s) if math.isinf(d) else stats.t.cdf(x, d, m, s))
        for w, m, s, d in zip(weights, loc, scale, df)
    )


CASES = [
    ([0.3, 0.7], [-2.0, 1.0], [0.5, 1.5], [3.0, 8.0]),
    ([1.0], [0.5], [2.0], [math.inf]),  # a Gaussian
    ([0.5, 0.5], [0.0, 0.0], [1.0, 1.0], [1.5, math.inf]),  # heavy tail beside a Gaussian
]


@pytest.mark.parametrize("weights, loc, scale, df", CASES)
def test_student_t_mixture_draws_follow_the_mixture(weights, loc, scale, df):
    head = mixture(N, weights, loc, scale, df)
    x = head.sample(SAMPLED, rand_for(N, 1)).reshape(-1).double().numpy()
    assert stats.kstest(x, lambda v: mixture_cdf(v, weights, loc, scale, df)).pvalue > 1e-3


def test_the_kolmogorov_test_rejects_a_wrong_mixture():
    """Negative control: the same draws against a mixture with other weights."""
    weights, loc, scale, df = CASES[0]
    x = mixture(N, weights, loc, scale, df).sample(SAMPLED, rand_for(N, 1)).reshape(-1).double().numpy()
    assert stats.kstest(x, lambda v: mixture_cdf(v, [0.5, 0.5], loc, scale, df)).pvalue < 1e-3


@pytest.mark.parametrize("weights, loc, scale, df", CASES)
def test_log_prob_is_scipys_over_the_whole_patch(weights, loc, scale, df):
    head = mixture(3, weights, loc, scale, df, p=4)
    x = torch.linspace(-4, 4, 12).view(3, 1, 4)

    def pdf(v):
        return sum(
            w * (stats.norm.pdf(v, m, s) if math.isinf(d) else stats.t.pdf(v, d, m, s))
            for w, m, s, d in zip(weights, loc, scale, df)
        )

    expected = np.log(pdf(x.double().numpy())).sum(axis=-1)  # [3, 1]
    np.testing.assert_allclose(head.log_prob(x).double().numpy(), expected, rtol=1e-5)


def test_greedy_is_the_mean_and_draws_depend_only_on_their_numbers():
    head = mixture(2, [0.3, 0.7], [-2.0, 1.0], [0.5, 1.5], [3.0, 8.0], p=4)
    assert torch.allclose(head.sample(GREEDY, rand_for(2, 1)), torch.full((2, 1, 4), 0.3 * -2.0 + 0.7 * 1.0))
    a = head.sample(SAMPLED, rand_for(2, 1, seed=5))
    assert torch.equal(a, head.sample(SAMPLED, rand_for(2, 1, seed=5)))
    assert not torch.equal(a, head.sample(SAMPLED, rand_for(2, 1, seed=6)))


def test_gaussian_is_a_one_component_mixture():
    g = StudentTMixture.gaussian(torch.zeros(1, 1, 2), torch.ones(1, 1, 2))
    x = torch.tensor([[[0.0, 1.0]]])
    assert torch.allclose(
        g.log_prob(x).float(), torch.tensor([[stats.norm.logpdf(0.0) + stats.norm.logpdf(1.0)]], dtype=torch.float32)
    )


def test_categorical_head_draws_as_the_sampler_and_point_returns_its_values():
    logits = torch.randn(3, 2, 16, generator=torch.Generator().manual_seed(0))
    head = Categorical(logits, banned=(1,))
    steps = head.sample(SamplingConfig(top_k=5), rand_for(3, 2))
    assert steps.shape == (3, 2) and (steps != 1).all()
    assert torch.isfinite(head.log_prob(steps, SamplingConfig(top_k=5))).all()
    assert torch.equal(head.sample(GREEDY, rand_for(3, 2)), logits.masked_fill(torch.arange(16) == 1, -1e9).argmax(-1))
    values = torch.randn(3, 2, 4)
    assert torch.equal(Point(values).sample(SAMPLED, rand_for(3, 2)), values) and torch.equal(
        Point(values).mean(), values
    )


def test_quantile_heads_decode_their_point_and_read_their_levels():
    point, q = torch.randn(2, 1, 4), torch.randn(2, 1, 4, 3).sort(dim=-1).values
    head = Quantiles(point, q, (0.1, 0.5, 0.9))
    assert torch.equal(head.sample(SAMPLED, rand_for(2, 1)), point) and torch.equal(head.mean(), point)
    assert torch.equal(head.quantile(0.9), q[..., 2])
    with pytest.raises(ValueError, match="`level` 0.3 is not one of"):
        head.quantile(0.3)


def test_huge_degrees_of_freedom_draw_as_a_gaussian():
    x = mixture(N, [1.0], [0.0], [1.0], [1e8]).sample(SAMPLED, rand_for(N, 1)).reshape(-1).double().numpy()
    assert (x != 0).all() and stats.kstest(x, "norm").pvalue > 1e-3


def test_greedy_sorted_draws_take_the_argmax_even_on_ties():
    from leapcast.models.sampling import sample, sorted_probabilities

    logits = torch.tensor([[0.0, 3.0, 3.0, 1.0]])
    probs, steps = sorted_probabilities(logits, GREEDY)
    assert probs.tolist() == [[1.0]] and steps.tolist() == [[int(sample(logits, GREEDY, torch.tensor([0.7])))]]
