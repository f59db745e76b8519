"""``forecast(dataset, model=..., h=...)``: ``Forecaster.forecast`` over a ray.data Dataset, on a Ray cluster.

The plan, in Ray Data's own steps:

    dataset [rows, (id, ds, y)]  --unique ids, sorted-->  N series  ->  B batches of consecutive ids, each a whole
      number of engine batches (``batch_size``; the last may be less), so each batch's engine batches are those
      ``forecast`` makes of the whole frame: the same series padded together, the same numbers; S series at most,
      fewer near the end, so that the workers finish together
      --sort(batch number, boundaries 1..B-1)-->  B blocks, one batch each, every row of its series in it;
                                                  materialized before the actors start, so that they never hold the
                                                  cores the shuffle needs
      --map_batches(BatchForecaster, batch_size=None, actor pool of W workers x T CPUs)-->
      the forecast frame [N * h, (id, ds, <model>, ...)], as ``Forecaster.forecast`` returns it, rows in no order

A series' sample paths come from the random stream keyed by (seed, its id), so its forecast is the same on any
worker and in any batch (``leapcast.engine.sampling.stream_key``); without a seed, one is drawn here, once, for
every batch.
"""

from __future__ import annotations

import inspect
import math
import os
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from leapcast.checks import check_device, check_flag, check_int, param
from leapcast.deseason import RECENT_SEASONS
from leapcast.distributed.worker import BATCH, BatchForecaster
from leapcast.engine.proposers.registry import parse as parse_proposer
from leapcast.engine.speculative import SpecConfig
from leapcast.engine.streams import random_seed
from leapcast.forecaster import _interval_columns, check_spec, season_unused
from leapcast.inputs import check_horizon
from leapcast.models.loading import check_compilable, leapcast_options
from leapcast.models.sampling import SamplingConfig
from leapcast.registry import model_name, resolve

if TYPE_CHECKING:
    import ray.data

DEFAULT_SERIES_PER_BATCH = 128  # ~20 s of one CPU per batch (house-target, h 18, 20 samples): Ray's ~0.1 s is noise
SAMPLING = ("num_samples", "temperature", "top_k", "top_p", "seed", "batch_size")  # Forecaster.predict's, passed on


@dataclass(frozen=True)
class Plan:
    """dataset: the forecast frame (lazy; reading it runs the actors). series, batches, series_per_batch: N, B and
    the largest batch's series (batches shrink near the end). workers: actors, threads: CPUs (and torch threads) per
    actor. seed: the seed every batch draws with."""

    dataset: ray.data.Dataset
    series: int
    batches: int
    series_per_batch: int
    workers: int
    threads: int
    seed: int


def forecast(
    dataset: ray.data.Dataset,
    model: str | Path | None = None,
    *,
    h: int,
    draft: str | None = None,
    spec: SpecConfig | None = None,
    device: str = "cpu",
    dtype: str | None = None,
    compile: bool = False,
    seasonal_adjustment: bool | None = None,
    adjustment_seasons: int | None = RECENT_SEASONS,
    workers: int | None = None,
    threads: int = 1,
    series_per_batch: int = DEFAULT_SERIES_PER_BATCH,
    errors: str | Path | None = None,
    quantiles=None,
    level=None,
    point: str = "median",
    id_col: str = "unique_id",
    time_col: str = "ds",
    target_col: str = "y",
    freq=None,
    alias: str | None = None,
    season_length: int | None = None,
    **sampling,
) -> ray.data.Dataset:
    """Forecast every series of ``dataset`` (long-frame rows ``id_col, time_col, target_col``) on the Ray cluster
    this process is connected to (``ray.init(...)`` first; Ray starts a local one otherwise).

    Returns a lazy Dataset of the frame ``Forecaster.forecast`` returns for the same rows (``id_col, time_col,
    <model>, <model>-lo-80, ...``), rows in no particular order: ``.write_parquet(dir)``, ``.to_pandas()``, ...

    model, draft, spec, device, dtype, compile, seasonal_adjustment, adjustment_seasons: as
    ``Forecaster.from_pretrained`` (a model is loaded once per worker, and compiles there on its first batch;
    dtype and compile are passed on only when given). A checkpoint folder must be readable
    at the same path on every machine; bundled names and hub ids resolve on each.
    h, quantiles, level, point, id_col, time_col, target_col, freq, alias, season_length and ``sampling``
    (num_samples, temperature, top_k, top_p, seed, batch_size): as ``Forecaster.forecast``. Without ``freq``, each
    batch infers its series' frequency as ``forecast`` does for a whole frame; pass it when series may disagree.
    workers: actors (default: the cluster's CPUs // threads); threads: CPUs and torch threads per actor.
    series_per_batch: whole series per batch, the unit of work (and of retry when a worker dies).
    errors: a folder (path or URI) where series that fail validation are written as (id_col, error) Parquet rows
    while the rest finish; None: the first failure raises.
    """
    return plan(**{name: value for name, value in locals().items() if name != "sampling"}, **sampling).dataset


