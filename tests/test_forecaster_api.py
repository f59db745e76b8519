"""The public API: ``predict`` [N, S, h], ``predict_quantiles`` ([N, h, Q], [N, h]) and ``forecast`` frames."""

import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from leapcast.engine.sampling import stream_key
from leapcast.forecaster import Forecaster
from leapcast.models.chronos_tokenizer import ChronosTokenizerConfig
from leapcast.models.presets import random_chronos_t5, save_chronos_t5
from leapcast.models.t5 import T5Config

PREDICTION_LENGTH = 8


def tiny_checkpoint(folder, **chronos_kwargs):
    cfg = T5Config(vocab_size=4096, d_model=32, d_kv=8, d_ff=64, num_layers=1, num_decoder_layers=1, num_heads=4)
    chronos = ChronosTokenizerConfig(prediction_length=PREDICTION_LENGTH, context_length=64, **chronos_kwargs)
    return save_chronos_t5(random_chronos_t5(cfg, chronos, seed=0), folder)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny-t5")


@pytest.fixture(scope="module")
def fc(folder) -> Forecaster:
    return Forecaster.from_pretrained(folder)


@pytest.fixture(scope="module")
def abc():
    rng = np.random.default_rng(0)
    return [torch.from_numpy(rng.normal(10.0, 2.0, n)) for n in (30, 50, 20)]


def monthly_frame(id_col="unique_id", time_col="ds", target_col="y") -> pd.DataFrame:
    """Two monthly series of different lengths and end dates, rows shuffled."""
    rng = np.random.default_rng(1)
    a = pd.DataFrame({id_col: "a", time_col: pd.date_range("2019-01-01", periods=24, freq="MS")})
    b = pd.DataFrame({id_col: "b", time_col: pd.date_range("2018-06-01", periods=30, freq="MS")})
    df = pd.concat([a, b], ignore_index=True)
    df[target_col] = 100 + np.arange(len(df)) % 12 + rng.normal(0, 1, len(df))
    return df.sample(frac=1.0, random_state=0).reset_index(drop=True)


# --- predict -------------------------------------------------------------------------------


@pytest.mark.parametrize("h", [1, 5, PREDICTION_LENGTH, 2 * PREDICTION_LENGTH + 3])
def test_predict_shape(fc, abc, h):
    out = fc.predict(abc, h, num_samples=3, seed=0)
    assert out.shape == (3, 3, h) and out.dtype == torch.float64  # float64: magnitudes up to 1e300 (leapcast.inputs)
    assert torch.isfinite(out).all()


def test_defaults_come_from_the_checkpoint(fc, abc, tmp_path):
    out = fc.predict(abc, seed=0)
    assert out.shape == (3, 20, PREDICTION_LENGTH)  # Chronos: 20 samples; h = the model's prediction_length
    other = Forecaster.from_pretrained(tiny_checkpoint(tmp_path / "seven", num_samples=7))
    assert other.predict(abc[0], 3, seed=0).shape == (1, 7, 3)


def test_rollout_starts_with_the_first_window(fc, abc):
    """Past prediction_length the first window is the same draw; later windows extend it."""
    one = fc.predict(abc, PREDICTION_LENGTH, num_samples=4, seed=5)
    long = fc.predict(abc, 2 * PREDICTION_LENGTH + 3, num_samples=4, seed=5)
    assert torch.equal(long[..., :PREDICTION_LENGTH], one)


def test_seed_reproducibility(fc, abc):
    first = fc.predict(abc, 6, num_samples=5, seed=11)
    assert torch.equal(first, fc.predict(abc, 6, num_samples=5, seed=11))
    assert not torch.equal(first, fc.predict(abc, 6, num_samples=5, seed=12))
    assert not torch.equal(fc.predict(abc, 6, num_samples=5), fc.predict(abc, 6, num_samples=5))  # unseeded


def test_greedy_samples_are_all_the_same_path(fc, abc):
    out = fc.predict(abc, 6, num_samples=3, top_k=1, seed=1)
    assert torch.equal(out, out[:, :1].expand_as(out))


# The tokenizer's mean |x| is a float32 sum over the padded width, so another padding width
# can move a series' scale by one ulp (tokens and draws stay the same): compare with atol 1e-4.
BATCH_ATOL = 1e-4


def test_forecast_does_not_depend_on_batch_size(fc, abc):
    together = fc.predict(abc, 12, num_samples=6, seed=3, batch_size=3)
    one_by_one = fc.predict(abc, 12, num_samples=6, seed=3, batch_size=1)
    pairs = fc.predict(abc, 12, num_samples=6, seed=3, batch_size=2)
    assert torch.allclose(one_by_one, together, rtol=0, atol=BATCH_ATOL)
    assert torch.allclose(pairs, together, rtol=0, atol=BATCH_ATOL)


