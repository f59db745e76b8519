"""Tests for leapcast.frame: long frame -> Panel -> long forecast frame."""

import warnings

import numpy as np
import pandas as pd
import pytest
from pandas.tseries.frequencies import to_offset

from leapcast.frame import Panel, future_frame, future_times, read_csv, to_panel


def long_frame(ids, ds, y=None):
    y = np.arange(len(ds), dtype=float) if y is None else y
    return pd.DataFrame({"unique_id": ids, "ds": ds, "y": y})


def dates(*values):
    return list(pd.to_datetime(list(values), format="ISO8601"))


# --- round trips -------------------------------------------------------------------------


def test_daily_round_trip():
    ds = [*pd.date_range("2021-03-01", periods=3), *pd.date_range("2021-02-01", periods=4)]
    df = long_frame(["a"] * 3 + ["b"] * 4, ds)
    panel = to_panel(df)
    assert panel.ids == ["a", "b"]
    assert panel.freq == pd.tseries.frequencies.to_offset("D")
    np.testing.assert_array_equal(panel.contexts[0], [0.0, 1.0, 2.0])
    np.testing.assert_array_equal(panel.contexts[1], [3.0, 4.0, 5.0, 6.0])
    assert panel.last_ds == [pd.Timestamp("2021-03-03"), pd.Timestamp("2021-02-04")]
    out = future_frame(panel, 2, {"model": np.array([[1.0, 2.0], [3.0, 4.0]])})
    assert list(out.columns) == ["unique_id", "ds", "model"]
    assert out["unique_id"].tolist() == ["a", "a", "b", "b"]
    assert out["ds"].tolist() == dates("2021-03-04", "2021-03-05", "2021-02-05", "2021-02-06")
    assert out["model"].tolist() == [1.0, 2.0, 3.0, 4.0]


def test_monthly_start_future_dates_cross_the_year():
    df = long_frame(["s"] * 12, list(pd.date_range("2020-01-01", periods=12, freq="MS")))
    panel = to_panel(df)
    assert panel.freq.freqstr == "MS"
    assert panel.last_ds == [pd.Timestamp("2020-12-01")]
    out = future_frame(panel, 3, {"m": np.zeros((1, 3))})
    assert out["ds"].tolist() == dates("2021-01-01", "2021-02-01", "2021-03-01")


def test_hourly_tz_aware_keeps_tz():
    ds = list(pd.date_range("2021-03-27 22:00", periods=6, freq="h", tz="Europe/Paris"))
    panel = to_panel(long_frame(["x"] * 6, ds))
    assert panel.freq.freqstr == "h"
    assert str(panel.last_ds[0].tz) == "Europe/Paris"
    out = future_frame(panel, 2, {"m": np.zeros((1, 2))})
    assert list(out["ds"]) == [ds[-1] + pd.Timedelta(hours=1), ds[-1] + pd.Timedelta(hours=2)]
    assert str(out["ds"].dt.tz) == "Europe/Paris"


def test_integer_ds_round_trip_with_inferred_step():
    df = long_frame([7] * 3 + [9] * 2, [10, 17, 24, 0, 7], y=np.array([1, 2, 3, 4, 5]))
    panel = to_panel(df)
    assert panel.freq == 7 and panel.ids == [7, 9]
    assert panel.contexts[0].dtype == np.float64
    out = future_frame(panel, 2, {"m": np.zeros((2, 2))})
    assert out["ds"].tolist() == [31, 38, 14, 21]
    assert out["unique_id"].tolist() == [7, 7, 9, 9]


def test_integer_ds_single_points_default_step_one():
    panel = to_panel(long_frame(["a", "b"], [5, 8]))
    assert panel.freq == 1
    assert future_frame(panel, 2, {})["ds"].tolist() == [6, 7, 9, 10]


def test_custom_column_names_and_extra_columns_ignored():
    df = pd.DataFrame({"item": ["a", "a"], "t": [1, 2], "sales": [3.0, 4.0], "junk": ["u", "v"]})
    panel = to_panel(df, id_col="item", time_col="t", target_col="sales")
    out = future_frame(panel, 1, {"fc": np.array([[9.0]])})
    assert list(out.columns) == ["item", "t", "fc"] and out["t"].tolist() == [3]