def plan(
    dataset,
    model=None,
    *,
    h,
    draft=None,
    spec=None,
    device="cpu",
    dtype=None,
    compile=False,
    seasonal_adjustment=None,
    adjustment_seasons=RECENT_SEASONS,
    workers=None,
    threads=1,
    series_per_batch=DEFAULT_SERIES_PER_BATCH,
    errors=None,
    quantiles=None,
    level=None,
    point="median",
    id_col="unique_id",
    time_col="ds",
    target_col="y",
    freq=None,
    alias=None,
    season_length=None,
    cli=False,
    worker: type = BatchForecaster,
    **sampling,
) -> Plan:
    """``forecast``, with what it planned (series, batches, workers, seed) for callers that report it (the CLI).
    ``worker``: the class the actor pool runs, constructed as ``BatchForecaster`` is (a benchmark swaps in one that
    does not forecast, to time Ray's own share)."""
    import ray
    import ray.data

    h = check_horizon(h, "h")
    threads = check_int(threads, "threads")
    series_per_batch = check_int(series_per_batch, "series_per_batch")
    _check_sampling(sampling, quantiles, level, point)
    check_int(season_length, "season_length", none=True, must="a positive integer (1: no season) or None")
    device = check_device(device)  # on the driver, before any work; every worker then sees its own GPU as "cuda"
    columns = [id_col, time_col, target_col]
    schema = dataset.schema()
    if schema is None:  # a dataset with no blocks (ray.data.from_items([]))
        raise ValueError("the dataset has no rows; pass at least one row per series")
    missing = [c for c in columns if c not in schema.names]
    if missing:
        raise ValueError(
            f"columns {missing} are missing from the dataset (it has {schema.names}); rename them or pass "
            f"{param('id_col')}, {param('time_col')}, {param('target_col')}"
        )
    shared = _shared(model, "model")  # checked here, before any work
    check_spec(spec, drafted=draft is not None)
    _check_season(season_length, model, seasonal_adjustment)
    load: dict[str, Any] = dict(
        draft=_shared(draft, "draft"),
        spec=spec,
        device="cuda" if device.startswith("cuda") else device,  # Ray gives each actor one GPU: its own device 0
        seasonal_adjustment=seasonal_adjustment,
        adjustment_seasons=adjustment_seasons,
    )
    if dtype is not None:
        load["dtype"] = dtype
    if check_flag(compile, "compile"):
        folder = resolve(model, "model")
        check_compilable(folder, model_name(model, folder))
        load["compile"] = True
    gpus = 1 if str(device).startswith("cuda") else 0
    if not ray.is_initialized():  # as Ray Data would on its first step: a local Ray of this machine's cores
        start_local()
    workers = _check_workers(workers, threads, gpus, ray.cluster_resources())
    seed = random_seed() if sampling.get("seed") is None else sampling["seed"]
    kwargs = dict(
        h=h,
        quantiles=quantiles,
        level=level,
        point=point,
        id_col=id_col,
        time_col=time_col,
        target_col=target_col,
        freq=freq,
        alias=alias,
        season_length=season_length,
        progress=False,
        **{**sampling, "seed": seed},
    )
    rows = dataset.select_columns(columns)
    ids = _sorted_ids(_unique_ids(rows, id_col), id_col)
    sizes = _batch_sizes(series_per_batch, len(ids), workers, sampling.get("batch_size", 32))
    # the first id of every batch but the first
    bounds = np.array([ids[i] for i in np.cumsum(sizes)[:-1]], dtype=object)
    tagged = rows.map_batches(_shipped(_tag), fn_kwargs=dict(id_col=id_col, bounds=bounds), batch_format="pandas")
    batches = len(bounds) + 1
    # a range partition on the batch number, one block per batch; materialized before the actors start, so they
    # never hold the cores the shuffle needs
    blocks = tagged.sort(BATCH, boundaries=list(range(1, batches))) if batches > 1 else tagged.repartition(1)
    refs = blocks.materialize().to_arrow_refs()  # [B] tables, one batch each, in the object store
    if len(refs) != batches:  # Ray splits a block past its size limit (DataContext.target_max_block_size)
        raise ValueError(
            f"a batch of {sizes[0]} series is too large for one Ray block; pass a smaller {param('series_per_batch')}"
        )
    blocks = ray.data.from_arrow_refs(refs)  # one input per block: the sort hands its blocks on in one bundle
    out = blocks.map_batches(
        worker,
        fn_constructor_kwargs=dict(
            model=shared,
            load=load,
            forecast=kwargs,
            threads=threads,
            errors=None if errors is None else _absolute(str(errors)),
            cli=cli,
        ),
        batch_size=None,  # a whole block: whole series
        batch_format="pandas",
        compute=ray.data.ActorPoolStrategy(size=workers, max_tasks_in_flight_per_actor=1),
        num_cpus=threads,
        num_gpus=gpus or None,
    )
    return Plan(out, len(ids), batches, sizes[0], workers, threads, seed)


