"""Warping against transformers' logits processors; the inverse-CDF draw against its definition."""

import numpy as np
import pytest
import torch
from scipy.stats import chisquare

from leapcast.engine.sampling import SamplingConfig, draw, probabilities, sample, warp
from leapcast.engine.streams import ACCEPT, RESIDUAL, SAMPLE, RowStreams, at_columns, column_block


def hf_warp(logits, temperature, top_k, top_p, eos):
    tf = pytest.importorskip("transformers.generation.logits_process")
    procs = tf.LogitsProcessorList([tf.MinNewTokensLengthLogitsProcessor(1, 64, eos, device="cpu")])
    if temperature != 1.0:
        procs.append(tf.TemperatureLogitsWarper(temperature))
    if top_k:
        procs.append(tf.TopKLogitsWarper(top_k))
    if top_p < 1.0:
        procs.append(tf.TopPLogitsWarper(top_p))
    return procs(torch.zeros(logits.shape[0], 1, dtype=torch.long), logits.clone())


@pytest.mark.oracle
@pytest.mark.parametrize(
    "temperature, top_k, top_p", [(1.0, 50, 1.0), (0.7, 50, 0.9), (1.5, None, 0.5), (1.0, 3, 1.0), (2.0, 1, 1.0)]
)
def test_warp_equals_transformers(temperature, top_k, top_p):
    logits = torch.randn(16, 300, generator=torch.Generator().manual_seed(0)) * 3
    logits[0, 5] = logits[0, 6] = logits[0].max() + 1  # a tie at the top
    cfg = SamplingConfig(temperature=temperature, top_k=top_k, top_p=top_p)
    expected = hf_warp(logits, temperature, top_k, top_p, eos=1)
    got = warp(logits, cfg, banned=(1,))
    assert torch.equal(torch.isinf(got), torch.isinf(expected))
    assert torch.allclose(got[~torch.isinf(got)], expected[~torch.isinf(expected)])


def test_draw_reproduces_the_distribution_and_never_draws_zero_mass():
    probs = torch.tensor([[0.0, 0.5, 0.0, 0.2, 0.3, 0.0]]).repeat(40000, 1)
    u = torch.rand(40000, generator=torch.Generator().manual_seed(0))
    steps = draw(probs, u)
    counts = np.bincount(steps.numpy(), minlength=6)
    assert counts[[0, 2, 5]].sum() == 0
    assert chisquare(counts[[1, 3, 4]], f_exp=np.array([0.5, 0.2, 0.3]) * 40000).pvalue > 1e-3


def test_draw_edges_of_the_unit_interval():
    probs = torch.tensor([[0.0, 0.25, 0.75, 0.0]] * 3)
    u = torch.tensor([0.0, 0.25 - 1e-7, np.nextafter(np.float32(1), np.float32(0))])
    assert draw(probs, u).tolist() == [1, 1, 2]


def test_greedy_is_argmax_without_banned_tokens():
    logits = torch.randn(8, 50)
    logits[:, 1] = 100.0  # EOS would win, but is banned
    steps = sample(logits, SamplingConfig(top_k=1), torch.rand(8), banned=(1,))
    masked = logits.clone()
    masked[:, 1] = -float("inf")
    assert torch.equal(steps, masked.argmax(-1))


def test_probabilities_sum_to_one_over_the_kept_set():
    p = probabilities(torch.randn(4, 100), SamplingConfig(top_k=10, top_p=0.7), banned=(1,))
    assert torch.allclose(p.sum(-1), torch.ones(4))
    assert ((p > 0).sum(-1) <= 10).all() and (p[:, 1] == 0).all()


def test_streams_depend_on_seed_key_path_step_and_stream_only():
    a = RowStreams.for_series(7, [0, 1, 2], 4).window(0, 5)  # [12, 5]
    b = RowStreams.for_series(7, [2], 2).window(0, 5)  # fewer paths, alone
    c = RowStreams.for_series(8, [2], 4).window(0, 5)
    assert a.shape == (12, 5) and a.dtype == torch.float32
    assert torch.equal(a[8:10], b) and not torch.equal(a[8:12], c)
    assert not torch.equal(a[0], a[1]) and not torch.equal(a[0], a[4])  # other path, other key
    later = RowStreams.for_series(7, [2], 4).window(3, 2)
    assert torch.equal(later, a[8:12, 3:5])  # a step's number does not depend on where the window starts
    accept = RowStreams.for_series(7, [0, 1, 2], 4).window(0, 5, stream=ACCEPT)
    assert not torch.equal(accept, a)
    big = RowStreams.for_series(2**64 - 1, [2**64 - 1, 2**63], 1).window(0, 3)
    assert not torch.equal(big[0], big[1])


