"""Seasonal adjustment (leapcast.deseason): statsmodels' classical decomposition as the oracle, and its
place around the model in ``Forecaster`` (plain and speculative decoding see the same adjusted history)."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import make_checkpoint
from pandas.tseries.frequencies import to_offset

from leapcast.deseason import autocorrelation, is_seasonal, season_length_of, seasonal_index
from leapcast.engine.sampling import stream_key
from leapcast.engine.speculative import SpecConfig
from leapcast.forecaster import Forecaster


def seasonal_series(n=120, m=12, level=100.0, amplitude=0.3, noise=0.02, trend=0.002, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    season = 1 + amplitude * np.sin(2 * np.pi * t / m)
    return level * (1 + trend) ** t * season * np.exp(rng.normal(0, noise, n))


@pytest.mark.oracle
@pytest.mark.parametrize("m, shift", [(12, 0.0), (4, 0.0), (7, 0.0), (12, -150.0)])
def test_indices_match_statsmodels_seasonal_decompose(m, shift):
    statsmodels = pytest.importorskip("statsmodels.tsa.seasonal")
    y = seasonal_series(n=10 * m + 5, m=m) + shift  # shift: values <= 0 -> additive
    ix = seasonal_index(y, m, seasons=None)
    model = "multiplicative" if shift == 0 else "additive"
    assert ix is not None and ix.multiplicative == (shift == 0)
    expected = statsmodels.seasonal_decompose(y, model=model, period=m).seasonal  # [T], phase 0 = y[0]
    np.testing.assert_allclose(ix.at(0, len(y)), expected, rtol=1e-10, atol=1e-10)


@pytest.mark.oracle
@pytest.mark.parametrize("m, shift", [(12, 0.0), (4, 0.0), (12, -150.0)])
def test_recent_indices_average_statsmodels_ratios_over_the_last_seasons(m, shift):
    statsmodels = pytest.importorskip("statsmodels.tsa.seasonal")
    n = 20 * m + 3
    drift = 0.4 * np.sin(2 * np.pi * (np.arange(n) % m) / m) * np.linspace(-1, 1, n)  # the season's shape changes
    y = seasonal_series(n=n, m=m) * (1 + drift) + shift
    model = "multiplicative" if shift == 0 else "additive"
    d = statsmodels.seasonal_decompose(y, model=model, period=m)
    ratio = y / d.trend if shift == 0 else y - d.trend  # [T], NaN where the centred trend is undefined
    have = np.flatnonzero(np.isfinite(ratio))
    keep = np.arange(n) > have[-1] - 8 * m
    means = np.array([np.nanmean(np.where(keep, ratio, np.nan)[j::m]) for j in range(m)])
    expected = means / means.mean() if shift == 0 else means - means.mean()
    recent, whole = seasonal_index(y, m), seasonal_index(y, m, seasons=None)
    np.testing.assert_allclose(recent.index, expected, rtol=1e-10, atol=1e-10)
    assert (
        np.abs(recent.index - whole.index).max() > 0.05 * np.abs(whole.index).max()
    )  # it can differ from the whole history
    np.testing.assert_allclose(seasonal_index(y, m, seasons=1000).index, whole.index, rtol=1e-12)


def test_recent_indices_skip_gaps_phase_by_phase():
    m = 12
    y = seasonal_series(n=240, m=m)
    y[150:225] = np.nan  # six seasons missing near the end
    recent = seasonal_index(y, m)
    assert recent is not None
    d = np.full(len(y), np.nan)  # the ratios to the centred trend, as seasonal_index computes them
    trend = np.convolve(y, np.r_[0.5, np.ones(m - 1), 0.5] / m, mode="valid")
    d[6 : 6 + len(trend)] = y[6 : 6 + len(trend)] / trend
    means = np.array([d[j::m][np.isfinite(d[j::m])][-8:].mean() for j in range(m)])  # each phase's last 8 ratios
    np.testing.assert_allclose(recent.index, means / means.mean(), rtol=1e-10)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "8"])
def test_bad_seasons_names_the_parameter(bad):
    with pytest.raises(ValueError, match="seasons"):
        seasonal_index(seasonal_series(), 12, seasons=bad)


@pytest.mark.oracle
def test_autocorrelation_matches_statsmodels_acf():
    stattools = pytest.importorskip("statsmodels.tsa.stattools")
    y = seasonal_series()
    np.testing.assert_allclose(autocorrelation(y, 24), stattools.acf(y, nlags=24), rtol=1e-10, atol=1e-12)


def test_the_test_finds_seasons_and_leaves_the_rest_alone():
    rng = np.random.default_rng(3)
    assert is_seasonal(seasonal_series(), 12)
    assert not is_seasonal(rng.normal(100, 1, 120), 12)  # white noise
    assert not is_seasonal(seasonal_series(n=35), 12)  # fewer than three seasons
    assert not is_seasonal(seasonal_series(), 1)
    assert seasonal_index(np.full(60, 5.0), 12) is None  # constant: no season, no division by zero


def test_adjusting_removes_the_season_and_restoring_puts_it_back():
    m, n = 12, 96
    pattern = np.array([0.7, 0.8, 1.0, 1.1, 1.3, 1.4, 1.3, 1.1, 1.0, 0.9, 0.8, 0.6])
    y = 50.0 * pattern[np.arange(n) % m]
    ix = seasonal_index(y, m)
    np.testing.assert_allclose(ix.adjust(y), np.full(n, 50.0 * pattern.mean()), rtol=1e-12)
    paths = np.full((3, 18), 50.0 * pattern.mean())  # [S, h] flat forecasts of the adjusted series
    np.testing.assert_allclose(ix.restore(paths), np.tile(50.0 * pattern[np.arange(n, n + 18) % m], (3, 1)), rtol=1e-12)


def test_missing_values_are_skipped_and_stay_missing():
    y = seasonal_series()
    y[[5, 40, 41, 77]] = np.nan
    ix = seasonal_index(y, 12)
    assert ix is not None and np.isfinite(ix.index).all()
    adjusted = ix.adjust(y)
    assert np.isnan(adjusted[[5, 40, 41, 77]]).all() and np.isfinite(np.delete(adjusted, [5, 40, 41, 77])).all()


@pytest.mark.parametrize("bad", [0, -4, 2.5, True, "12"])
def test_bad_season_length_names_the_parameter(bad):
    with pytest.raises(ValueError, match="season_length"):
        seasonal_index(seasonal_series(), bad)


def test_season_of_a_frequency():
    cases = {"h": 24, "30min": 48, "D": 7, "B": 5, "W": 52, "MS": 12, "ME": 12, "QS": 4, "QE-DEC": 4, "YS": 1, "2MS": 1}
    assert {f: season_length_of(to_offset(f)) for f in cases} == cases
    assert season_length_of(1) == 1  # integer steps: no known season


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny", prediction_length=8)


@pytest.fixture(scope="module")
def histories():
    return [seasonal_series(n=n, seed=i) for i, n in enumerate((96, 130, 40))]  # the third is not adjusted: < 3 seasons


@pytest.mark.parametrize("recent", [8, None, 3])
def test_forecaster_adjusts_then_restores(folder, histories, recent):
    fc = Forecaster.from_pretrained(folder, seasonal_adjustment=True, adjustment_seasons=recent)
    got = fc.predict(histories, 10, season_length=12, seed=7, num_samples=5).double().numpy()
    indices = [seasonal_index(y, 12, recent) for y in histories]
    assert indices[0] is not None and indices[1] is not None and indices[2] is None
    adjusted = [y if ix is None else ix.adjust(y) for y, ix in zip(histories, indices)]
    plain = fc.predict(adjusted, 10, seed=7, num_samples=5, seasonal_adjustment=False).double().numpy()
    for i, ix in enumerate(indices):
        np.testing.assert_allclose(got[i], plain[i] if ix is None else ix.restore(plain[i]), rtol=1e-6)
    unadjusted = fc.predict(histories, 10, seed=7, num_samples=5, seasonal_adjustment=False)
    assert not torch.allclose(unadjusted[0], torch.from_numpy(got[0]))
    # no season length, no adjustment
    torch.testing.assert_close(fc.predict(histories, 10, seed=7, num_samples=5), unadjusted)


def test_the_default_indices_are_the_last_eight_seasons(folder, histories):
    default = Forecaster.from_pretrained(folder, seasonal_adjustment=True)
    assert default.adjustment_seasons == 8
    a = default.predict(histories, 10, season_length=12, seed=7, num_samples=5)
    b = Forecaster.from_pretrained(folder, seasonal_adjustment=True, adjustment_seasons=None).predict(
        histories, 10, season_length=12, seed=7, num_samples=5
    )
    torch.testing.assert_close(a[0], b[0])  # 96 points: 7 seasons of ratios, all of them recent
    assert not torch.allclose(a[1], b[1])  # 130 points: the whole history is more than 8 seasons
    with pytest.raises(ValueError, match="adjustment_seasons"):
        Forecaster.from_pretrained(folder, adjustment_seasons=0)


def test_speculative_decoding_keeps_greedy_forecasts_under_adjustment(folder, histories, tmp_path):
    draft = make_checkpoint(tmp_path / "draft", prediction_length=8, seed=1)
    plain = Forecaster.from_pretrained(folder, seasonal_adjustment=True)
    spec = Forecaster.from_pretrained(
        folder, draft=draft, spec=SpecConfig(k=3, adaptive=False), seasonal_adjustment=True
    )
    a = plain.predict(histories, 12, season_length=12, top_k=1, num_samples=2)
    b = spec.predict(histories, 12, season_length=12, top_k=1, num_samples=2)
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_the_checkpoint_sets_the_default(folder, tmp_path):
    assert Forecaster.from_pretrained(folder).seasonal_adjustment is False  # official layout: no leapcast block
    on = make_checkpoint(tmp_path / "on", prediction_length=8)
    config = json.loads((on / "config.json").read_text())
    config["leapcast"] = {"seasonal_adjustment": True}
    (on / "config.json").write_text(json.dumps(config))
    assert Forecaster.from_pretrained(on).seasonal_adjustment is True
    assert Forecaster.from_pretrained(on, seasonal_adjustment=False).seasonal_adjustment is False
    assert Forecaster.from_pretrained("house-target").seasonal_adjustment is True


def test_forecast_takes_the_season_from_the_frequency(folder, histories):
    fc = Forecaster.from_pretrained(folder, seasonal_adjustment=True)
    df = pd.concat(
        [
            pd.DataFrame({"unique_id": f"s{i}", "ds": pd.date_range("2000-01-01", periods=len(y), freq="MS"), "y": y})
            for i, y in enumerate(histories)
        ]
    )
    got = fc.forecast(df, 6, seed=3, num_samples=4, quantiles=[0.5])
    keys = [stream_key(f"s{i}") for i in range(len(histories))]  # forecast keys streams by series id
    samples = fc.predict(histories, 6, season_length=12, seed=3, num_samples=4, series_keys=keys)
    np.testing.assert_allclose(
        got["tiny-q-50"].to_numpy(), torch.quantile(samples, 0.5, dim=1).reshape(-1).numpy(), rtol=1e-6
    )
    other = fc.forecast(df, 6, seed=3, num_samples=4, quantiles=[0.5], season_length=4)
    assert not np.allclose(other["tiny-q-50"].to_numpy(), got["tiny-q-50"].to_numpy())


def test_bad_arguments(folder, histories):
    fc = Forecaster.from_pretrained(folder, seasonal_adjustment=True)
    with pytest.raises(ValueError, match="season_length.*2 entries for 3 series"):
        fc.predict(histories, 4, season_length=[12, 12])
    with pytest.raises(ValueError, match="season_length"):
        fc.predict(histories, 4, season_length=0)
    with pytest.raises(ValueError, match="season_length"):
        fc.predict(histories, 4, season_length=True)
    with pytest.raises(ValueError, match="season_length"):
        fc.predict(histories, 4, season_length="12")
    with pytest.raises(ValueError, match="seasonal_adjustment"):
        fc.predict(histories, 4, season_length=12, seasonal_adjustment="yes")


def test_a_season_length_without_the_adjustment_is_refused_not_ignored(folder, histories):
    off = Forecaster.from_pretrained(folder)  # official layout: the adjustment is off
    with pytest.raises(ValueError, match="`season_length` sets the seasonal adjustment, which is off for 'tiny'"):
        off.predict(histories, 4, season_length=12)
    on = Forecaster.from_pretrained(folder, seasonal_adjustment=True)
    with pytest.raises(ValueError, match="off for this call"):
        on.predict(histories, 4, season_length=12, seasonal_adjustment=False)
    df = pd.DataFrame({"unique_id": "a", "ds": pd.date_range("2000-01-01", periods=96, freq="MS"), "y": histories[0]})
    with pytest.raises(ValueError, match="season_length"):
        off.forecast(df, 4, season_length=12)
    with pytest.raises(ValueError, match="season_length"):
        on.forecast(df, 4, season_length={"a": 12}, seasonal_adjustment=False)
    # the frequency's own season is not the caller's: a frame forecasts with the adjustment off
    plain = off.forecast(df, 4, seed=0, num_samples=3)
    np.testing.assert_allclose(
        plain["tiny"].to_numpy(),
        np.median(
            off.predict(histories[:1], 4, seed=0, num_samples=3, series_keys=[stream_key("a")])[0].numpy(), axis=0
        ),
        rtol=1e-6,
    )