def start_local(**init) -> None:
    """``ray.init(**init)``: a local Ray of this machine's cores that keeps up to one idle worker process per core.

    Ray's own rule keeps only as many idle workers as there are free CPUs. With model workers holding every CPU that
    is none, so each write task (which asks for no CPU) starts a fresh Python process, about 2 CPU-seconds, and Ray
    stops it a second later: on 2 cores that took a fifth of each model worker's CPU. ``num_workers_soft_limit``
    caps idle workers instead (docs/distributed.md; a cluster's nodes take ``RAY_num_workers_soft_limit``)."""
    import ray

    cores = init.get("num_cpus") or os.cpu_count() or 1
    system = {"num_workers_soft_limit": int(cores), **init.pop("_system_config", {})}  # the caller's settings win
    ray.init(**init, _system_config=system)


def _unique_ids(rows: ray.data.Dataset, id_col: str) -> list:
    """Every series id once: each block's own, gathered here (a task per block; no aggregation actors to start)."""
    ids: set = set()
    blocks = rows.map_batches(_shipped(_block_ids), fn_kwargs=dict(id_col=id_col), batch_format="pandas")
    for batch in blocks.iter_batches(batch_size=None, batch_format="pandas"):
        ids.update(batch[id_col].tolist())
    return list(ids)


def _shipped(fn: Callable[..., pd.DataFrame]) -> Callable[..., pd.DataFrame]:
    """``fn`` (pandas and numpy only) as a copy Ray sends by value: a module-level function goes by reference,
    and the task workers that run it would import leapcast, and with it torch (about 3 s per worker process,
    most of the planning time of a small dataset), only to tag rows. The copy carries the globals it names."""
    names = {name: fn.__globals__[name] for name in fn.__code__.co_names if name in fn.__globals__}
    return types.FunctionType(fn.__code__, names, fn.__name__, fn.__defaults__)


def _block_ids(block: pd.DataFrame, id_col: str) -> pd.DataFrame:
    return pd.DataFrame({id_col: block[id_col].unique()})


def _sorted_ids(ids: list, id_col: str) -> list:
    """The series ids in ``Forecaster.forecast``'s order (sorted), checked as it checks them."""
    if not ids:
        raise ValueError("the dataset has no rows; pass at least one row per series")
    nulls = sum(_is_null(i) for i in ids)
    if nulls:
        raise ValueError(f"column {id_col!r} has null ids; drop or fill them")
    try:
        return sorted(ids)
    except TypeError:
        kinds = sorted({type(i).__name__ for i in ids})
        raise TypeError(f"column {id_col!r} mixes id types ({', '.join(kinds)}); use one, e.g. strings") from None


def _is_null(value) -> bool:
    """None, NaN, NaT or pd.NA: what ``Forecaster.forecast`` refuses as a null id."""
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # not a scalar (a tuple id): never null
        return False