# --- handled cases --------------------------------------------------------------------------


def test_unsorted_rows_are_sorted_and_nothing_dropped():
    y = np.array([30.0, 20.0, 10.0, 1.0, 3.0])
    df = long_frame(["b", "a", "b", "a", "a"], [3, 2, 1, 1, 3], y=y)
    panel = to_panel(df)
    assert panel.ids == ["a", "b"]
    np.testing.assert_array_equal(panel.contexts[0], [1.0, 20.0, 3.0])
    np.testing.assert_array_equal(panel.contexts[1], [10.0, np.nan, 30.0])
    assert sum(np.isfinite(c).sum() for c in panel.contexts) == len(df)


def test_missing_dates_become_nan_steps():
    ds = dates("2021-01-01", "2021-01-02", "2021-01-03", "2021-01-06")
    df = long_frame(["a"] * 4, ds, y=np.array([1.0, 2, 3, 6]))
    panel = to_panel(df, freq="D")
    np.testing.assert_array_equal(panel.contexts[0], [1.0, 2.0, 3.0, np.nan, np.nan, 6.0])


def test_gaps_filled_when_inferred_from_other_series():
    ds = dates("2021-01-01", "2021-02-01", "2021-03-01", "2021-01-01", "2021-04-01", "2021-05-01")
    df = long_frame(["a"] * 3 + ["b"] * 3, ds)
    panel = to_panel(df)
    assert panel.freq.freqstr == "MS"
    assert np.isnan(panel.contexts[1]).tolist() == [False, True, True, False, False]


def test_nan_target_kept_inside_series():
    panel = to_panel(long_frame(["a"] * 3, [1, 2, 3], y=np.array([1.0, np.nan, 3.0])))
    assert np.isnan(panel.contexts[0][1]) and panel.contexts[0][2] == 3.0


def test_huge_finite_values_accepted():
    panel = to_panel(long_frame(["a"] * 2, [1, 2], y=np.array([1e300, -1e300])))
    assert panel.contexts[0][0] == 1e300


def test_string_dates_are_parsed():
    panel = to_panel(long_frame(["a"] * 3, ["2021-01-01", "2021-01-02", "2021-01-03"]))
    assert panel.last_ds == [pd.Timestamp("2021-01-03")]


def test_integral_float_ds_accepted():
    panel = to_panel(long_frame(["a"] * 2, [1.0, 3.0]))
    assert panel.last_ds == [3] and panel.freq == 2


def test_single_point_series_takes_frame_frequency():
    ds = dates("2021-01-01", "2021-02-01", "2021-03-01", "2021-07-01")
    df = long_frame(["a"] * 3 + ["b"], ds)
    panel = to_panel(df)
    out = future_frame(panel, 1, {})
    assert out["ds"].tolist() == dates("2021-04-01", "2021-08-01")


def test_two_point_monthly_series_inferred_from_all_timestamps():
    ds = dates("2021-01-01", "2021-02-01", "2021-02-01", "2021-03-01")
    df = long_frame(["a", "a", "b", "b"], ds)
    assert to_panel(df).freq.freqstr == "MS"


def test_given_freq_overrides_inference():
    df = long_frame(["a"] * 3, dates("2021-01-01", "2021-01-03", "2021-01-05"))
    assert to_panel(df).contexts[0].shape == (3,)
    assert to_panel(df, freq="D").contexts[0].shape == (5,)
    assert to_panel(long_frame(["a"] * 2, [0, 4]), freq=2).contexts[0].shape == (3,)


# --- rejected inputs ------------------------------------------------------------------------


def test_not_a_dataframe():
    with pytest.raises(TypeError, match=r"`df` must be a pandas.*got dict"):
        to_panel({"unique_id": [1], "ds": [1], "y": [1.0]})


def test_missing_columns_named():
    df = pd.DataFrame({"id": ["a"], "ds": [1], "y": [1.0]})
    with pytest.raises(ValueError, match=r"\['unique_id'\] are missing.*\['id', 'ds', 'y'\]"):
        to_panel(df)


