"""From a request to the scheduler's work and back to an answer, through the library's own steps.

Both request forms go through ``Forecaster.plan_frame`` (frame checks, frequency, future timestamps, season
length, random-stream keys by series id) and ``Forecaster.prepare`` (scaling, seasonal adjustment); the
scheduler decodes ``prepared.contexts``; ``Forecaster.finish`` restores seasons and scales, and
``Forecaster.frame_of`` builds the long frame. So a seeded request gets ``Forecaster.forecast``'s answer.

JSON series become a long frame with columns named as the JSON fields (``id``, ``timestamps``, ``values``), so
the library's messages name what the caller sent. Series without timestamps get integer steps 0..T-1 (no
timestamps in the answer); series are grouped by their frequency, one plan per group.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import torch

from leapcast import frame
from leapcast.checks import check_int
from leapcast.deseason import season_length_of
from leapcast.engine.streams import random_seed
from leapcast.forecaster import Forecaster, FramePlan, Prepared, season_unused
from leapcast.serve.limits import ServeConfig, over
from leapcast.serve.schemas import ForecastRequest

DEFAULT_JSON_QUANTILES = (0.1, 0.5, 0.9)
CSV = "text/csv"
ARROW_STREAM = "application/vnd.apache.arrow.stream"
ARROW_FILE = "application/vnd.apache.arrow.file"
FRAME_TYPES = (CSV, ARROW_STREAM, ARROW_FILE)


class BadBody(ValueError):
    """A body that cannot be read at all (400), or of a type this server does not read (415)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Work:
    """A request ready for the scheduler.

    prepared: its series as the decode loop takes them; seed: the seed of their random streams;
    answer: samples [N, S, h] float64 (``Forecaster.finish``'s) -> the answer's body.
    """

    prepared: Prepared
    seed: int
    answer: Callable[[torch.Tensor], object]


@dataclass(frozen=True)
class FrameParams:
    """The query parameters of ``POST /v1/forecast/frame``: ``Forecaster.forecast``'s arguments."""

    h: int
    quantiles: Sequence[float] | None = None
    level: Sequence[float] | None = None
    point: str = "median"
    id_col: str = "unique_id"
    time_col: str = "ds"
    target_col: str = "y"
    freq: str | int | None = None
    season_length: int | None = None
    num_samples: int | None = None
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    seed: int | None = None


def frame_work(fc: Forecaster, df: pd.DataFrame, p: FrameParams, config: ServeConfig) -> Work:
    """A long frame -> Work whose answer is ``Forecaster.forecast``'s frame for the same arguments."""
    _check_h(p.h, config)
    _check_season(fc, p.season_length)
    plan = fc.plan_frame(
        df,
        p.h,
        quantiles=p.quantiles,
        level=p.level,
        point=p.point,
        id_col=p.id_col,
        time_col=p.time_col,
        target_col=p.target_col,
        freq=p.freq,
        season_length=p.season_length,
    )
    _check_series(plan.panel.n_series, max(len(c) for c in plan.panel.contexts), config)
    seed = random_seed() if p.seed is None else p.seed
    prepared = _prepare(fc, plan, p.num_samples, p.temperature, p.top_k, p.top_p, seed, config)
    _check_values(plan.panel.n_series, prepared, config)
    return _one_path(Work(prepared, seed, lambda samples: fc.frame_of(plan, samples)))


