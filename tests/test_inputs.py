"""Array inputs of ``Forecaster.predict``: accepted layouts, errors that name the culprit, documented handling."""

import re

import numpy as np
import pytest
import torch

from leapcast.forecaster import Forecaster
from leapcast.inputs import as_series_list, check_horizon, left_pad, power_of_two_scale
from leapcast.models.chronos_tokenizer import ChronosTokenizerConfig
from leapcast.models.presets import random_chronos_t5, save_chronos_t5
from leapcast.models.t5 import T5Config

NAN = float("nan")


@pytest.fixture(scope="module")
def fc(tmp_path_factory) -> Forecaster:
    """A tiny random Chronos-T5 (prediction_length 8, context_length 64)."""
    cfg = T5Config(vocab_size=4096, d_model=32, d_kv=8, d_ff=64, num_layers=1, num_decoder_layers=1, num_heads=4)
    chronos = ChronosTokenizerConfig(prediction_length=8, context_length=64)
    folder = save_chronos_t5(random_chronos_t5(cfg, chronos, seed=0), tmp_path_factory.mktemp("tiny"))
    return Forecaster.from_pretrained(folder)


def series(n: int, seed: int = 0, level: float = 10.0) -> np.ndarray:
    return np.random.default_rng(seed).normal(level, 2.0, n)


def greedy(fc: Forecaster, inputs, h: int = 8) -> torch.Tensor:
    return fc.predict(inputs, h, top_k=1, num_samples=1)


# --- accepted layouts ----------------------------------------------------------------------


@pytest.mark.parametrize("make", [torch.tensor, np.asarray], ids=["tensor", "array"])
def test_one_dimensional_input_is_one_series(make):
    x = series(7)
    out = as_series_list(make(x))
    assert len(out) == 1
    assert out[0].dtype == np.float64
    np.testing.assert_array_equal(out[0], x)


def test_plain_list_of_numbers_is_one_series():
    out = as_series_list([1, 2.5, np.float32(3.0), NAN, 4])
    assert len(out) == 1
    np.testing.assert_array_equal(out[0], [1.0, 2.5, 3.0, NAN, 4.0])


def test_list_of_series_of_different_lengths():
    a, b, c = torch.arange(3.0), np.arange(5.0), [1, 2]
    out = as_series_list([a, b, c])
    assert [len(s) for s in out] == [3, 5, 2]
    contexts = left_pad(out)
    assert contexts.shape == (3, 5) and contexts.dtype == torch.float32
    assert torch.isnan(contexts[0, :2]).all() and torch.equal(contexts[0, 2:], torch.arange(3.0))
    assert torch.equal(contexts[1], torch.arange(5.0))
    assert torch.isnan(contexts[2, :3]).all() and torch.equal(contexts[2, 3:], torch.tensor([1.0, 2.0]))


def test_two_dimensional_left_padded_array_strips_leading_nan_only():
    arr = np.array([[NAN, NAN, 1.0, NAN, 3.0], [4.0, 5.0, 6.0, 7.0, 8.0]])
    out = as_series_list(arr)
    assert [len(s) for s in out] == [3, 5]
    np.testing.assert_array_equal(out[0], [1.0, NAN, 3.0])  # the inner NaN stays: it is missing data
    np.testing.assert_array_equal(out[1], arr[1])


def test_padded_tensor_and_list_forecast_the_same(fc):
    a, b = series(20, 1), series(33, 2)
    padded = torch.full((2, 33), NAN, dtype=torch.float64)
    padded[0, 13:], padded[1] = torch.from_numpy(a), torch.from_numpy(b)
    assert torch.equal(fc.predict(padded, 6, seed=3), fc.predict([a, b], 6, seed=3))


@pytest.mark.parametrize("magnitude", [1e-300, 1e-30, 1.0, 1e35, 1e300])
def test_power_of_two_scale_brings_every_series_to_order_one(magnitude):
    big, zeros = series(10) * magnitude, np.zeros(4)
    big[3] = NAN
    factor = power_of_two_scale([big, zeros])
    assert factor[1] == 1.0
    exponent = np.log2(factor[0])
    assert exponent == round(exponent)
    assert 1 <= np.nanmax(np.abs(big / factor[0])) < 2
    np.testing.assert_array_equal(big / factor[0] * factor[0], big)  # exact both ways


def test_check_horizon_accepts_numpy_integers():
    assert check_horizon(np.int64(12)) == 12 and type(check_horizon(np.int64(12))) is int


# --- errors name the parameter and the value -------------------------------------------------


@pytest.mark.parametrize(
    "inputs, error, match",
    [
        ([], ValueError, r"`inputs` is an empty list"),
        (torch.tensor([]), ValueError, r"series 0 of `inputs` is empty"),
        ([np.array([1.0]), np.array([])], ValueError, r"series 1 of `inputs` is empty"),
        (np.empty((0, 4)), ValueError, r"`inputs` holds no series"),
        ([NAN, NAN, NAN], ValueError, r"series 0 of `inputs` has no observed value \(all 3 are NaN\)"),
        (np.array([[1.0, 2.0], [NAN, NAN]]), ValueError, r"series 1 of `inputs` has no observed value"),
        ([1.0, float("inf"), 2.0], ValueError, r"series 0 of `inputs` holds 1 infinite"),
        ([np.ones(3), np.array([-np.inf, 1.0, np.inf])], ValueError, r"series 1 of `inputs` holds 2 infinite"),
        (np.array(["1", "2"]), TypeError, r"`inputs` must hold numbers.*dtype <U1"),
        (["a", "b"], TypeError, r"`inputs\[0\]` must hold numbers"),
        (np.array([1.0, None], dtype=object), TypeError, r"`inputs` must hold numbers.*dtype object"),
        (np.array([True, False]), TypeError, r"`inputs` must hold numbers.*dtype bool"),
        (torch.tensor([True, False]), TypeError, r"`inputs` must hold numbers.*dtype bool"),
        ([True, False, True], TypeError, r"`inputs\[0\]` must hold numbers.*dtype bool"),
        (np.zeros((2, 3, 4)), ValueError, r"`inputs` must be 1-D \[T\] or 2-D \[N, T\].*\(2, 3, 4\)"),
        ([np.zeros((2, 2))], ValueError, r"`inputs\[0\]` must be 1-D, got shape \(2, 2\)"),
        ("1,2,3", TypeError, r"`inputs` must be .* got str"),
        (None, TypeError, r"`inputs` must be .* got NoneType"),
    ],
)
def test_bad_inputs_raise_naming_the_culprit(fc, inputs, error, match):
    with pytest.raises(error, match=match):
        as_series_list(inputs)
    with pytest.raises(error, match=match):
        fc.predict(inputs, 4, num_samples=2)