def test_empty_frame():
    with pytest.raises(ValueError, match="`df` is empty"):
        to_panel(long_frame([], []))


def test_all_nan_series():
    df = long_frame(["a", "a", "b"], [1, 2, 1], y=np.array([1.0, 2.0, np.nan]))
    with pytest.raises(ValueError, match=r"no observed 'y'.*\['b'\]"):
        to_panel(df)


def test_string_target_rejected():
    with pytest.raises(TypeError, match=r"column 'y' must be numeric.*dtype (str|object)"):
        to_panel(long_frame(["a"], [1], y=["1.5"]))
    with pytest.raises(TypeError, match=r"dtype (str|object) \(e.g. 'x' in row 1, counting from 0\)"):
        to_panel(long_frame(["a", "a", "a"], [1, 2, 3], y=["1.5", "x", None]))


def test_bool_target_rejected():
    with pytest.raises(TypeError, match=r"column 'y' must be numeric.*dtype bool"):
        to_panel(long_frame(["a", "a"], [1, 2], y=[True, False]))


def test_infinite_values_name_ids_and_counts():
    df = long_frame(["a", "a", "b", "b"], [1, 2, 1, 2], y=np.array([1.0, 2.0, np.inf, -np.inf]))
    with pytest.raises(ValueError, match=r"infinite values in 1 series.*\{'b': 2\}"):
        to_panel(df)


def test_nan_ds_rejected():
    with pytest.raises(ValueError, match=r"column 'ds' has 1 null"):
        to_panel(long_frame(["a", "a"], [pd.Timestamp("2021-01-01"), pd.NaT]))


@pytest.mark.parametrize("written", ["", "NaT", "nat"])
@pytest.mark.parametrize("freq", [None, "D"])
def test_a_missing_date_written_as_text_is_named_as_missing(written, freq):
    ds = [f"2020-01-{d:02d}" for d in range(1, 11)]
    ds[4] = written
    with pytest.raises(ValueError, match=rf"column 'ds' has 1 null values \(e.g. '{written}'\)"):
        to_panel(long_frame(["a"] * 10, ds), freq=freq)


def test_null_ids_rejected():
    with pytest.raises(ValueError, match=r"column 'unique_id' has 1 null ids"):
        to_panel(long_frame(["a", None], [1, 2]))


def test_duplicated_pairs_listed():
    df = long_frame(["a", "a", "b", "b"], [1, 1, 5, 5])
    msg = r"2 duplicated \(unique_id, ds\) pairs, e.g. \('a', 1\), \('b', 5\);"
    with pytest.raises(ValueError, match=msg):
        to_panel(df)
    df = long_frame(["a", "a"], dates("2021-01-01", "2021-01-01"))
    with pytest.raises(ValueError, match=r"1 duplicated .*\('a', 2021-01-01 00:00:00\)"):
        to_panel(df)


def test_unparseable_ds_rejected():
    with pytest.raises(TypeError, match=r"column 'ds' has dtype (str|object) and does not parse"):
        to_panel(long_frame(["a"], ["not a date"]))


def test_timedelta_ds_rejected():
    with pytest.raises(TypeError, match=r"column 'ds' has dtype timedelta64"):
        to_panel(long_frame(["a"], [pd.Timedelta("1D")]))


def test_non_integral_float_ds_rejected():
    with pytest.raises(ValueError, match=r"column 'ds' holds floats.*1.5"):
        to_panel(long_frame(["a", "a"], [1.0, 1.5]))


def test_off_grid_timestamp_with_given_freq():
    df = long_frame(["a"] * 3, dates("2021-01-01", "2021-02-01", "2021-02-15"))
    msg = r"series 'a' has 'ds' 2021-02-15 00:00:00 off the given frequency 'MS'"
    with pytest.raises(ValueError, match=msg):
        to_panel(df, freq="MS")


def test_off_grid_integer_ds():
    with pytest.raises(ValueError, match=r"series 'a' has 'ds' 3 off the given frequency step 2"):
        to_panel(long_frame(["a"] * 2, [0, 3]), freq=2)


