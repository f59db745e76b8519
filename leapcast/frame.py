"""Long-DataFrame adapter: ``unique_id, ds, y`` frames in, per-series contexts out.

Follows the statsforecast / TimeGPT conventions. ``to_panel`` validates a long
frame and turns it into a :class:`Panel` (one float64 context per series, on a
regular time grid); ``future_frame`` lays forecasts ``[n_series, h]`` back out as
a long frame ``unique_id, ds, <columns...>``.

How inputs are handled (each rejection is a ``ValueError``/``TypeError`` naming
the column or parameter, the offending values, and what to do):

- Rows may come in any order: they are sorted by ``(id, ds)`` (stable); nothing
  is dropped. Series come out in sorted id order, as in statsforecast (categorical ids: their categories' order).
- ``ds`` may be datetime64 (tz-aware kept), integers, integral floats, or strings
  that ``pd.to_datetime`` parses (they are converted; strings with mixed UTC
  offsets, as local times across a daylight-saving change, are read in UTC).
  Null ``ds`` are rejected.
- ``y`` must be numeric (booleans rejected); integers are cast to float64. NaN is
  allowed inside a series (models mask it), but a series with no observed value
  is rejected, and so are infinities. Huge finite values are kept: the models are
  scale invariant, so they need no clipping.
- Duplicate ``(id, ds)`` pairs are rejected.
- Frequency: ``freq`` if given, else inferred (see :func:`to_panel`). Every series
  must lie on the grid; grid steps with no row become NaN in the context, so the
  model sees the missing steps. A series whose rows leave more than
  ``MAX_MISSING_GRID`` (half) of its grid steps empty is refused: the frequency
  is finer than the data (``freq="D"`` on monthly rows), or the missing steps
  mean something (zero demand) that should be filled in (docs/limits.md).
- The future timestamps must exist (pandas ends in 2262): a horizon that runs
  past them is refused before any forecasting.
"""

from __future__ import annotations

import io
import math
import os
import re
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset
from pandas.tseries.offsets import BaseOffset, Tick

from leapcast.checks import arg, check_int, param

_MAX_LISTED = 5
MAX_MISSING_GRID = 0.5  # largest share of a series' grid steps (first to last row) that may have no row
# Steps with no fixed length, tried coarsest first when too few timestamps let pandas infer one
_CALENDAR_STEPS = ("YS", "YE", "QS", "QE", "MS", "ME")


@dataclass(frozen=True)
class Panel:
    """A validated set of series, ready for a forecaster.

    ids: unique series ids, in sorted order (statsforecast's order); length N.
    contexts: N float64 arrays ``[T_i]``, values in time order on the grid,
        NaN where the value is missing or the grid step had no row.
    last_ds: N last timestamps (``pd.Timestamp``, tz kept) or last integer ds.
    freq: the grid step: a pandas ``DateOffset`` for datetime ds, an ``int``
        (default 1) for integer ds.
    id_col, time_col, target_col: the column names of the input frame.
    """

    ids: list
    contexts: list[np.ndarray]
    last_ds: list
    freq: BaseOffset | int
    id_col: str = "unique_id"
    time_col: str = "ds"
    target_col: str = "y"

    def __post_init__(self):
        if not len(self.ids) == len(self.contexts) == len(self.last_ds):
            raise ValueError(
                f"`ids`, `contexts` and `last_ds` must have one entry per series, got "
                f"{len(self.ids)}, {len(self.contexts)} and {len(self.last_ds)}"
            )

    @property
    def n_series(self) -> int:
        return len(self.ids)