def test_forecast_does_not_depend_on_batch_mates(fc, abc):
    a, b, c = abc
    alone = fc.predict([a], 12, num_samples=6, seed=3)
    with_b = fc.predict([a, b], 12, num_samples=6, seed=3)
    with_c = fc.predict([a, c], 12, num_samples=6, seed=3)  # c is shorter: same padding as alone
    assert torch.allclose(with_b[:1], alone, rtol=0, atol=BATCH_ATOL)
    assert torch.equal(with_c[:1], alone)


# --- predict_quantiles -----------------------------------------------------------------------


def test_predict_quantiles_shapes_order_and_mean(fc, abc):
    levels = [0.1, 0.25, 0.5, 0.75, 0.9]
    quantiles, mean = fc.predict_quantiles(abc, 10, levels, num_samples=8, seed=4)
    assert quantiles.shape == (3, 10, 5) and mean.shape == (3, 10)
    assert (quantiles.diff(dim=-1) >= 0).all()
    samples = fc.predict(abc, 10, num_samples=8, seed=4)  # [N, S, h]
    assert torch.allclose(mean, samples.mean(dim=1), rtol=1e-6, atol=0)
    expected = np.quantile(samples.numpy().astype(np.float64), levels, axis=1)  # [Q, N, h]
    np.testing.assert_allclose(quantiles.numpy(), expected.transpose(1, 2, 0), rtol=1e-5)


def test_predict_quantiles_default_levels(fc, abc):
    quantiles, mean = fc.predict_quantiles(abc[0], num_samples=4, seed=0)
    assert quantiles.shape == (1, PREDICTION_LENGTH, 9) and mean.shape == (1, PREDICTION_LENGTH)


@pytest.mark.parametrize("levels", [[], [0.0, 0.5], [0.5, 1.0], [True], [1.5]])
def test_predict_quantiles_bad_levels(fc, abc, levels):
    with pytest.raises(ValueError, match="quantile"):
        fc.predict_quantiles(abc, 4, levels, num_samples=2)


# --- forecast(df) ----------------------------------------------------------------------------


def test_forecast_levels_on_monthly_dates(fc):
    df, h = monthly_frame(), 5
    out = fc.forecast(df, h, level=[80, 95], num_samples=10, seed=0)
    m = "tiny-t5"
    assert list(out.columns) == ["unique_id", "ds", m, f"{m}-lo-80", f"{m}-hi-80", f"{m}-lo-95", f"{m}-hi-95"]
    assert len(out) == 2 * h
    assert out["unique_id"].tolist() == ["a"] * h + ["b"] * h
    assert out["ds"].tolist() == [
        *pd.date_range("2021-01-01", periods=h, freq="MS"),  # a ends 2020-12
        *pd.date_range("2020-12-01", periods=h, freq="MS"),  # b ends 2020-11
    ]
    for lv in (80, 95):
        assert (out[f"{m}-lo-{lv}"] <= out[m]).all() and (out[m] <= out[f"{m}-hi-{lv}"]).all()
    assert (out[f"{m}-lo-95"] <= out[f"{m}-lo-80"]).all() and (out[f"{m}-hi-80"] <= out[f"{m}-hi-95"]).all()
    # oracle: the same draws through predict, series in sorted id order, streams keyed by id
    ordered = df.sort_values(["unique_id", "ds"])
    ids, contexts = zip(*[(i, g["y"].to_numpy()) for i, g in ordered.groupby("unique_id")])
    keys = [stream_key(i) for i in ids]
    samples = fc.predict(list(contexts), h, num_samples=10, seed=0, series_keys=keys).double().numpy()  # [N, S, h]
    for column, q in ((m, 0.5), (f"{m}-lo-80", 0.1), (f"{m}-hi-95", 0.975)):
        expected = np.quantile(samples, q, axis=1).reshape(-1)  # [N*h]; q=0.5 is np.median
        np.testing.assert_allclose(out[column].to_numpy(), expected, rtol=1e-12, err_msg=column)


def test_forecast_integer_ds(fc):
    df = pd.DataFrame({"unique_id": [7] * 12 + [3] * 9, "ds": [*range(0, 24, 2), *range(5, 23, 2)]})
    df["y"] = np.arange(len(df), dtype=float) + 1.0
    out = fc.forecast(df, 3, level=[90], num_samples=4, seed=0)
    assert out["unique_id"].tolist() == [3, 3, 3, 7, 7, 7]
    assert out["ds"].tolist() == [23, 25, 27, 24, 26, 28]
    assert (out["tiny-t5-lo-90"] <= out["tiny-t5"]).all() and (out["tiny-t5"] <= out["tiny-t5-hi-90"]).all()