def test_irregular_series_rejected():
    ds = [*pd.date_range("2021-01-01", periods=4), *dates("2021-01-01", "2021-01-02", "2021-01-03 12:00")]
    df = long_frame(["a"] * 4 + ["b"] * 3, ds)
    msg = r"series 'b' has 'ds' 2021-01-03 12:00:00 off the inferred frequency 'D'"
    with pytest.raises(ValueError, match=msg):
        to_panel(df)


def test_mixed_frequencies_name_two_ids():
    ds = [*pd.date_range("2021-01-01", periods=3), *pd.date_range("2021-01-01", periods=3, freq="MS")]
    df = long_frame(["d"] * 3 + ["m"] * 3, ds)
    with pytest.raises(ValueError, match=r"'d' is 'D' but 'm' is 'MS'; split the frame.*freq="):
        to_panel(df)


def test_mixed_integer_steps_rejected():
    with pytest.raises(ValueError, match=r"1 is step 1 but 2 is step 3"):
        to_panel(long_frame([1, 1, 1, 2, 2, 2], [0, 1, 2, 0, 3, 6]))


def test_uninferable_frequency_asks_for_freq():
    with pytest.raises(ValueError, match=r"could not infer the frequency of 'ds'.*pass freq="):
        to_panel(long_frame(["a", "b"], dates("2021-01-01", "2021-01-05")))


def test_irregular_gaps_only_asks_for_freq():
    df = long_frame(["a"] * 3, dates("2021-01-01 00:00", "2021-01-01 01:00", "2021-01-01 02:30"))
    with pytest.raises(ValueError, match=r"could not infer the frequency of 'ds'.*pass freq="):
        to_panel(df)


def test_bad_freq_values():
    ddf = long_frame(["a"] * 2, dates("2021-01-01", "2021-01-02"))
    with pytest.raises(ValueError, match=r"`freq` 'fortnightly' is not a pandas frequency"):
        to_panel(ddf, freq="fortnightly")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # pandas' note on the alias's case ('BOGUS') is not the user's problem
        with pytest.raises(ValueError, match=r"`freq` 'bogus' is not a pandas frequency"):
            to_panel(ddf, freq="bogus")
    with pytest.raises(TypeError, match=r"`freq` 3 is an int step but 'ds' holds datetimes"):
        to_panel(ddf, freq=3)
    with pytest.raises(ValueError, match=r"`freq` must be a positive int step.*got 'D'"):
        to_panel(long_frame(["a"], [1]), freq="D")
    with pytest.raises(ValueError, match=r"`freq` must be a positive int step.*got 0"):
        to_panel(long_frame(["a"], [1]), freq=0)


@pytest.mark.parametrize("h", [-3, 0, 2.5, True])
def test_h_must_be_positive_integer(h):
    panel = to_panel(long_frame(["a"], [1]))
    with pytest.raises(ValueError, match=rf"`h` must be a positive integer, got {h!r}"):
        future_frame(panel, h, {})


def test_h_message_exact():
    with pytest.raises(ValueError, match=r"^`h` must be a positive integer, got -3$"):
        future_frame(to_panel(long_frame(["a"], [1])), -3, {})


def test_column_shape_checked():
    panel = to_panel(long_frame(["a", "b"], [1, 1]))
    msg = r"`columns\['m'\]` must have shape.*\(2, 3\), got \(3, 2\)"
    with pytest.raises(ValueError, match=msg):
        future_frame(panel, 3, {"m": np.zeros((3, 2))})
    with pytest.raises(ValueError, match=r"`columns` key 'ds' clashes"):
        future_frame(panel, 3, {"ds": np.zeros((2, 3))})


def test_panel_lengths_checked():
    with pytest.raises(ValueError, match=r"one entry per series, got 2, 1 and 1"):
        Panel(["a", "b"], [np.zeros(1)], [1], 1)


def test_polars_frame_converted():
    pl = pytest.importorskip("polars")
    pytest.importorskip("pyarrow")
    df = pl.DataFrame({"unique_id": ["a", "a"], "ds": [1, 2], "y": [1.0, 2.0]})
    panel = to_panel(df)
    assert panel.ids == ["a"] and panel.last_ds == [2]