def json_work(fc: Forecaster, req: ForecastRequest, config: ServeConfig) -> Work:
    """A JSON request -> Work whose answer is the JSON body of ``ForecastResponse``."""
    _check_h(req.h, config)
    _check_series(len(req.series), max(len(s.values) for s in req.series), config)
    ids = [str(s.id) for s in req.series]  # 7 and "7" are one id, as in the library's stream keys
    seen: set[str] = set()
    for i in ids:
        if i in seen:
            raise ValueError(f"`series` ids must be unique within a request, got {i!r} twice")
        seen.add(i)
    if req.quantiles is not None and req.levels is not None:
        raise ValueError("pass either `quantiles` or `levels`, not both")
    _check_season(fc, req.season_length)
    quantiles = (
        None if req.levels is not None else (list(DEFAULT_JSON_QUANTILES) if req.quantiles is None else req.quantiles)
    )
    seed = random_seed() if req.seed is None else req.seed
    groups: dict[tuple[bool, str | int | None], list[int]] = {}
    for i, s in enumerate(req.series):
        if s.timestamps is not None and len(s.timestamps) != len(s.values):
            raise ValueError(
                f"series {s.id!r} has {len(s.values)} `values` but {len(s.timestamps)} `timestamps`; pass one per value"
            )
        groups.setdefault((s.timestamps is not None, s.freq if s.freq is not None else req.freq), []).append(i)
    parts: list[tuple[FramePlan, Prepared, list[int], bool]] = []
    for (timed, freq), members in groups.items():
        rows = [req.series[i] for i in members]
        df = pd.DataFrame(
            {
                "id": np.repeat([ids[i] for i in members], [len(s.values) for s in rows]),
                "timestamps": np.concatenate(
                    [np.asarray(s.timestamps) if timed else np.arange(len(s.values)) for s in rows]
                ),
                "values": np.concatenate([np.array(s.values, dtype=np.float64) for s in rows]),  # null -> NaN
            }
        )
        if not timed and freq is not None and not isinstance(freq, str):  # an int step: consecutive values either way
            check_int(freq, "freq", must="a positive int step or a pandas alias")
        season = req.season_length
        if season is None and not timed and isinstance(freq, str):
            season = season_length_of(_offset(freq))  # steps without timestamps: the season its frequency names
        plan = fc.plan_frame(
            df,
            req.h,
            quantiles=quantiles,
            level=req.levels,
            id_col="id",
            time_col="timestamps",
            target_col="values",
            freq=freq if timed else None,
            season_length=season,
        )
        _check_series(len(req.series), max(len(c) for c in plan.panel.contexts), config)  # on the grid, gaps included
        order = [members[[ids[i] for i in members].index(sid)] for sid in plan.panel.ids]  # panel order (sorted ids)
        prepared = _prepare(fc, plan, req.num_samples, req.temperature, req.top_k, req.top_p, seed, config)
        parts.append((plan, prepared, order, timed))

    def answer(samples: torch.Tensor) -> dict:
        out: list[dict | None] = [None] * len(req.series)
        at = 0
        for plan, _, order, timed in parts:
            n = len(order)
            mine = samples[at : at + n]  # [n, S, h]
            at += n
            # the columns of Forecaster.forecast: quantiles keyed as the caller wrote them ('0.1'), intervals by the
            # frame's column names without the model's ('lo-80')
            columns = {
                str(q) if quantiles is not None else label[len(plan.name) + 1 :]: torch.quantile(mine, q, dim=1)
                for label, q in plan.intervals
            }
            median, mean = torch.quantile(mine, 0.5, dim=1), mine.mean(dim=1)
            times = _times(plan) if timed else None
            for j, i in enumerate(order):
                levels = {key: v[j].tolist() for key, v in columns.items()}
                out[i] = {
                    "id": req.series[i].id,
                    "timestamps": None if times is None else times[j * req.h : (j + 1) * req.h],
                    "mean": mean[j].tolist(),
                    "median": median[j].tolist(),
                    "quantiles": levels if quantiles is not None else None,
                    "intervals": levels if quantiles is None else None,
                    "samples": mine[j].tolist() if req.return_samples else None,
                }
        return {
            "model": fc.name,
            "h": req.h,
            "num_samples": int(samples.shape[1]),
            "seed": seed,
            "series": out,
        }

    merged = _merge([prepared for _, prepared, _, _ in parts])
    _check_values(len(req.series), merged, config)
    return _one_path(Work(merged, seed, answer))


def read_frame(body: bytes, content_type: str, id_col: str = "unique_id") -> pd.DataFrame:
    """A long frame from a CSV or Arrow IPC body; a body that is not one is a BadBody naming what went wrong.
    CSV ids are read as text, as written ('007' stays '007'); Arrow keeps its types."""
    df = _read_frame(body, content_type, id_col)
    duplicated = sorted(set(df.columns[df.columns.duplicated()]))
    if duplicated:
        raise BadBody(f"the frame has columns {duplicated} more than once; send each column once")
    return df