def test_forecast_quantile_columns(fc):
    out = fc.forecast(monthly_frame(), 4, quantiles=[0.1, 0.5, 0.9], num_samples=10, seed=1)
    m = "tiny-t5"
    assert list(out.columns) == ["unique_id", "ds", m, f"{m}-q-10", f"{m}-q-50", f"{m}-q-90"]
    assert (out[f"{m}-q-10"] <= out[f"{m}-q-50"]).all() and (out[f"{m}-q-50"] <= out[f"{m}-q-90"]).all()
    np.testing.assert_array_equal(out[m], out[f"{m}-q-50"])  # the point forecast is the median


@pytest.mark.parametrize(("recent", "old"), [("zeros", 1e6), ("small", 1e6), ("small", 1e300)])
def test_values_older_than_the_window_do_not_change_the_forecast(fc, recent, old):
    """The model reads the last context_length values; an older peak once set the power-of-two scale, so a window
    of zeros (demand that stopped) came back multiplied by it, and older values past float32 overflowed in a cast."""
    import warnings

    window = fc.model.context_length
    rng = np.random.default_rng(0)
    last = np.zeros(window) if recent == "zeros" else rng.normal(0.01, 0.001, window)
    history = np.r_[old * (1 + rng.random(100)), last]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = fc.predict(history, 6, num_samples=8, seed=3)
    assert torch.equal(got, fc.predict(last, 6, num_samples=8, seed=3))


@pytest.mark.parametrize(
    "option, values", [("quantiles", [0.1, 0.1000000001]), ("quantiles", [0.5, 0.5]), ("level", [80, 80])]
)
def test_two_values_naming_one_column_are_refused(fc, option, values):
    with pytest.raises(ValueError, match=f"`{option}` .* gives the column 'tiny-t5-.*' twice"):
        fc.forecast(monthly_frame(), 4, **{option: values}, num_samples=4)


def test_forecast_point_mean_and_no_intervals(fc):
    df = monthly_frame()
    out = fc.forecast(df, 4, point="mean", num_samples=6, seed=2)
    assert list(out.columns) == ["unique_id", "ds", "tiny-t5"]
    ordered = df.sort_values(["unique_id", "ds"])
    ids, contexts = zip(*[(i, g["y"].to_numpy()) for i, g in ordered.groupby("unique_id")])
    samples = fc.predict(list(contexts), 4, num_samples=6, seed=2, series_keys=[stream_key(i) for i in ids]).double()
    np.testing.assert_allclose(out["tiny-t5"].to_numpy(), samples.mean(dim=1).reshape(-1).numpy(), rtol=1e-12)


def test_forecast_argument_errors(fc):
    df = monthly_frame()
    with pytest.raises(ValueError, match="either `quantiles` or `level`"):
        fc.forecast(df, 3, quantiles=[0.5], level=[80])
    with pytest.raises(ValueError, match=r"`point` must be 'median' or 'mean', got 'mode'"):
        fc.forecast(df, 3, point="mode")
    with pytest.raises(ValueError, match=r"`h` must be a positive integer, got 0"):
        fc.forecast(df, 0)
    for bad in (0, 100, 150, True):
        with pytest.raises(ValueError, match=rf"`level` values must be numbers in \(0, 100\), got {bad!r}"):
            fc.forecast(df, 3, level=[bad], num_samples=2)


def test_forecast_alias_and_column_names(fc):
    df = monthly_frame(id_col="store", time_col="month", target_col="sales")
    out = fc.forecast(
        df, 2, level=[50], alias="chronos", id_col="store", time_col="month", target_col="sales", num_samples=4, seed=0
    )
    assert list(out.columns) == ["store", "month", "chronos", "chronos-lo-50", "chronos-hi-50"]
    assert out["store"].tolist() == ["a", "a", "b", "b"]
    with pytest.raises(ValueError, match="missing"):
        fc.forecast(df, 2)  # default column names are not in this frame


def test_name_of_a_relative_checkpoint_path(folder, monkeypatch):
    monkeypatch.chdir(folder)
    assert Forecaster.from_pretrained(".").name == "tiny-t5"