def test_contexts_match_slow_oracle_on_random_shuffled_frame():
    rng = np.random.default_rng(0)
    rows = []
    for sid in rng.permutation(20):
        start, length = int(rng.integers(-50, 50)), int(rng.integers(1, 30))
        steps = start + np.sort(rng.choice(length * 2, size=length, replace=False))
        rows += [(int(sid), int(t), float(rng.normal())) for t in steps]
    rows += [(1000, 0, 0.0), (1000, 1, 1.0), (1000, 2, 2.0)]  # fixes the step to 1
    df = pd.DataFrame(rows, columns=["unique_id", "ds", "y"]).sample(frac=1, random_state=1)
    panel = to_panel(df)
    assert panel.ids == sorted(set(df["unique_id"]))
    for sid, ctx, last in zip(panel.ids, panel.contexts, panel.last_ds):
        values = {t: v for i, t, v in rows if i == sid}
        expected = [values.get(t, np.nan) for t in range(min(values), max(values) + 1)]
        np.testing.assert_array_equal(ctx, expected)
        assert last == max(values)


def test_a_fine_frequency_over_a_long_span_is_refused_before_its_grid_is_built():
    """'ns' over 20 years is 6.3e17 grid steps: refused by counting them (it would not fit in memory), with the
    message a sparse grid gets; integer steps alike."""
    dated = pd.DataFrame({"unique_id": ["a", "a"], "ds": pd.to_datetime(["2000-01-01", "2020-01-01"]), "y": [1.0, 2.0]})
    with pytest.raises(ValueError, match="rows at only 2 of the 631152000000000001 steps"):
        to_panel(dated, freq="ns")
    steps = pd.DataFrame({"unique_id": ["a", "a"], "ds": [0, 10**15], "y": [1.0, 2.0]})
    with pytest.raises(ValueError, match="rows at only 2 of the 1000000000000001 steps"):
        to_panel(steps, freq=1)
    hourly = pd.DataFrame({"unique_id": "a", "ds": pd.date_range("2000", periods=4, freq="h"), "y": [1.0, 2, 3, 4]})
    assert np.isnan(to_panel(hourly.drop(index=1), freq="h").contexts[0][1])  # a tick grid with a gap still builds


def test_unsigned_steps_past_int64_are_refused_not_wrapped():
    df = pd.DataFrame({"unique_id": ["a", "a"], "ds": np.array([1, 2**63 + 5], dtype=np.uint64), "y": [1.0, 2.0]})
    with pytest.raises(ValueError, match="above 2\\*\\*63 - 1"):
        to_panel(df)


def test_business_days_with_a_holiday_are_business_days():
    """A holiday gap makes pandas' infer_freq give up; a day apart, across weekends but never on one, is 'B' (the
    old fallback, 'D', padded every weekend with NaN and forecast Saturdays)."""
    days = pd.bdate_range("2024-01-02", "2024-01-26").drop(pd.Timestamp("2024-01-15"))
    panel = to_panel(pd.DataFrame({"unique_id": "a", "ds": days, "y": np.arange(len(days), dtype=float)}))
    assert panel.freq == pd.offsets.BDay() and np.isnan(panel.contexts[0]).sum() == 1  # the holiday only
    assert list(future_times(panel, 2).dayofweek) == [0, 1]  # Monday, Tuesday
    daily = pd.date_range("2024-01-01", periods=10, freq="D")
    assert to_panel(pd.DataFrame({"unique_id": "a", "ds": daily, "y": np.arange(10.0)})).freq == pd.offsets.Day()


def test_integer_steps_held_as_objects_stay_steps():
    panel = to_panel(pd.DataFrame({"unique_id": "a", "ds": pd.Series([1, 2, 3], dtype=object), "y": [1.0, 2, 3]}))
    assert panel.freq == 1 and list(future_times(panel, 2)) == [4, 5]