def _read_frame(body: bytes, content_type: str, id_col: str) -> pd.DataFrame:
    import pyarrow as pa

    kind = content_type.split(";")[0].strip().lower()
    if kind not in FRAME_TYPES:
        raise BadBody(
            f"Content-Type {content_type!r} is not a frame this server reads; send {', '.join(FRAME_TYPES)} "
            "(or application/json to POST /v1/forecast)",
            415,
        )
    if not body:
        raise BadBody("the body is empty: send a long frame with a header (unique_id, ds, y) and one row per value")
    try:
        if kind == CSV:
            return frame.read_csv(io.BytesIO(body), id_col, float_precision="round_trip")  # ids as written
        reader = pa.ipc.open_stream(body) if kind == ARROW_STREAM else pa.ipc.open_file(pa.BufferReader(body))
        return reader.read_all().to_pandas()
    except pd.errors.EmptyDataError:
        raise BadBody("the CSV body has no columns: it needs a header line and one row per value") from None
    except UnicodeDecodeError:
        raise BadBody("the CSV body is not UTF-8 text") from None
    except pd.errors.ParserError as err:
        raise BadBody(f"the CSV body is not well-formed ({str(err).strip()})") from None
    except ValueError as err:
        if kind == CSV:
            raise BadBody(f"the CSV body is not well-formed ({err})") from None
        raise BadBody(f"the body is not an Arrow IPC {kind.rsplit('.', 1)[-1]} ({str(err).strip()[:200]})") from None
    except (pa.ArrowException, OSError) as err:
        raise BadBody(f"the body is not an Arrow IPC {kind.rsplit('.', 1)[-1]} ({str(err).strip()[:200]})") from None


def write_frame(df: pd.DataFrame, kind: str) -> bytes:
    """The answer's frame in the request's format: CSV text, or an Arrow IPC stream (types kept)."""
    if kind == CSV:
        return df.to_csv(index=False).encode()
    import pyarrow as pa

    table = pa.Table.from_pandas(df, preserve_index=False)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _one_path(work: Work) -> Work:
    """Greedy (mean) decoding: every path of a series is the same one, so one row per series decodes and the
    answer copies it to the paths asked for, as ``Forecaster.predict`` does."""
    sampling = work.prepared.sampling
    if not sampling.greedy or sampling.num_samples == 1:
        return work
    one = replace(work.prepared, sampling=replace(sampling, num_samples=1))
    return Work(one, work.seed, lambda samples: work.answer(samples.expand(-1, sampling.num_samples, -1).clone()))


def _check_season(fc: Forecaster, season_length: int | None) -> None:
    """A season length is for the seasonal adjustment; where the served model runs without it, it is refused."""
    if season_length is not None and not fc.adjusting():
        raise ValueError(season_unused(fc.name, None, settable=False))


def _prepare(fc: Forecaster, plan: FramePlan, num_samples, temperature, top_k, top_p, seed, config) -> Prepared:
    prepared = fc.prepare(
        plan.panel.contexts,
        plan.h,
        num_samples=num_samples,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        seed=seed,
        season_length=plan.season if fc.adjusting() else None,  # the frequency's usual season, used when adjusting
        series_keys=plan.keys,
    )
    s = prepared.sampling.num_samples
    if s > config.samples_limit:
        raise over("`num_samples`", s, config.samples_limit, "max-samples", 422)
    return prepared


def _check_values(series: int, prepared: Prepared, config: ServeConfig) -> None:
    """The answer's size, series x sample paths x h, within ``max_values``: refused before any decoding."""
    values = series * prepared.sampling.num_samples * prepared.h
    if values > config.max_values:
        raise over("the answer's values (series x `num_samples` x `h`)", values, config.max_values, "max-values")


def _merge(parts: list[Prepared]) -> Prepared:
    """The series of several Prepared (one sampling setting and horizon) as one, in order."""
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    return Prepared(
        [c for p in parts for c in p.contexts],
        [k for p in parts for k in p.keys],
        first.sampling,
        first.h,
        first.steps,
        np.concatenate([p.factor for p in parts]),
        [ix for p in parts for ix in p.indices],
    )


def _check_h(h: object, config: ServeConfig) -> None:
    if isinstance(h, int) and not isinstance(h, bool) and h > config.max_h:
        raise over("`h`", h, config.max_h, "max-h", 422)


def _check_series(n: int, longest: int, config: ServeConfig) -> None:
    if n > config.max_series:
        raise over("the number of series", n, config.max_series, "max-series")
    if longest > config.max_context:
        raise over("the longest series' length", longest, config.max_context, "max-context")


def _times(plan: FramePlan) -> list:
    """The plan's future timestamps [N * h] as JSON values: ISO strings, or integer steps."""
    times = plan.times
    if isinstance(times, pd.DatetimeIndex):
        return [t.isoformat() for t in times]
    return [int(t) for t in np.asarray(times)]


def _offset(freq: str):
    from pandas.tseries.frequencies import to_offset

    try:
        return to_offset(freq)
    except (ValueError, TypeError):
        raise ValueError(f"`freq` {freq!r} is not a pandas frequency; pass e.g. 'D', 'MS', 'h'") from None