@pytest.mark.parametrize("bad", [-1, 0, 2.5, 3.0, True, "4", None])
def test_bad_horizon(fc, bad):
    with pytest.raises(ValueError, match=re.escape(f"`prediction_length` must be a positive integer, got {bad!r}")):
        check_horizon(bad)
    if bad is not None:  # None means "the model's own prediction length" in predict
        with pytest.raises(ValueError, match=r"`prediction_length` must be a positive integer"):
            fc.predict(series(10), bad)


@pytest.mark.parametrize("bad", [0, -2, 1.5, True])
def test_bad_batch_size(fc, bad):
    with pytest.raises(ValueError, match=re.escape(f"`batch_size` must be a positive integer, got {bad!r}")):
        fc.predict(series(10), 4, batch_size=bad)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"top_k": -1}, "top_k"),
        ({"top_p": 0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"temperature": 0}, "temperature"),
        ({"temperature": -1.0}, "temperature"),
        ({"num_samples": 0}, "num_samples"),
        ({"num_samples": 2.0}, "num_samples"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_sampling_arguments(fc, kwargs, field):
    (value,) = kwargs.values()
    with pytest.raises(ValueError, match=rf"`{field}` must .* got {re.escape(repr(value))}"):
        fc.predict(series(10), 4, **kwargs)


# --- documented handling ---------------------------------------------------------------------


def test_nan_inside_a_series_is_missing_data(fc):
    x = series(40)
    x[[3, 10, 11, 25, 39]] = NAN
    out = fc.predict([x, series(12, 5)], 10, num_samples=4, seed=0)
    assert out.shape == (2, 4, 10)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("value", [0.0, 5.0, -3.0])
def test_constant_series_give_finite_forecasts(fc, value):
    out = fc.predict(np.full(30, value), 12, num_samples=4, seed=0)
    assert torch.isfinite(out).all()


def test_constant_forecast_scales_with_the_series(fc):
    ones = np.ones(30)
    base = greedy(fc, ones)
    scaled = greedy(fc, 5.0 * ones)
    assert torch.isfinite(base).all() and base.abs().max() > 0
    assert torch.allclose(scaled, 5.0 * base, rtol=1e-5, atol=0)


def test_sampled_forecasts_scale_exactly_by_powers_of_two(fc):
    """Mean scaling makes the model scale-equivariant; a power of two keeps it exact in floating point."""
    xs = [series(30, 1), series(17, 2) - 10.0]
    base = fc.predict(xs, 20, num_samples=5, seed=7)  # 20 > prediction_length: rolls out
    scaled = fc.predict([4.0 * x for x in xs], 20, num_samples=5, seed=7)
    assert torch.equal(scaled, 4.0 * base)


def test_huge_values_forecast_finite_and_to_scale(fc):
    x = series(40, 3)
    moderate = greedy(fc, x * 1e3).double()
    huge = greedy(fc, x * 1e35).double()
    assert torch.isfinite(huge).all() and huge.abs().min() > 1e30
    assert torch.allclose(huge, moderate * 1e32, rtol=1e-5, atol=0)


def test_huge_values_in_a_batch_leave_batch_mates_alone(fc):
    a, b = series(20, 1), series(25, 2)
    alone = fc.predict([a, b], 8, num_samples=3, seed=2)
    mixed = fc.predict([a, b * 1e36], 8, num_samples=3, seed=2)
    assert torch.equal(mixed[0], alone[0])
    assert torch.isfinite(mixed[1]).all() and mixed[1].abs().max() > 1e33


def test_length_one_series(fc):
    out = fc.predict(torch.tensor([3.0]), 5, num_samples=3, seed=0)
    assert out.shape == (1, 3, 5) and torch.isfinite(out).all()
    mixed = fc.predict([np.array([3.0]), series(30)], 5, num_samples=3, seed=0)
    assert mixed.shape == (2, 3, 5) and torch.isfinite(mixed).all()


def test_a_list_of_complex_numpy_scalars_is_refused_not_cut_to_its_real_part():
    with pytest.raises(TypeError, match="got dtype complex128"):
        as_series_list([np.complex128(1 + 5j), 3.0])


def test_masked_values_are_missing_not_data():
    values = np.ma.masked_array([1.0, 2.0, 99.0, 4.0], mask=[False, False, True, False])
    for given in (values, [values]):
        (series,) = as_series_list(given)
        np.testing.assert_array_equal(series, [1.0, 2.0, np.nan, 4.0])


@pytest.mark.parametrize("values", [[1.0, None, 2.0], [1.0, True, 2.0]])
def test_a_list_of_numbers_with_another_value_is_named(values):
    with pytest.raises((ValueError, TypeError), match=r"`inputs\[0\]` is a single value"):
        as_series_list(values)