def test_timestamps_past_pandas_nanosecond_range_are_named_or_read():
    """Year 3000 in seconds: pandas 2 cannot lay a nanosecond grid there (refused, naming the span, not a raw
    OutOfBoundsDatetime); pandas 3 keeps the seconds and reads the frame."""
    ds = np.array(["3000-01-01", "3000-01-02", "3000-01-03"], dtype="datetime64[s]")
    df = pd.DataFrame({"unique_id": "a", "ds": ds, "y": [1.0, 2, 3]})
    try:
        panel = to_panel(df, freq="D")
    except ValueError as err:
        assert "reach past what pandas holds" in str(err)
    else:
        assert panel.contexts[0].tolist() == [1.0, 2.0, 3.0]


def test_local_times_across_a_daylight_saving_change_are_read_in_utc(tmp_path):
    """pandas writes such times with two UTC offsets; read back, they lie on one hourly grid in UTC."""
    ds = pd.date_range("2023-03-20", periods=336, freq="h", tz="Europe/Berlin")  # across 26 March
    pd.DataFrame({"unique_id": "a", "ds": ds, "y": np.arange(336.0)}).to_csv(tmp_path / "dst.csv", index=False)
    panel = to_panel(read_csv(tmp_path / "dst.csv"))
    assert panel.freq == pd.tseries.frequencies.to_offset("h")
    assert not np.isnan(panel.contexts[0]).any()  # no step lost or doubled at the change


def test_one_column_in_two_roles_is_refused():
    df = pd.DataFrame({"unique_id": "a", "ds": [1, 2, 3], "y": [1.0, 2.0, 3.0]})
    with pytest.raises(ValueError, match="three different columns"):
        to_panel(df, target_col="ds")


def test_an_int_freq_given_as_digits_is_a_step():
    df = pd.DataFrame({"unique_id": "a", "ds": [1, 3, 5, 9], "y": [1.0, 2.0, 3.0, 4.0]})
    assert to_panel(df, freq="2").freq == 2


@pytest.mark.parametrize(
    "text",
    [
        "unique_id,ds,y\nNA,1,1\nNA,2,\n,3,3\nnan,4,NA\n",  # ids as written; y's missing values as pandas reads them
        "unique_id,ds,y\nNA,1,1,\nNA,2,,\n,3,3,\nnan,4,NA,\n",  # a trailing comma on every row
        '"unique_id","ds","y"\n"1","NA",1,1\n"2","NA",2,\n"3",,3,3\n"4","nan",4,NA\n',  # R's write.table
    ],
)
def test_csv_ids_are_read_as_text(text):
    import io

    table = read_csv(io.BytesIO(text.encode()))
    assert list(table.columns) == ["unique_id", "ds", "y"]
    assert table["unique_id"].tolist()[:2] == ["NA", "NA"] and pd.isna(table["unique_id"][2])
    assert table["unique_id"][3] == "nan" and table["ds"].tolist() == [1, 2, 3, 4]
    assert np.isnan(table["y"].to_numpy(float)[[1, 3]]).all() and table["y"][2] == 3


def test_csv_rows_with_an_extra_field_are_refused_not_shifted():
    import io

    with pytest.raises(ValueError, match="more fields than the header"):
        read_csv(io.BytesIO(b"unique_id,ds,y\na,1,1,5\na,2,2,6\n"))


def test_timestamp_ids_stay_timestamps():
    day = pd.Timestamp("2020-01-01")
    df = pd.DataFrame({"unique_id": [day] * 3, "ds": [1, 2, 3], "y": [1.0, 2.0, 3.0]})
    assert to_panel(df).ids == [day]


def test_a_csv_header_naming_a_column_twice_is_refused():
    import io

    with pytest.raises(ValueError, match=r"names \['y'\] more than once"):
        read_csv(io.BytesIO(b"unique_id,ds,y,y\na,1,1,5\na,2,2,6\n"))


@pytest.mark.parametrize(
    "text",
    [
        "row,unique_id,ds,y\n0,a,1,10,\n1,a,2,11,\n",  # a trailing comma after a first column that counts 0..n-1
        '"unique_id","ds","y","z"\n"1","a",1,10,NA\n"2","a",2,11,NA\n',  # R's row numbers, a last column all NA
    ],
)
def test_a_first_field_is_taken_as_an_index_only_by_count_of_fields(text):
    import io

    table = read_csv(io.BytesIO(text.encode()))
    assert table["unique_id"].tolist() == ["a", "a"] and table["ds"].tolist() == [1, 2]
    assert table["y"].tolist() == [10, 11]