def _batch_sizes(asked: int, series: int, workers: int, engine: int) -> list[int]:
    """Series per batch, in order: as asked, but no more than spreads the series over every worker; with two or more
    workers, no more than 1 / (2 x workers) of the series left either, so batches shrink near the end and the workers
    finish together instead of one idling through the other's last large batch (up to 10 s of a 2-minute run on 2
    workers at 128 series a batch). Every size but the last is a whole number of engine batches (``batch_size``, 32
    by default), so each batch's engine batches are the ones ``forecast`` makes of the whole frame: the same series
    padded together, the same numbers."""

    def whole(n: int) -> int:
        return math.ceil(n / engine) * engine

    size = whole(min(asked, math.ceil(series / workers)))
    sizes: list[int] = []
    left = series
    while left > 0:
        take = size if workers == 1 else min(size, whole(math.ceil(left / (2 * workers))))
        sizes.append(min(take, left))
        left -= sizes[-1]
    return sizes


def _tag(block: pd.DataFrame, id_col: str, bounds: np.ndarray) -> pd.DataFrame:
    """[rows, (id_col, ...)] -> with the batch of each row's series in column BATCH: its id's place among ``bounds``."""
    return block.assign(**{BATCH: np.searchsorted(bounds, block[id_col].to_numpy(dtype=object), side="right")})


def _check_sampling(sampling: dict, quantiles, level, point) -> None:
    """The forecast's own keywords, checked here so that a typo fails before any worker starts."""
    unknown = sorted(set(sampling) - set(SAMPLING))
    if unknown:
        known = sorted(set(inspect.signature(forecast).parameters) - {"dataset", "sampling"}) + list(SAMPLING)
        raise TypeError(f"unexpected keyword argument(s) {unknown}; forecast takes {', '.join(known)}")
    if quantiles is not None and level is not None:
        raise ValueError(f"pass either {param('quantiles')} or {param('level')}, not both")
    if point not in ("median", "mean"):
        raise ValueError(f"{param('point')} must be 'median' or 'mean', got {point!r}")
    _interval_columns("model", quantiles, level)
    SamplingConfig(**{name: sampling[name] for name in SAMPLING[:-1] if sampling.get(name) is not None})
    check_int(sampling.get("batch_size", 32), "batch_size")


def _shared(model, name: str):
    """A model or draft as every worker can name it: a local folder by its absolute path (workers do not share
    this process's working folder), a bundled name or hub id as given; checked here first."""
    if model is None:
        resolve(None, name)
        return None
    if name == "draft" and parse_proposer(str(model)).kind != "model":
        return str(model)
    folder = resolve(model, name)  # a hub id is fetched into this machine's cache too
    return str(folder.resolve()) if Path(str(model)).expanduser().is_dir() else str(model)


def _check_season(season_length, model, seasonal_adjustment) -> None:
    """As ``Forecaster.forecast`` refuses it, here on the driver: a season length where the adjustment is off."""
    if season_length is None:
        return
    folder = resolve(model)
    adjusts = seasonal_adjustment
    if adjusts is None:
        adjusts = leapcast_options(folder).get("seasonal_adjustment", False)
    if not check_flag(adjusts, "seasonal_adjustment"):
        raise ValueError(season_unused(model_name(model, folder), seasonal_adjustment))


def _check_workers(workers, threads: int, gpus: int, resources: dict) -> int:
    """Actors to start: as asked, or as many as the cluster's CPUs (GPUs) hold; more than it holds would wait forever."""
    cpus = int(resources.get("CPU", 0))
    fit = cpus // threads if not gpus else min(cpus // threads, int(resources.get("GPU", 0)))
    workers = check_int(workers, "workers", none=True)
    if workers is None:
        workers = fit
    if workers < 1 or workers > fit:
        has = f"{cpus} CPUs" + (f" and {int(resources.get('GPU', 0))} GPUs" if gpus else "")
        raise ValueError(
            f"{param('workers')} {workers} x {param('threads')} {threads}{' (and one GPU each)' if gpus else ''} "
            f"do not fit the Ray cluster, which has {has}: ask for at most {fit} workers, fewer threads, "
            "or add machines (`ray start --address ...` on each)"
        )
    return workers


def _absolute(path: str) -> str:
    return path if "://" in path else str(Path(path).expanduser().resolve())