# pandas' default missing-value strings (read_csv's documentation); ids get only the empty field
_NA_STRINGS = ("", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>", "N/A")
_NA_STRINGS += ("NA", "NULL", "NaN", "None", "n/a", "nan", "null")


def read_csv(source, id_col: str = "unique_id", **options) -> pd.DataFrame:
    """A long frame from CSV (a path or a file object; ``options``: read_csv's dialect options, e.g. ``sep``): ids
    as text, as written ('007' stays '007', and 'NA', 'None' or 'nan' are ids like any other; an empty field is a
    missing id). A header that names a column twice is refused (pandas would rename the second, 'y.1').

    Rows with one field more than the header: a trailing comma on every row is dropped, and R's row numbers 1..n
    (``write.table``'s header has no field for them) are dropped; anything else is refused, since pandas would read
    the first field as an index and shift every column."""
    if not isinstance(source, (str, os.PathLike)) and not (hasattr(source, "seekable") and source.seekable()):
        data = source.read()  # a pipe or a stream: read once, then as often as the checks need
        source = io.BytesIO(data) if isinstance(data, bytes) else io.StringIO(data)
    start = source.tell() if hasattr(source, "seek") else None

    def read(**more) -> pd.DataFrame:
        if start is not None:
            source.seek(start)
        return pd.read_csv(source, **options, **more)

    raw = dict(header=None, dtype=str, keep_default_na=False)
    header = [str(name) for name in read(nrows=1, **raw).iloc[0]]
    twice = sorted({name for name in header if name and header.count(name) > 1})
    if twice:
        raise ValueError(f"the header line names {twice} more than once; give every column its own name")
    try:
        extra = read(skiprows=1, nrows=1, **raw).shape[1] - len(header)  # pandas decides on the first row
    except pd.errors.EmptyDataError:  # a header and no rows
        extra = 0
    columns = read(nrows=0).columns
    na = {c: [""] if c == id_col else list(_NA_STRINGS) for c in columns}
    text_ids = dict(dtype={id_col: str}, keep_default_na=False, na_values=na)
    if extra <= 0:
        return read(**text_ids)
    fields = read(skiprows=1, **raw)  # every row, every field as written
    if extra == 1 and (fields.iloc[:, -1] == "").all():  # a trailing comma on every row
        with warnings.catch_warnings():  # pandas 3 warns of the dropped field (an "ignore" that leaks is harmless)
            warnings.simplefilter("ignore", pd.errors.ParserWarning)
            return read(**text_ids, index_col=False)
    if extra == 1 and fields.iloc[:, 0].tolist() == [str(i) for i in range(1, len(fields) + 1)]:  # R's row numbers
        return read(**text_ids, index_col=0).reset_index(drop=True)
    raise ValueError(
        f"rows have more fields than the header line ({extra} more; the header: {list(columns)}); pandas would read "
        "the first as an index and shift every column: remove the extra fields or name them in the header"
    )


def to_panel(df, *, id_col="unique_id", time_col="ds", target_col="y", freq=None) -> Panel:
    """Validate a long frame ``[rows, (id_col, time_col, target_col, ...)]`` into a Panel.

    ``df`` is a pandas DataFrame (or a polars one, converted when polars is
    installed); extra columns are ignored.

    ``freq``: a pandas alias or offset (``"D"``, ``"MS"``, ``"h"``) for datetime
    ds, a positive int step for integer ds, or None to infer it. Inference:
    each series of >= 3 points votes with ``pd.infer_freq`` (datetime) or the gcd
    of its differences (integer), and the votes must agree. Series that cannot
    vote (1 or 2 points, or gaps) must lie on the voted grid. When no series
    votes: integer ds take the gcd of all differences (1 if every series has one
    point); datetime ds try ``pd.infer_freq`` on all timestamps together, then the
    smallest difference, and ask for ``freq=`` when neither fits every series.
    """
    df = _as_pandas(df)
    if len({id_col, time_col, target_col}) < 3:
        raise ValueError(
            f"{arg('id_col')} {id_col!r}, {arg('time_col')} {time_col!r} and {arg('target_col')} {target_col!r} "
            "must name three different columns"
        )
    missing = [c for c in (id_col, time_col, target_col) if c not in df.columns]
    if missing:
        raise ValueError(
            f"columns {missing} are missing from `df` (it has {list(df.columns)}); "
            f"rename them or pass {arg('id_col')}, {arg('time_col')}, {arg('target_col')}"
        )
    if len(df) == 0:
        raise ValueError("`df` is empty: pass at least one row per series")
    if df[id_col].isna().any():
        raise ValueError(f"column {id_col!r} has {int(df[id_col].isna().sum())} null ids; drop or fill them")
    ds = _time_values(df[time_col], time_col)
    y = _target_values(df[target_col], target_col)
    ids = df[id_col].reset_index(drop=True)
    keys = pd.DataFrame({"id": ids, "ds": ds})
    order = keys.sort_values(["id", "ds"], kind="stable").index.to_numpy()  # [rows]
    ids, ds, y = ids.to_numpy()[order], ds[order], y[order]
    codes, uniques = pd.factorize(ids)  # sorted, so codes never decrease
    starts = np.r_[0, np.flatnonzero(np.diff(codes)) + 1, len(codes)]
    uniq = pd.Index(uniques).tolist()  # python ids, sorted (Timestamps stay Timestamps, not nanoseconds)

    dup = np.r_[False, (codes[1:] == codes[:-1]) & (ds[1:] == ds[:-1])]
    if dup.any():
        first = np.flatnonzero(dup)[:_MAX_LISTED]
        pairs = ", ".join(f"({uniq[codes[i]]!r}, {_show(ds[i])})" for i in first)
        raise ValueError(
            f"{int(dup.sum())} duplicated ({id_col}, {time_col}) pairs, e.g. {pairs}; "
            f"keep one row per pair (aggregate or drop_duplicates)"
        )
    _check_values(y, codes, uniq, target_col)

    series = [ds[a:b] for a, b in zip(starts[:-1], starts[1:])]
    is_dt = isinstance(ds, pd.DatetimeIndex)
    step = _resolve_freq(freq, series, uniq, is_dt, time_col)
    contexts, last_ds = [], []
    for k, (a, b) in enumerate(zip(starts[:-1], starts[1:])):
        s = series[k]
        steps = _grid_length(s, step)
        if steps is not None and 1 - len(s) / steps > MAX_MISSING_GRID:  # refused below; never laid out in memory
            raise _sparse(uniq[k], len(s), steps, step, freq is None)
        pos, off = _grid_positions(s, step)
        if off.any() and bool(off[0]):  # an anchored frequency (W-SUN, ...) its first timestamp does not fall on
            raise ValueError(
                f"series {uniq[k]!r} starts at {_show(s[0])}, which the {'inferred' if freq is None else 'given'} "
                f"frequency {_show_freq(step)} does not fall on (it is anchored to another day); pass the "
                f"{arg('freq')} your timestamps follow"
                + (" (weekly data on Mondays: W-MON)" if str(_show_freq(step)).strip("'").startswith("W") else "")
            )
        if off.any():
            raise ValueError(
                f"series {uniq[k]!r} has {time_col!r} {_show(s[np.argmax(off)])} off the "
                f"{'inferred' if freq is None else 'given'} frequency {_show_freq(step)} grid "
                f"starting at {_show(s[0])}; fix the timestamps or pass the right {arg('freq')}"
            )
        if 1 - len(s) / (pos[-1] + 1) > MAX_MISSING_GRID:
            raise _sparse(uniq[k], len(s), pos[-1] + 1, step, freq is None)
        ctx = np.full(pos[-1] + 1, np.nan)
        ctx[pos] = y[a:b]
        contexts.append(ctx)
        last_ds.append(s[-1] if is_dt else int(s[-1]))
    return Panel(uniq, contexts, last_ds, step, id_col, time_col, target_col)


def future_times(panel: Panel, h: int):
    """The forecast's timestamps ``[N*h]``: ``last_ds + freq * (1..h)`` per series, series in panel order.

    Raises ``ValueError`` naming ``h`` when they run past what pandas (2262) or int64 holds.
    """
    h = check_int(h, "h")
    if not isinstance(panel.freq, BaseOffset):
        last = np.asarray(panel.last_ds, dtype=np.int64)[:, None]  # [N, 1]
        if int(last.max()) + panel.freq * h > np.iinfo(np.int64).max:
            raise ValueError(f"{param('h')}={h} runs the integer {panel.time_col!r} past int64; shorten the horizon")
        return (last + panel.freq * np.arange(1, h + 1)).reshape(-1)  # [N*h]
    cache: dict = {}
    for last in panel.last_ds:
        if last not in cache:
            try:
                cache[last] = pd.date_range(start=last, periods=h + 1, freq=panel.freq)[1:]
            except (OverflowError, pd.errors.OutOfBoundsDatetime):
                raise ValueError(
                    f"{param('h')}={h} steps of {_show_freq(panel.freq)} after {_show(last)} run past the last "
                    f"timestamp pandas holds ({pd.Timestamp.max.date()}); shorten the horizon"
                ) from None
    times = [cache[last] for last in panel.last_ds]
    return times[0].append(times[1:]) if times else pd.DatetimeIndex([])


def future_frame(panel: Panel, h: int, columns: dict[str, np.ndarray], times=None) -> pd.DataFrame:
    """Long frame of forecasts: ``[N*h, (id_col, time_col, *columns)]``.

    ``columns`` maps a name to an array ``[N, h]`` (row i is series ``panel.ids[i]``).
    Future ds are ``times`` (default: ``future_times(panel, h)``). Rows: series in panel order, time ascending.
    """
    future = future_times(panel, h) if times is None else times
    h, n = int(h), panel.n_series
    for name, values in columns.items():
        if name in (panel.id_col, panel.time_col):
            raise ValueError(f"`columns` key {name!r} clashes with the id/time column; rename it")
        if np.shape(values) != (n, h):
            raise ValueError(f"`columns[{name!r}]` must have shape [n_series, h] = {(n, h)}, got {np.shape(values)}")
    out = {panel.id_col: pd.Index(panel.ids).repeat(h), panel.time_col: future}
    for name, values in columns.items():
        out[name] = np.asarray(values).reshape(-1)  # [N*h]
    return pd.DataFrame(out)


def _as_pandas(df) -> pd.DataFrame:
    if isinstance(df, pd.DataFrame):
        return df
    if type(df).__module__.split(".")[0] == "polars":  # never imports polars itself
        return df.to_pandas()
    raise TypeError(
        f"`df` must be a pandas (or polars) DataFrame, got {type(df).__name__}; build one with columns unique_id, ds, y"
    )


def _time_values(col: pd.Series, name: str):
    """ds as a DatetimeIndex (tz kept) or an int64 array ``[rows]``."""
    if col.isna().any():
        n_null = int(col.isna().sum())
        raise ValueError(f"column {name!r} has {n_null} null values; drop or fill them")
    dtype = col.dtype
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return pd.DatetimeIndex(col)
    if pd.api.types.is_bool_dtype(dtype):
        pass
    elif pd.api.types.is_integer_dtype(dtype):
        if pd.api.types.is_unsigned_integer_dtype(dtype) and len(col) and int(col.max()) > np.iinfo(np.int64).max:
            raise ValueError(f"column {name!r} holds steps above 2**63 - 1, e.g. {int(col.max())}; use smaller steps")
        return col.to_numpy(dtype=np.int64)
    elif pd.api.types.is_float_dtype(dtype):
        values = col.to_numpy(dtype=np.float64)
        bad = values[~np.isfinite(values) | (values != np.round(values)) | (np.abs(values) >= 2.0**63)]
        if len(bad):
            raise ValueError(
                f"column {name!r} holds floats that are not whole numbers of at most 2**63, e.g. {float(bad[0])}; "
                f"use integer steps or datetimes"
            )
        return values.astype(np.int64)
    elif pd.api.types.is_object_dtype(dtype) and pd.api.types.infer_dtype(col, skipna=False) in (
        "integer",
        "floating",
        "mixed-integer-float",
    ):  # numbers held as objects: steps, as their numeric column would be (to_datetime would read nanoseconds)
        return _time_values(pd.to_numeric(col), name)
    elif pd.api.types.is_string_dtype(dtype) or pd.api.types.is_object_dtype(dtype):
        text = col.astype(str)  # once: both the date order and the UTC offsets are read off it
        dayfirst = _day_first(text, name)
        try:
            dates = _parse_dates(col, text, dayfirst)
        except (ValueError, TypeError) as err:
            reason = str(err).split(". You might want to try")[0]  # pandas' advice names its own arguments
            raise TypeError(
                f"column {name!r} has dtype {dtype} and does not parse as dates ({reason}); fix those values, or "
                "pass datetimes or integers"
            ) from None
        if dates.isna().any():  # written as text ('', 'NaT'): null once parsed
            raise ValueError(
                f"column {name!r} has {int(dates.isna().sum())} null values (e.g. {col[dates.isna()].iloc[0]!r}); "
                "drop or fill them"
            )
        return dates
    raise TypeError(f"column {name!r} has dtype {dtype}; pass datetimes or integers")


def _target_values(col: pd.Series, name: str) -> np.ndarray:
    """y as float64 ``[rows]``, NaN for missing values."""
    dtype = col.dtype
    numeric = pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_complex_dtype(dtype)
    if pd.api.types.is_bool_dtype(dtype) or not numeric:
        bad = ""
        if not pd.api.types.is_bool_dtype(dtype):  # text: name the first value that is not a number, and its row
            parsed = pd.to_numeric(col, errors="coerce")
            wrong = parsed.isna() & col.notna()
            if wrong.any():
                bad = (
                    f" (e.g. {col[wrong].iloc[0]!r} in row {int(np.flatnonzero(wrong.to_numpy())[0])}, counting from 0)"
                )
        what_to_do = (
            "fix or drop the values that are not numbers (missing values may be left empty)"
            if bad
            else f"convert it, e.g. df[{name!r}].astype(float)"
        )
        raise TypeError(f"column {name!r} must be numeric (int or float), got dtype {dtype}{bad}; {what_to_do}")
    return col.to_numpy(dtype=np.float64, na_value=np.nan)


def _check_values(y: np.ndarray, codes: np.ndarray, ids: list, name: str) -> None:
    """Reject infinities and series without a single observed value (y, codes: [rows])."""
    n_inf = np.bincount(codes, weights=np.isinf(y), minlength=len(ids)).astype(int)
    if n_inf.any():
        found = {ids[k]: int(n_inf[k]) for k in np.flatnonzero(n_inf)[:_MAX_LISTED]}
        raise ValueError(
            f"column {name!r} has infinite values in {int((n_inf > 0).sum())} series "
            f"(id: count) {found}; replace them with NaN or drop them"
        )
    n_obs = np.bincount(codes, weights=~np.isnan(y), minlength=len(ids))
    if (n_obs == 0).any():
        empty = [ids[k] for k in np.flatnonzero(n_obs == 0)]
        raise ValueError(
            f"{len(empty)} series have no observed {name!r} (all NaN), e.g. {empty[:_MAX_LISTED]}; drop them"
        )


def _parse_dates(col: pd.Series, text: pd.Series, dayfirst: bool = False) -> pd.DatetimeIndex:
    """Date strings -> a DatetimeIndex; times that all carry a UTC offset but not one offset (local times across a
    daylight-saving change, as pandas writes them) are read in UTC, the one grid they share, unless every row
    stands at one local time of day (daily, weekly, monthly data at local midnight): those are read as local
    dates, the offsets dropped, since in UTC they would fall off any daily or monthly grid. ``dayfirst``: as
    ``_day_first`` found; ``text``: ``col`` as strings."""
    with warnings.catch_warnings():  # pandas' note that it parses element by element: the result is checked below
        warnings.filterwarnings("ignore", message="Could not infer format", category=UserWarning)
        offsets = text.str.extract(_OFFSET, expand=False)
        mixed = bool(offsets.notna().all()) and offsets.nunique() > 1
        if mixed:
            local = pd.DatetimeIndex(pd.to_datetime(text.str.replace(_OFFSET_END, "", regex=True), dayfirst=dayfirst))
            if local.notna().all() and len(set(local.time)) == 1:
                return local
        try:
            return pd.DatetimeIndex(pd.to_datetime(col, utc=mixed, dayfirst=dayfirst))
        except (ValueError, TypeError) as err:  # offsets written another way ('-05', '20200308T010000-0500')
            if mixed or "utc=True" not in str(err):
                raise
        return pd.DatetimeIndex(pd.to_datetime(col, utc=True, dayfirst=dayfirst))


_DAY_MONTH = r"^\s*(\d{1,2})[/.-](\d{1,2})[/.-](?:\d{4}|\d{2})(?!\d)"  # 01/02/2023, 1.2.23, 01-02-2023


def _day_first(text: pd.Series, name: str) -> bool:
    """Whether dates written '01/02/2023' put the day first: True when a first field is above 12, False when a
    second one is (or the dates are not written so). When every value fits both orders and the two differ, month
    first (pandas' reading, and the US's), with a warning that names an example: not silently."""
    fields = text.str.extract(_DAY_MONTH)
    if fields.isna().any().any():
        return False
    first, second = fields[0].astype(int), fields[1].astype(int)
    if (first > 12).any():
        return True
    if (second > 12).any() or (first == second).all():
        return False
    example = text[first != second].iloc[0].strip()
    warnings.warn(
        f"column {name!r} writes dates as {example!r}, which reads month first or day first, and no value tells "
        "which (none has a field above 12): read month first; if the day comes first, write the dates as YYYY-MM-DD",
        stacklevel=2,
    )
    return False


_OFFSET = r"\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?\s*(Z|[+-]\d{2}:?\d{2})$"  # a time of day, then its UTC offset
_OFFSET_END = r"\s*(?:Z|[+-]\d{2}:?\d{2})$"  # the offset alone


def _resolve_freq(freq, series: list, ids: list, is_dt: bool, name: str):
    """The grid step: a DateOffset for datetime ds, a positive int for integer ds."""
    if isinstance(freq, str) and re.fullmatch(r"\s*[+-]?\d+\s*", freq):
        freq = int(freq)  # an int step written as text, as the CLI and a server's query give it
    if freq is not None:
        if is_dt:
            if isinstance(freq, (bool, int, np.integer)):
                raise TypeError(
                    f"{param('freq')} {freq!r} is an int step but {name!r} holds datetimes; pass an alias like 'D'"
                )
            try:
                with warnings.catch_warnings():  # pandas' deprecation note on a bad alias's case would come first
                    warnings.simplefilter("ignore", FutureWarning)
                    return to_offset(freq)
            except (ValueError, TypeError):
                raise ValueError(
                    f"{param('freq')} {freq!r} is not a pandas frequency; pass e.g. 'D', 'MS', 'h'"
                ) from None
        return check_int(freq, "freq", must=f"a positive int step for integer {name!r}")

    distinct = {}  # step -> first id voting for it; series of >= 3 points vote
    for k, s in enumerate(series):
        if len(s) >= 3:
            step = _infer_step(s) if is_dt else math.gcd(*np.diff(s).tolist())
            if step is not None:
                distinct.setdefault(step, ids[k])
    if len(distinct) > 1:
        (a, fa), (b, fb) = [(i, _show_freq(f)) for f, i in list(distinct.items())[:2]]
        raise ValueError(
            f"series have different frequencies: {a!r} is {fa} but {b!r} is {fb}; "
            f"split the frame by frequency or pass {arg('freq')}"
        )
    if distinct:
        return next(iter(distinct))
    diffs = [np.diff(s) for s in series if len(s) >= 2]
    if not is_dt:
        return math.gcd(*np.concatenate(diffs).tolist()) if diffs else 1
    if diffs:
        union = series[0].append(series[1:]).unique().sort_values()  # all timestamps together
        smallest = pd.Timedelta(min(d.min() for d in diffs))
        if smallest < pd.Timedelta(days=28):  # days, hours, ...: a step of fixed length, the smallest one seen
            days = smallest / pd.Timedelta("1D")
            # a day apart, across weekends yet never on one: business days (a holiday made infer_freq give up)
            weekdays = days == 1 and union[-1] - union[0] >= pd.Timedelta(days=6) and bool((union.dayofweek < 5).all())
            guesses = [
                _infer_step(union),
                to_offset("B") if weekdays else None,
                to_offset(f"{int(days)}D" if days == int(days) else smallest),
            ]
        else:  # months, quarters and years have no fixed length: a calendar step that fits every series,
            # else whole weeks (a 4-weekly cadence); 31 days from mid-month is no step at all
            days = smallest / pd.Timedelta("1D")
            fixed = to_offset(f"{int(days)}D") if days == int(days) and int(days) % 7 == 0 else None
            guesses = [_infer_step(union), *(_calendar_step(series, alias) for alias in _CALENDAR_STEPS), fixed]
        for guess in filter(None, guesses):
            if not any(_grid_positions(s, guess)[1].any() for s in series):
                return guess
    raise ValueError(
        f"could not infer the frequency of {name!r} (series too short or irregular); "
        f"pass {arg('freq')}, e.g. 'D' or 'MS'"
    )


def _calendar_step(series: list, alias: str):
    """The offset ``alias`` if every series lies on its grid and some pair of rows is one step apart, else None."""
    step = to_offset(alias)
    gaps = []
    for s in series:
        pos, off = _grid_positions(s, step)
        if off.any():
            return None
        gaps.extend(np.diff(pos).tolist())
    return step if gaps and min(gaps) == 1 else None


def _infer_step(index: pd.DatetimeIndex):
    """``pd.infer_freq`` as a DateOffset, None when irregular or under 3 points."""
    if len(index) < 3:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pandas 3.1 warns that infer_freq will return offsets
        found = pd.infer_freq(index)
    return None if found is None else to_offset(found)


def _grid_length(s, step) -> int | None:
    """Steps of the grid from ``s[0]`` to ``s[-1]`` where a step has a fixed length (int steps, ticks such as 'h' or
    'ns'), without building it: a fine frequency over a long span would not fit in memory. None for calendar
    steps (months, business days), whose grids are coarse."""
    if isinstance(step, Tick):
        return int((s[-1] - s[0]).value // step.nanos) + 1
    if isinstance(step, (int, np.integer)):
        return int((int(s[-1]) - int(s[0])) // step) + 1
    return None


def _sparse(sid, rows: int, steps: int, step, inferred: bool) -> ValueError:
    empty = 1 - rows / steps
    return ValueError(
        f"series {sid!r} has rows at only {rows} of the {steps} steps of the "
        f"{'inferred' if inferred else 'given'} frequency {_show_freq(step)} grid "
        f"({empty:.0%} missing, more than {MAX_MISSING_GRID:.0%}); pass the data's own "
        f"{arg('freq')}, or fill the missing steps (e.g. 0 where no row means no demand)"
    )


def _grid_positions(s, step) -> tuple[np.ndarray, np.ndarray]:
    """Grid index of each timestamp ``[T_obs]`` (grid from ``s[0]`` by ``step``), and
    the mask ``[T_obs]`` of timestamps that are off that grid."""
    if isinstance(step, BaseOffset):
        try:
            pos = pd.date_range(start=s[0], end=s[-1], freq=step).get_indexer(s)
        except pd.errors.OutOfBoundsDatetime:
            raise ValueError(
                f"timestamps from {s[0]} to {s[-1]} reach past what pandas holds (1677-09-21 to 2262-04-11); "
                "pass times within that span, or integer steps"
            ) from None
        return pos, pos < 0
    pos, rem = np.divmod(s - s[0], step)
    return pos, rem != 0


def _show(value) -> str:
    """A ds value for messages: '2020-01-03 00:00:00' or '7'."""
    return str(int(value)) if isinstance(value, (int, np.integer)) else str(value)


def _show_freq(step) -> str:
    return repr(step.freqstr) if isinstance(step, BaseOffset) else f"step {step}"