def test_csv_rows_with_two_extra_fields_and_unnamed_empty_columns():
    import io

    with pytest.raises(ValueError, match=r"more fields than the header line \(2 more"):
        read_csv(io.BytesIO(b"unique_id,ds,y\na,1,10,99,\na,2,11,98,\n"))
    excel = read_csv(io.BytesIO(b"unique_id,ds,y,,\na,1,1,,\na,2,2,,\n"))  # empty trailing columns: not duplicates
    assert excel["y"].tolist() == [1, 2]


def test_dates_written_day_first_are_read_day_first_where_a_value_proves_it():
    days = to_panel(long_frame(["a"] * 19, [f"{d:02d}/01/2023" for d in range(1, 20)]))  # 13/01 proves it
    assert days.freq == pd.offsets.Day() and str(days.last_ds[0].date()) == "2023-01-19"
    months = to_panel(long_frame(["a"] * 12, [f"15.{m:02d}.2023" for m in range(1, 13)]), freq=pd.DateOffset(months=1))
    assert str(months.last_ds[0].date()) == "2023-12-15" and len(months.contexts[0]) == 12
    month_first = to_panel(long_frame(["a"] * 19, [f"01/{d:02d}/2023" for d in range(1, 20)]))  # 01/13 proves it
    assert month_first.freq == pd.offsets.Day() and str(month_first.last_ds[0].date()) == "2023-01-19"


@pytest.mark.parametrize("sep", ["/", ".", "-"])
def test_dates_that_read_either_way_are_read_month_first_with_a_warning(sep):
    ds = [f"{m:02d}{sep}01{sep}2023" for m in range(1, 13)]  # the first of each month, or 1..12 January
    with pytest.warns(UserWarning, match=rf"column 'ds' writes dates as '02\{sep}01\{sep}2023'.*read month first"):
        panel = to_panel(long_frame(["a"] * 12, ds))
    assert panel.freq == to_offset("MS") and str(panel.last_ds[0].date()) == "2023-12-01"


@pytest.mark.parametrize("freq, periods", [("D", 20), ("MS", 12), ("W-MON", 12)])
def test_local_dates_across_a_daylight_saving_change_are_read_as_local_dates(freq, periods):
    ds = pd.date_range("2019-10-01" if freq != "D" else "2020-03-20", periods=periods, freq=freq, tz="Europe/Paris")
    panel = to_panel(long_frame(["a"] * periods, [str(t) for t in ds]))  # two UTC offsets in the text
    assert panel.freq == to_offset(freq) and panel.last_ds[0] == ds[-1].tz_localize(None)
    assert not np.isnan(panel.contexts[0]).any()


def test_local_hours_across_a_daylight_saving_change_are_read_in_utc():
    ds = pd.date_range("2020-03-28", periods=48, freq="h", tz="Europe/Paris")  # 02:00 on the 29th does not exist
    panel = to_panel(long_frame(["a"] * 48, [str(t) for t in ds]))
    assert panel.freq == to_offset("h") and panel.last_ds[0] == ds[-1].tz_convert("UTC")


def test_a_first_timestamp_off_an_anchored_frequency_says_so():
    df = pd.DataFrame({"unique_id": "a", "ds": pd.date_range("2001-01-01", periods=5, freq="W-MON"), "y": 1.0})
    with pytest.raises(ValueError, match=r"starts at 2001-01-01.*'W-SUN' does not fall on.*W-MON"):
        to_panel(df, freq="W")
    assert to_panel(df, freq="W-MON").contexts[0].shape == (5,)


def test_a_date_that_does_not_parse_is_named_without_pandas_advice():
    df = pd.DataFrame({"unique_id": "a", "ds": ["2020-01-01", "notadate", "2020-03-01"], "y": 1.0})
    with pytest.raises(TypeError, match=r"does not parse as dates \(.*notadate.*\); fix") as caught:
        to_panel(df)
    assert "format=" not in str(caught.value)  # pandas' own arguments mean nothing to a CLI user
