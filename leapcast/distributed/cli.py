"""``leapcast forecast --ray``: Parquet or CSV shards in, Parquet shards out, on a Ray cluster (docs/distributed.md).

``leapcast.cli.forecast`` hands every one of its options here when ``--ray`` is given; the options that mean
something else on a cluster (``--threads``: per worker) or nothing (``--stats-json``) are told apart here.
"""

from __future__ import annotations

import glob
import os
import shutil
import time
from pathlib import Path

from leapcast.checks import check_int, param

ERRORS = "_errors"  # inside --output: readers of a folder of shards (pyarrow, pandas, Spark) skip names starting "_"
SOME_FAILED = 3  # exit status when some series were reported in the errors output and the rest were written
PARQUET = (".parquet", ".pq")
CSV = (".csv", ".csv.gz")
ROWS_PER_FILE = 100_000  # output shards of at least this many rows (the last one smaller), not one per batch


def forecast_on_ray(
    console,
    *,
    ray: bool,
    address: str | None,
    workers: int | None,
    input: Path,
    output: Path | None,
    threads: int | None,
    stats_json: Path | None,
    model: str | None,
    draft: str | None,
    k: int,
    adaptive: bool,
    stop_below: float | None,
    tolerance: float | None,
    device: str,
    dtype: str,
    compile: bool,
    seasonal_adjustment: bool | None,
    adjustment_seasons: int,
    h: int,
    quantiles: list[float] | None,
    level: list[float] | None,
    id_col: str,
    time_col: str,
    target_col: str,
    freq: str | None,
    season_length: int | None,
    num_samples: int | None,
    temperature: float | None,
    top_k: int | None,
    top_p: float | None,
    seed: int | None,
    batch_size: int,
) -> None:
    """Read ``input`` (a file, a folder of shards or a glob), forecast on the cluster at ``address`` (default: a local
    Ray started here and stopped at the end), write ``output``/*.parquet and the failing series to
    ``output``/_errors/; exit status 3 when some series failed, 2 when all did."""
    import typer

    from leapcast.engine.speculative import SpecConfig

    if not ray:
        raise ValueError(f"{param('address')} and {param('workers')} apply to forecasts on a Ray cluster: add --ray")
    if stats_json is not None:
        raise ValueError(f"{param('stats_json')} is not collected across workers; leave it out with --ray")
    threads = 1 if threads is None else check_int(threads, "threads", must=">= 1 (torch threads per worker)")
    check_int(adjustment_seasons, "adjustment_seasons", low=0, must=">= 0 (0: the whole history)")
    folder = _check_output(output)
    kind, paths = input_files(str(input))
    spec = SpecConfig(k=k, adaptive=adaptive, stop_below=stop_below, tolerance=tolerance)
    # the workers' failures go beside the output first: Ray's writer deletes the output folder, _errors/ and all,
    # when no row was written (every series failed); they are moved in once the shards are written
    staging = folder.parent / f".{folder.name}{ERRORS}-{os.getpid()}"
    if not os.access(folder.parent, os.W_OK):  # an output folder made for us in a parent we may not write to
        staging = folder / ERRORS  # as before: kept unless every series fails (Ray then deletes the folder)
    started = _connect(address)
    try:
        began = time.perf_counter()
        from leapcast.distributed.pipeline import plan

        dataset = _read(kind, paths, id_col)
        planned = plan(
            dataset,
            model,
            h=h,
            draft=draft,
            spec=spec,
            device=device,
            dtype=dtype,
            compile=compile,
            seasonal_adjustment=seasonal_adjustment,
            adjustment_seasons=adjustment_seasons or None,
            workers=workers,
            threads=threads,
            errors=staging,
            quantiles=quantiles or None,
            level=level or None,
            id_col=id_col,
            time_col=time_col,
            target_col=target_col,
            freq=freq,
            season_length=season_length,
            cli=True,
            num_samples=num_samples,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            seed=seed,
            batch_size=batch_size,
        )
        console.print(
            f"forecasting {planned.series:,} series from {len(paths)} {kind} file(s) in {planned.batches:,} batches "
            f"on {planned.workers} workers x {planned.threads} threads (seed {planned.seed}; read and planned in "
            f"{time.perf_counter() - began:.1f} s)",
            highlight=False,
            soft_wrap=True,
        )
        # writing is I/O: its tasks ask for no CPU, or they would wait for a model worker's to come free. Ray Data
        # warns once that a job may hang when no CPU is free at its start (the planning tasks' CPUs are released a
        # moment late); the workers were checked to fit the cluster (plan), so that warning is marked as given.
        from ray.util.debug import log_once

        log_once("cpu_warning")
        planned.dataset.write_parquet(str(folder), min_rows_per_file=ROWS_PER_FILE, ray_remote_args={"num_cpus": 0})
        seconds = time.perf_counter() - began
    finally:
        if started:
            import ray as ray_module

            ray_module.shutdown()
        if staging.is_dir() and staging != folder / ERRORS:  # a run stopped part-way leaves its failures there too
            folder.mkdir(exist_ok=True)
            shutil.move(str(staging), str(folder / ERRORS))
    failed = _errors(folder / ERRORS)
    done = planned.series - len(failed)
    console.print(
        f"wrote forecasts of {done:,} series ({done * h:,} rows) to {folder}/ in {seconds:.1f} s "
        f"({3600 * done / max(seconds, 1e-9):,.0f} series/hour)",
        highlight=False,
        soft_wrap=True,
    )
    if len(failed):
        shown = "; ".join(f"{i!r}: {m}" for i, m in zip(failed[id_col][:3], failed["error"][:3]))
        console.print(
            f"{len(failed):,} series failed and were left out; ids and messages in {folder / ERRORS}/ (e.g. {shown})",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
        raise typer.Exit(2 if done == 0 else SOME_FAILED)


def input_files(text: str) -> tuple[str, list[str]]:
    """``--input``: a file, a folder of shards or a glob -> ("parquet" | "csv", the files, sorted)."""
    path = Path(text).expanduser()
    if path.is_dir():
        found = sorted(str(p) for p in path.iterdir() if p.is_file() and not p.name.startswith(("_", ".")))
    elif any(c in text for c in "*?["):
        found = sorted(p for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
        if not found:
            raise ValueError(f"{param('input')} {text!r} matches no file")
    elif path.is_file():
        found = [str(path)]
    else:
        raise ValueError(f"{param('input')} {text!r}: no such file, folder or glob")
    if not found:
        raise ValueError(f"{param('input')} {text!r} is a folder with no files")
    kinds = {_kind(p) for p in found}
    if None in kinds:
        odd = [Path(p).name for p in found if _kind(p) is None][:3]
        raise ValueError(
            f"{param('input')} {text!r} must name Parquet ({', '.join(PARQUET)}) or CSV ({', '.join(CSV)}) files; "
            f"{odd} are neither"
        )
    if len(kinds) > 1:
        raise ValueError(f"{param('input')} {text!r} mixes Parquet and CSV files; pass one kind")
    return str(kinds.pop()), found


def _kind(path: str) -> str | None:
    name = path.lower()
    return "parquet" if name.endswith(PARQUET) else "csv" if name.endswith(CSV) else None


def _check_output(output: Path | None) -> Path:
    """``--output`` as a folder that is empty or not there yet (its parent must exist): shards of an earlier run
    would mix with this one's."""
    if output is None:
        raise ValueError(f"{param('output')} is required with --ray: a folder for the Parquet shards")
    folder = output.expanduser().resolve()
    if folder.exists() and not folder.is_dir():
        raise ValueError(
            f"{param('output')} {str(output)!r} is a file; with --ray it names a folder for Parquet shards"
        )
    if folder.is_dir() and any(folder.iterdir()):
        raise ValueError(f"{param('output')} {str(output)!r} is not empty; name a new or empty folder")
    if not folder.parent.is_dir():
        raise ValueError(f"{param('output')} {str(output)!r}: the folder {str(folder.parent)!r} does not exist")
    return folder


def _connect(address: str | None) -> bool:
    """Join the cluster at ``address``, or start a local Ray; True when this call started one (to stop it after).
    A process already connected (a test, a notebook) keeps its connection."""
    import ray

    if ray.is_initialized():
        return False
    if address is None:
        from leapcast.distributed.pipeline import start_local

        start_local(include_dashboard=False, log_to_driver=False)
        return True
    _reachable(address)
    try:
        ray.init(address=address, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as err:
        raise ValueError(f"{param('address')} {address!r}: could not join a Ray cluster there ({err})") from None
    return False


def _reachable(address: str, seconds: float = 10.0) -> None:
    """Refuse an ``address`` nothing answers at within ``seconds``: ``ray.init`` would retry it for ever."""
    import socket

    if address == "auto":
        return
    host, _, port = address.split("://")[-1].rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"{param('address')} {address!r}: write HOST:PORT (the head node's GCS port, 6379 by default)")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=seconds):
            pass
    except OSError as err:
        raise ValueError(
            f"{param('address')} {address!r}: nothing answered there ({err.strerror or err}; waited at most "
            f"{seconds:g} s); "
            "check the head node's address and port (`ray start --head` prints them)"
        ) from None


def _read(kind: str, paths: list[str], id_col: str = "unique_id"):
    """The input shards as a Ray dataset; CSV ids as text, as written ('00501' stays '00501'), as the local CLI
    reads them."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import ray.data

    if kind == "parquet":
        return ray.data.read_parquet(paths)
    gz = [p for p in paths if p.lower().endswith(".gz")]
    if gz and len(gz) != len(paths):
        raise ValueError(f"{param('input')}: mix of .csv and .csv.gz files; compress all or none")
    return ray.data.read_csv(
        paths,
        arrow_open_stream_args={"compression": "gzip"} if gz else None,
        convert_options=pacsv.ConvertOptions(column_types={id_col: pa.string()}),
    )


def _errors(folder: Path):
    """The (id, error) rows the workers wrote, [failed, (id_col, error)]; an empty frame when none failed."""
    import pandas as pd

    files = sorted(folder.glob("*.parquet")) if folder.is_dir() else []
    if not files:
        return pd.DataFrame({"error": []})
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