def test_stream_numbers_are_pinned_and_kept_keys_give_the_same():
    """A seeded forecast's numbers never change by accident (values from the hash as first written), and a
    decoder's kept keys (``RowStreams.keys``, then ``column_block`` / ``at_columns``) give what ``block`` and
    ``columns`` give, strided residual columns past 2**32 included."""
    s = RowStreams.for_series(7, [3, 2**40 + 1], 2)
    steps = torch.tensor([[0, 5]]).expand(4, 2)
    pinned = [
        [0.6258105635643005, 0.3248567581176758, 0.2128380537033081],
        [0.1743888258934021, 0.923008918762207, 0.9064680337905884],
        [0.7891077995300293, 0.8590821623802185, 0.8225806951522827],
        [0.9802311062812805, 0.9729540348052979, 0.985204815864563],
    ]
    assert torch.equal(s.block(steps, SAMPLE, 3, 1)[:, 1], torch.tensor(pinned))
    columns = torch.tensor([2**24, 2**32 + 3])
    residual = [[0.13780081272125244, 0.5833008885383606], [0.3807142376899719, 0.4046763777732849]]
    assert torch.equal(s.columns(steps[:, :1] + 9, RESIDUAL, columns)[:2, 0], torch.tensor(residual))
    for stream in (SAMPLE, ACCEPT, RESIDUAL):
        keys = s.keys(steps, stream)  # [4, 2] int64
        assert torch.equal(column_block(keys, 36, 4), s.block(steps, stream, 36, 4))
        assert torch.equal(at_columns(keys, columns), s.columns(steps, stream, columns))
        assert torch.equal(column_block(keys, 1)[..., 0], s.uniforms(steps, stream))


def test_stream_uniforms_are_uniform():
    from scipy.stats import kstest

    u = RowStreams.for_series(0, list(range(50)), 20).window(0, 64).reshape(-1).double().numpy()  # 64,000 numbers
    assert 0 <= u.min() and u.max() < 1
    assert kstest(u, "uniform").pvalue > 1e-3
    pairs = np.corrcoef(u[:-1], u[1:])[0, 1]
    assert abs(pairs) < 0.02


@pytest.mark.parametrize(
    "field, value",
    [("num_samples", 0), ("temperature", 0.0), ("top_k", -1), ("top_p", 0.0), ("top_p", 1.5), ("seed", -1)],
)
def test_sampling_config_names_bad_fields(field, value):
    with pytest.raises(ValueError, match=f"`{field}`.*{value}"):
        SamplingConfig(**{field: value})


@pytest.mark.parametrize("temperature, top_k, top_p", [(1.0, 50, 1.0), (0.7, 20, 0.8), (1.3, None, 0.9)])
def test_sorted_probabilities_match_the_full_distribution(temperature, top_k, top_p):
    from leapcast.engine.sampling import sorted_probabilities

    logits = torch.randn(32, 500, generator=torch.Generator().manual_seed(1)) * 2
    cfg = SamplingConfig(temperature=temperature, top_k=top_k, top_p=top_p)
    full = probabilities(logits, cfg, banned=(1,))
    probs, steps = sorted_probabilities(logits, cfg, banned=(1,))
    rebuilt = torch.zeros_like(full).scatter_add_(1, steps, probs)
    assert torch.allclose(rebuilt, full, atol=1e-6)
    assert (probs[:, :-1] >= probs[:, 1:]).all()


def test_sorted_probabilities_keep_ties_at_the_kth_value():
    from leapcast.engine.sampling import sorted_probabilities

    logits = torch.tensor([[5.0, 3.0, 3.0, 1.0]])
    probs, steps = sorted_probabilities(logits, SamplingConfig(top_k=2))
    kept = set(steps[0][probs[0] > 0].tolist())
    assert kept == {0, 1, 2}  # transformers keeps every token tied with the k-th