def test_predict_quantiles_of_multivariate_items():
    """[N, V, T] items on a multivariate model: quantiles [N, V, h, Q] and mean [N, V, h], those of its paths."""
    from leapcast.models.toto import TotoOptions
    from leapcast.models.toto_net import TotoConfig
    from leapcast.models.toto_presets import random_toto

    cfg = TotoConfig(
        patch_size=4,
        stride=4,
        embed_dim=16,
        num_layers=2,
        num_heads=2,
        mlp_hidden_dim=32,
        spacewise_every_n_layers=1,
        k_components=2,
    )
    fc = Forecaster(random_toto(cfg, options=TotoOptions(context_length=32)), name="t")
    items = torch.randn(2, 3, 40, generator=torch.Generator().manual_seed(0)).cumsum(-1)
    quantiles, mean = fc.predict_quantiles(items, 8, quantile_levels=[0.1, 0.9], num_samples=5, seed=0)
    paths = fc.predict(items, 8, num_samples=5, seed=0)  # [N, V, S, h]
    assert quantiles.shape == (2, 3, 8, 2) and mean.shape == (2, 3, 8)
    assert torch.allclose(quantiles[..., 1], torch.quantile(paths, 0.9, dim=2))
    window = fc.model.context_length
    stale = torch.cat([items, torch.full((2, 3, window), float("nan"))], dim=-1)
    stale[1, 0, -1] = 1.0  # item 1's variate 0 was observed of late; its variate 1 was not
    stale[1, 2, -1] = 1.0
    stale[0, :, -1] = 1.0
    with pytest.raises(ValueError, match="item 1, variate 1 of `inputs` has no observed value in its last"):
        fc.predict(stale, 8, num_samples=2)
    recent = items.double()[:, :, -window:]
    old = torch.cat([torch.full((2, 3, 5), 1e300, dtype=torch.float64), recent], dim=-1)  # older than the window
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # older values past float32 once overflowed in the cast
        got = fc.predict(old, 8, num_samples=5, seed=0)
    assert torch.equal(got, fc.predict(recent, 8, num_samples=5, seed=0))
    assert torch.allclose(mean, paths.mean(dim=2))
    with pytest.raises(ValueError, match="`seasonal_adjustment` applies to univariate series"):
        fc.predict(items, 8, num_samples=2, seasonal_adjustment=True)
    with pytest.raises(ValueError, match="`seasonal_adjustment` must be True or False, got 'x'"):
        fc.predict(items, 8, num_samples=2, seasonal_adjustment="x")


def test_a_forecast_column_named_like_the_id_column_is_refused_before_forecasting(monkeypatch):
    fc = Forecaster.from_pretrained("house-target")
    df = pd.DataFrame({"unique_id": "a", "ds": np.arange(30), "y": np.sin(np.arange(30.0))})
    monkeypatch.setattr(fc, "predict", lambda *a, **k: (_ for _ in ()).throw(AssertionError("forecast ran")))
    with pytest.raises(ValueError, match="forecast column 'unique_id' would clash.*`alias`"):
        fc.forecast(df, 3, alias="unique_id")


def test_a_frame_takes_season_lengths_by_id_not_by_order(fc):
    df = monthly_frame()
    ids = sorted(df["unique_id"].unique())
    adjusted = dict(seasonal_adjustment=True, seed=0, num_samples=4)
    by_id = fc.forecast(df, 3, season_length={uid: 4 if uid == ids[0] else 12 for uid in ids}, **adjusted)
    first = df["unique_id"] == ids[0]
    pd.testing.assert_frame_equal(  # each series gets its own season, whatever the frame's order
        by_id[by_id["unique_id"] == ids[0]].reset_index(drop=True),
        fc.forecast(df[first], 3, season_length=4, **adjusted),
    )
    with pytest.raises(ValueError, match="matched by id, not by order"):
        fc.forecast(df, 3, season_length=[4] * len(ids), **adjusted)
    with pytest.raises(ValueError, match="no entry for the series"):
        fc.forecast(df, 3, season_length={ids[0]: 4}, **adjusted)


def test_speculative_settings_without_a_draft_are_refused_not_ignored(folder):
    from leapcast.engine.speculative import SpecConfig

    with pytest.raises(ValueError, match="`spec` SpecConfig.k=2.* runs only with a draft; pass `draft`"):
        Forecaster.from_pretrained(folder, spec=SpecConfig(k=2))
    with pytest.raises(TypeError, match="`spec` must be a leapcast.engine.speculative.SpecConfig, got dict"):
        Forecaster.from_pretrained(folder, draft=folder, spec={"k": 2})
    assert Forecaster.from_pretrained(folder, spec=SpecConfig()).proposer is None  # the defaults ask for nothing
    with pytest.raises(ValueError, match="`max_residual_tries` 2 applies to patch models' continuous heads"):
        Forecaster.from_pretrained(folder, draft=folder, spec=SpecConfig(max_residual_tries=2))
