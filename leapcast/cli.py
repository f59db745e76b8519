"""`leapcast forecast | info | init`."""

from __future__ import annotations

import importlib.util
import json
import lzma
import os
import sys
import warnings
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from leapcast.checks import check_int, cli_spelling
from leapcast.deseason import RECENT_SEASONS

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode=None,  # plain help: rich cuts long option names
    help="Fast autoregressive time-series foundation models.",
)
console = Console(stderr=True)


CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2", ".csv.xz", ".csv.zst", ".csv.zip")  # pandas infers the compression
PARQUET_SUFFIXES = (".parquet", ".pq")


class Refused(Exception):
    """Bad input found by an explicit check: printed as one line, exit code 2."""


def _fail(message: str) -> None:
    raise Refused(message)


def _kind(path: Path) -> str | None:
    """'csv' or 'parquet' by the file name's ending, None when neither."""
    name = path.name.lower()
    if name.endswith(CSV_SUFFIXES):
        return "csv"
    return "parquet" if name.endswith(PARQUET_SUFFIXES) else None


def _read_table(path: Path, option: str = "--input", id_col: str = "unique_id"):
    """A long table from a .csv (optionally compressed) or .parquet file; every way it can be unreadable is named.
    CSV ids are read as text, as written (``frame.read_csv``): '00501' stays '00501', '1' and '01' are two series,
    and 'NA' is an id."""
    import pandas as pd
    import pyarrow as pa

    from leapcast import frame

    if path.is_dir():
        _fail(f"`{option}` {str(path)!r} is a folder; pass a .csv or .parquet file")
    if not path.is_file():
        _fail(f"`{option}` {str(path)!r}: no such file")
    kind = _kind(path)
    if kind is None:
        _fail(f"`{option}` {str(path)!r}: expected a file ending in {', '.join(CSV_SUFFIXES + PARQUET_SUFFIXES)}")
    if path.stat().st_size == 0:
        _fail(f"`{option}` {str(path)!r} is empty; it needs a header line and one row per observation")
    try:
        table = frame.read_csv(path, id_col) if kind == "csv" else pd.read_parquet(path)
    except pd.errors.EmptyDataError:
        _fail(f"`{option}` {str(path)!r} has no columns; it needs a header line and one row per observation")
    except UnicodeDecodeError:
        _fail(f"`{option}` {str(path)!r} is not UTF-8 text, so not a CSV file")
    except pd.errors.ParserError as err:
        _fail(f"`{option}` {str(path)!r} is not a well-formed CSV file ({str(err).strip()})")
    except (
        pa.ArrowException,
        OSError,
        EOFError,
        lzma.LZMAError,
        zipfile.BadZipFile,
        zlib.error,
    ) as err:  # corrupt or truncated
        _fail(f"`{option}` {str(path)!r} could not be read as {kind} ({str(err).strip()[:200] or type(err).__name__})")
    except ValueError as err:  # frame.read_csv's refusals, or a Parquet reader's
        what = "a well-formed CSV file" if kind == "csv" else "readable as parquet"
        _fail(f"`{option}` {str(path)!r} is not {what} ({str(err).strip()})")  # leapcast's own words: whole
    if table.empty:
        _fail(f"`{option}` {str(path)!r} has columns {list(table.columns)} but no rows")
    return table


def _read_shards(folder: Path):
    """FILE as ``forecast --ray --output`` writes it: a folder of Parquet shards (its _errors/ skipped by name)."""
    import pandas as pd
    import pyarrow as pa

    if not any(p.suffix == ".parquet" for p in folder.iterdir()):
        _fail(
            f"FILE {str(folder)!r} is a folder without Parquet shards; pass a forecast file or `--ray`'s output folder"
        )
    try:
        return pd.read_parquet(folder)
    except (pa.ArrowException, OSError) as err:
        _fail(f"FILE {str(folder)!r}: its Parquet shards could not be read ({err})")
    raise AssertionError("unreachable")  # _fail raises


def _beside(path: Path, suffix: str) -> Path:
    """path with its table ending (.csv, .csv.gz, .parquet, ...) replaced by ``suffix``."""
    name = path.name
    ending = next(
        (e for e in sorted(CSV_SUFFIXES + PARQUET_SUFFIXES, key=len, reverse=True) if name.lower().endswith(e)),
        path.suffix,
    )
    return path.with_name(name[: len(name) - len(ending)] + suffix)


def _check_output(path: Path | None, option: str, suffixes: tuple[str, ...]) -> None:
    """Refuse an output path before any work: its folder must exist, its ending must be one we write."""
    if path is None:
        return
    if not path.name.lower().endswith(suffixes):
        _fail(f"`{option}` {str(path)!r}: expected a file ending in {', '.join(suffixes)}")
    if path.is_dir():
        _fail(f"`{option}` {str(path)!r} is a folder; name a file inside it")
    if path.parent.exists() and not path.parent.is_dir():
        _fail(f"`{option}` {str(path)!r}: {str(path.parent)!r} is a file, not a folder")
    if not path.parent.is_dir():
        _fail(f"`{option}` {str(path)!r}: the folder {str(path.parent)!r} does not exist; create it first")
    if path.name.lower().endswith(".zst") and importlib.util.find_spec("zstandard") is None:
        _fail(f"`{option}` {str(path)!r}: writing .zst needs the zstandard package (pip install zstandard)")


@contextmanager
def _refusals() -> Iterator[None]:
    """Run a command's work with CLI spellings in messages; bad input (raised by explicit checks,
    here or in the library, as Refused, ValueError, TypeError, FileNotFoundError or ImportError) exits 2 with one line."""
    with cli_spelling():
        try:
            yield
        except (Refused, ValueError, TypeError, FileNotFoundError, ImportError) as err:
            console.print("[red]error:[/red] " + escape(str(err)), soft_wrap=True, highlight=False)
            raise typer.Exit(2) from None


@app.command()
def forecast(
    ctx: typer.Context,
    model: str | None = typer.Option(
        None,
        "--model",
        "-m",
        help="Checkpoint folder (config.json + model.safetensors), bundled model name or model hub id (owner/name[@revision]); default: the bundled house-patch-target.",
    ),
    input: Path = typer.Option(
        ..., "--input", "-i", help="Long table (.csv, .csv.gz or .parquet) with id, time and target columns."
    ),
    h: int = typer.Option(..., "--h", help="Forecast horizon in steps."),
    quantiles: list[float] | None = typer.Option(
        None, "--quantiles", "-q", help="Quantile levels in (0, 1); repeat the option."
    ),
    level: list[float] | None = typer.Option(
        None, "--level", help="Prediction-interval levels in (0, 100); repeat the option."
    ),
    output: Path | None = typer.Option(
        None,
        "--output",
        "-o",
        help="Write forecasts here (.csv, .csv.gz or .parquet; its folder must exist); default: print CSV.",
    ),
    num_samples: int | None = typer.Option(None, help="Sample paths per series (default: the checkpoint's)."),
    temperature: float | None = typer.Option(None, help="Sampling temperature (default: the checkpoint's)."),
    top_k: int | None = typer.Option(None, help="Top-k (default: the checkpoint's); 1 = greedy."),
    top_p: float | None = typer.Option(None, help="Top-p (default: the checkpoint's)."),
    seed: int | None = typer.Option(
        None, help="Seed for reproducible samples (with --draft, add --fixed-k for exactly repeatable paths)."
    ),
    batch_size: int = typer.Option(32, help="Series per batch."),
    id_col: str = typer.Option("unique_id", help="Id column."),
    time_col: str = typer.Option("ds", help="Time column."),
    target_col: str = typer.Option("y", help="Target column."),
    freq: str | None = typer.Option(None, help="Pandas frequency alias (e.g. MS, D, h); inferred when omitted."),
    season_length: int | None = typer.Option(
        None,
        help="Season in steps for the seasonal adjustment; default: the frequency's (12 monthly, 4 quarterly, 24 hourly, ...).",
    ),
    seasonal_adjustment: bool | None = typer.Option(
        None,
        "--seasonal-adjustment/--no-seasonal-adjustment",
        help="Seasonally adjust seasonal series before the model and restore the season after (M4's classical decomposition); default: the checkpoint's (on for house-target, off for house-patch-target).",
    ),
    adjustment_seasons: int = typer.Option(
        RECENT_SEASONS,
        help="Seasonal indices averaged over the last this many seasons, as seasons drift (0: the whole history).",
    ),
    threads: int | None = typer.Option(None, help="torch CPU threads."),
    device: str = typer.Option("cpu", help="torch device: cpu, or cuda / cuda:N / mps where this torch build has it."),
    dtype: str = typer.Option(
        "float32",
        help="Precision tier of the linear maps: float32 (the reference), bfloat16 (float32 activations), or auto "
        "(bfloat16 where the CPU has bfloat16 matrix instructions). docs/precision.md.",
    ),
    compile: bool = typer.Option(
        False,
        "--compile",
        help="Chronos-T5 models: decoding steps and verify passes through torch.compile (x1.6-2.1 faster forecasts at "
        "batch 1, after a first batch that compiles for tens of seconds). docs/precision.md.",
    ),
    draft: str | None = typer.Option(
        None,
        help="Speculative decoding: a draft checkpoint/bundled name/hub id, early-exit:M (early-exit: M calibrated on the contexts), seasonal or seasonal:S.",
    ),
    k: int = typer.Option(4, "--k", help="Steps proposed per target pass (the most, with --adaptive)."),
    adaptive: bool = typer.Option(
        True,
        "--adaptive/--fixed-k",
        help="Choose k up to --k from measured speed, k=0 turning speculation off (default), or always propose --k steps.",
    ),
    stop_below: float | None = typer.Option(
        None, help="Draft stops proposing when its mean top probability falls below this."
    ),
    tolerance: float | None = typer.Option(
        None,
        help="Continuous heads (Toto), mean decoding (--top-k 1) with a draft: keep a proposed patch within this many "
        "context scales of the target's mean (not lossless; unset: exact).",
    ),
    stats_json: Path | None = typer.Option(None, help="Write speculative-decoding stats here."),
    ray: bool = typer.Option(
        False,
        "--ray",
        help="Forecast on a Ray cluster: --input a file, folder or glob of Parquet/CSV shards, --output a new folder "
        "of Parquet shards (failing series in its _errors/), --threads per worker. docs/distributed.md.",
    ),
    address: str | None = typer.Option(
        None, help="With --ray: the Ray cluster to join (head:6379); default: start a local one and stop it after."
    ),
    workers: int | None = typer.Option(
        None, help="With --ray: model workers (one model each); default: the cluster's CPUs // --threads."
    ),
) -> None:
    """Forecast every series of a long table (with --ray: of many shards, on a Ray cluster)."""
    if ray or address is not None or workers is not None:  # leapcast.distributed, with every option given here
        options = {name: value for name, value in locals().items() if name != "ctx"}
        _check_speculative(
            ctx, draft, k, adaptive, stop_below, tolerance, None
        )  # --stats-json: refused on Ray for itself
        from leapcast.distributed.cli import forecast_on_ray
        from leapcast.models.loading import leapcast_options
        from leapcast.registry import model_name, resolve

        with _refusals():  # the adjustment's options as the local command checks them, before Ray starts
            folder = resolve(model)
            adjusts = seasonal_adjustment
            if adjusts is None:
                adjusts = bool(leapcast_options(folder).get("seasonal_adjustment", False))
            _check_adjustment(
                ctx, model_name(model, folder), adjusts, seasonal_adjustment, season_length, adjustment_seasons
            )
            forecast_on_ray(console, **options)
        return
    _check_speculative(ctx, draft, k, adaptive, stop_below, tolerance, stats_json)
    import torch

    from leapcast.checks import check_device
    from leapcast.engine.speculative import SpecConfig
    from leapcast.forecaster import Forecaster
    from leapcast.inputs import check_horizon

    with _refusals():
        check_horizon(h, "h")
        check_int(threads, "threads", none=True, must=">= 1")
        _check_output(output, "--output", CSV_SUFFIXES + PARQUET_SUFFIXES)
        _check_output(stats_json, "--stats-json", (".json",))
        if output is not None and output.resolve() == input.resolve():
            _fail(f"`--output` {str(output)!r} is the `--input` file; the forecasts would overwrite the history")
        check_int(adjustment_seasons, "adjustment_seasons", low=0, must=">= 0 (0: the whole history)")
        device = check_device(device)
        df = _read_table(input, id_col=id_col)
        if threads is not None:
            torch.set_num_threads(threads)
        spec = SpecConfig(k=k, adaptive=adaptive, stop_below=stop_below, tolerance=tolerance)
        fc = Forecaster.from_pretrained(
            model,
            draft=draft,
            spec=spec,
            device=device,
            dtype=dtype,
            compile=compile,
            seasonal_adjustment=seasonal_adjustment,
            adjustment_seasons=adjustment_seasons or None,
        )
        _check_adjustment(ctx, fc.name, fc.seasonal_adjustment, seasonal_adjustment, season_length, adjustment_seasons)
        result = fc.forecast(
            df,
            h,
            quantiles=quantiles or None,
            level=level or None,
            id_col=id_col,
            time_col=time_col,
            target_col=target_col,
            freq=freq,
            season_length=season_length,
            num_samples=num_samples,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            seed=seed,
            batch_size=batch_size,
            progress=True,
        )
    with _refusals():
        _write(result, output)
    if fc.last_stats is not None:
        _print_stats(fc.last_stats, fc.last_stats.proposer)
        if stats_json is not None:
            try:
                stats_json.write_text(json.dumps(fc.last_stats.as_dict(), indent=2) + "\n")
            except OSError as err:
                with _refusals():
                    _fail(f"`--stats-json` {str(stats_json)!r} could not be written ({err.strerror or err})")


def _check_adjustment(
    ctx: typer.Context, name: str, adjusts: bool, asked: bool | None, season_length, adjustment_seasons
) -> None:
    """--season-length and --adjustment-seasons set the seasonal adjustment: refused, not ignored, where it is off."""
    from leapcast.forecaster import season_unused

    for option, given in (
        ("season_length", season_length is not None),
        ("adjustment_seasons", _given(ctx, "adjustment_seasons") or adjustment_seasons != RECENT_SEASONS),
    ):
        if given and not adjusts:
            _fail(season_unused(name, asked, option))


def _given(ctx: typer.Context, name: str) -> bool:
    """Whether the user wrote the option (or set its environment variable), even at its default value."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT")


def _check_speculative(ctx: typer.Context, draft, k, adaptive, stop_below, tolerance, stats_json) -> None:
    """Speculative decoding's options run only with a draft: given without one, they are refused, not ignored."""
    speculative = {"--k": _given(ctx, "k"), "--adaptive" if adaptive else "--fixed-k": _given(ctx, "adaptive")}
    speculative.update({"--stop-below": stop_below is not None, "--tolerance": tolerance is not None})
    speculative["--stats-json"] = stats_json is not None
    given = [option for option, on in speculative.items() if on]
    if draft is None and given:
        with _refusals():
            _fail(f"`{given[0]}` sets speculative decoding, which runs only with `--draft`; add one or leave it out")


def _write(result, output: Path | None) -> None:
    """The forecast frame to stdout or ``output``; a write the system refuses is named."""
    if output is None:
        typer.echo(result.to_csv(index=False), nl=False)
        return
    try:
        result.to_parquet(output, index=False) if _kind(output) == "parquet" else result.to_csv(output, index=False)
    except OSError as err:
        _fail(f"`--output` {str(output)!r} could not be written ({err.strerror or err})")
    console.print(f"wrote {len(result)} rows to {output}")


def _print_stats(stats, proposer: str) -> None:
    table = Table(title=f"speculative decoding ({proposer}, k up to {stats.k})", show_header=False)
    table.add_row("target passes", f"{stats.target_passes:,}")
    by_k = ", ".join(f"{'plain' if k == 0 else f'k={k}'}: {n:,}" for k, n in sorted(stats.passes_at_k.items()))
    table.add_row("target passes by steps drafted", by_k)
    table.add_row("drafts / drafted steps", f"{stats.drafts:,} / {stats.drafted_steps:,}")
    table.add_row("accepted steps", f"{stats.accepted_steps:,} ({stats.acceptance_rate:.1%})")
    table.add_row("mean accepted length", f"{stats.mean_accepted_length:.2f} steps per drafting row and target pass")
    per = ", ".join(f"{a / max(stats.drafts, 1):.2f}" for a in stats.accepted_per_position)
    table.add_row("kept at position 1..k", per)
    table.add_row("time: draft / verify / rest", f"{stats.draft_s:.2f}s / {stats.verify_s:.2f}s / {stats.other_s:.2f}s")
    if stats.residual_tries:
        table.add_row(
            "residual tries (continuous heads)", f"{stats.residual_tries:,} ({stats.residual_capped:,} capped)"
        )
    console.print(table)


@app.command()
def info(
    model: str | None = typer.Argument(None, help="Checkpoint folder, bundled model name or model hub id."),
    list_models: bool = typer.Option(False, "--list", help="List bundled models."),
) -> None:
    """Configuration, parameter count and size of a checkpoint."""
    from leapcast.models.loading import describe, load_model
    from leapcast.registry import BUNDLED_DIR, bundled_models, resolve

    if list_models and model is not None:
        with _refusals():
            _fail(f"pass a MODEL ({model!r}) or `--list`, not both: `--list` lists the bundled models only")
    if list_models or model is None:
        names = bundled_models()
        with _refusals():
            width = max(map(len, names), default=0)
            lines = [f"{name:<{width}}  {describe(BUNDLED_DIR / name)}" for name in names]
        typer.echo("\n".join(lines) if names else "no bundled models in this build")
        return
    with _refusals():
        folder = resolve(model, "MODEL")
        m = load_model(folder)
    size = sum(p.stat().st_size for p in folder.glob("*.safetensors"))
    table = Table(title=escape(str(folder)), show_header=False)  # a path may hold [brackets]
    rows = m.describe()
    rows = {
        **dict(list(rows.items())[:2]),
        "weights on disk": f"{size / 2**20:.1f} MiB",
        **dict(list(rows.items())[2:]),
    }
    for key, value in rows.items():
        table.add_row(key, value)
    Console().print(table)


@app.command()
def train(
    config: Path = typer.Argument(
        ...,
        help="Training config (JSON), e.g. leapcast/train/configs/target-0-base.json (a stage config may `extends` another).",
    ),
    out_dir: str | None = typer.Option(None, help="Override the config's out_dir."),
    steps: int | None = typer.Option(None, help="Override the number of optimizer steps."),
) -> None:
    """Pretrain a Chronos-T5- or Toto-architecture model from scratch (the config's `family`; resumes from OUT_DIR/last)."""
    from leapcast.train.config import TotoTrainConfig, TrainConfig, family_of

    with _refusals():
        if family_of(config) == "toto":
            from leapcast.train.toto_pretrain import train_toto as run

            cfg = TotoTrainConfig.from_file(config, out_dir=out_dir, steps=steps)
        else:
            from leapcast.train.pretrain import train as run

            cfg = TrainConfig.from_file(config, out_dir=out_dir, steps=steps)
        folder = run(cfg)  # its own refusals too (a resumed run's config, a loss that is no longer a number)
    console.print(f"checkpoint: {folder}")


@app.command()
def distill(
    target: str = typer.Option(..., "--target", help="Target checkpoint folder or bundled name."),
    out_dir: str = typer.Option(..., "--out-dir", help="Where the draft checkpoint goes (OUT_DIR/last)."),
    draft_config: Path | None = typer.Option(
        None, "--draft-config", help="JSON with draft dims and training settings (see DistillConfig)."
    ),
    steps: int | None = typer.Option(None, help="Override the number of steps."),
) -> None:
    """Distil a small draft that proposes for TARGET (Chronos-T5: same tokenizer, KL to its warped distributions;
    Toto: same patches and scaler, the log-likelihood of its draws)."""
    from leapcast.registry import resolve
    from leapcast.train.config import DistillConfig, TotoDistillConfig, target_family

    with _refusals():
        folder = str(resolve(target, "target"))
        toto = target_family(folder) == "toto"
        kind = TotoDistillConfig if toto else DistillConfig
        cfg = (
            kind.from_file(draft_config, target=folder, out_dir=out_dir, steps=steps)
            if draft_config
            else kind(target=folder, out_dir=out_dir, **({"steps": steps} if steps is not None else {}))
        )
        if toto:
            from leapcast.train.toto_distill import distill_toto as run
        else:
            from leapcast.train.distill import distill as run
        folder = run(cfg)
    console.print(f"draft: {folder}")


@app.command()
def init(
    path: Path = typer.Argument(..., help="Folder to write config.json + model.safetensors into."),
    family: str = typer.Option("chronos-t5", help="Model family: chronos-t5 or toto."),
    size: str = typer.Option(
        "tiny",
        help="Official size: chronos-t5 tiny, mini, small, base or large; toto base (the released 151M) or small.",
    ),
    seed: int = typer.Option(0, help="Weight seed."),
    prediction_length: int = typer.Option(64, help="Chronos-T5: steps per forward window; Toto: the default horizon."),
    context_length: int | None = typer.Option(
        None, help="Longest context read (default: 512 for chronos-t5, 4096 for toto)."
    ),
) -> None:
    """Write a RANDOM-weight checkpoint of an official size (for speed tests; it forecasts noise)."""
    from leapcast.models.zoo import write_random

    with _refusals():
        if path.exists() and not path.is_dir():
            _fail(f"PATH {str(path)!r} is a file; name a folder to write the checkpoint into")
        held = sorted(p.name for p in path.glob("*") if p.name == "config.json" or p.suffix == ".safetensors")
        if held:
            _fail(
                f"PATH {str(path)!r} already holds a checkpoint ({', '.join(held)}); random weights would replace "
                "it, so name a new folder (or delete that one first)"
            )
        check_int(prediction_length, "prediction_length")
        check_int(context_length, "context_length", none=True)
        try:
            folder = write_random(
                path, size, seed=seed, prediction_length=prediction_length, context_length=context_length, family=family
            )
        except OSError as err:
            _fail(f"PATH {str(path)!r} could not be written ({err.strerror or err}); name a folder you can write to")
    console.print(f"wrote random-weight {family}-{size} to {folder} ({json.dumps({'seed': seed})})")


@app.command()
def bench(
    suite: str = typer.Option(
        "quick",
        "--suite",
        help="quick (m3-monthly, 8 series: a ~20 s smoke test) or full (M3 + Tourism, 20 series each, k 2/4/8 and adaptive).",
    ),
    models: list[str] | None = typer.Option(
        None,
        "--models",
        help="Target checkpoint folder, bundled name or random:SIZE; repeat the option. Default: the bundled house-target if shipped, and random:tiny.",
    ),
    drafts: list[str] | None = typer.Option(
        None, "--drafts", help="Draft model per --models entry (same order), or one for all; none for no draft model."
    ),
    out_dir: Path = typer.Option(
        Path("leapcast-bench"),
        "--out-dir",
        help="Where <suite>-<date>.json/.md and the figures go (created if missing).",
    ),
    threads: int = typer.Option(2, help="torch CPU threads."),
    datasets: list[str] | None = typer.Option(
        None, "--datasets", help="Override the suite's data sets (M1/M3/Tourism names); repeat the option."
    ),
    max_series: int | None = typer.Option(None, help="Override the suite's series per data set."),
    repeats: int | None = typer.Option(None, help="Override the suite's interleaved timing repeats."),
    ks: list[int] | None = typer.Option(
        None, "--ks", help="Override the suite's proposal lengths k; repeat the option."
    ),
    batch_size: int | None = typer.Option(
        None, help="Override series per batch (default: a data set's series in one batch)."
    ),
    dtype: str | None = typer.Option(
        None, help="Precision tier of leapcast's models: float32 (default), bfloat16 or auto (docs/precision.md)."
    ),
) -> None:
    """Speed and accuracy of every decoding mode (official pipeline, plain, speculative) on official test windows."""
    from dataclasses import replace

    from leapcast.eval.bench import SUITES, check_requirements, run
    from leapcast.eval.report import markdown

    with _refusals():
        if suite not in SUITES:
            _fail(f"`--suite` must be one of {', '.join(SUITES)}, got {suite!r}")
        if out_dir.exists() and not out_dir.is_dir():
            _fail(f"`--out-dir` {str(out_dir)!r} is a file; name a folder")
        for option, given in (("--ks", ks), ("--datasets", datasets), ("--models", models)):
            repeated = sorted({str(v) for v in given or () if list(given or ()).count(v) > 1})
            if repeated:
                _fail(f"`{option}` repeats {', '.join(repeated)}; give each once")
        try:  # before the run: a folder that cannot be made would lose its results at the end
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            _fail(f"`--out-dir` {str(out_dir)!r} could not be made ({err.strerror or err}); name another folder")
        if not os.access(out_dir, os.W_OK):
            _fail(f"`--out-dir` {str(out_dir)!r} is not writable; name another folder")
        check_requirements()
        overrides = dict(
            datasets=tuple(datasets or ()) or None,
            max_series=max_series,
            repeats=repeats,
            ks=tuple(ks or ()) or None,
            batch_size=batch_size,
            dtype=dtype,
        )
        overrides = {name: value for name, value in overrides.items() if value is not None}
        chosen = replace(SUITES[suite], **overrides)
        result = run(
            chosen,
            models=models or None,
            drafts=drafts or None,
            out_dir=out_dir,
            threads=threads,
            log=lambda line: console.print(line, soft_wrap=True, markup=False, highlight=False),
            command="leapcast " + " ".join(sys.argv[1:]),
        )
    typer.echo(markdown(result))
    console.print(f"wrote {out_dir / (result['suite'] + '-' + result['date'])}.json, .md and figures")


@app.command()
def report(
    readme: Path = typer.Argument(
        ..., help="Markdown file with <!-- results:start --> and <!-- results:end --> markers (e.g. README.md)."
    ),
    suite: str = typer.Option("full", "--suite", help="Take the latest report of this suite."),
    results_dir: Path = typer.Option(
        Path("benchmarks/results"), "--results-dir", help="Where `leapcast bench` wrote its reports."
    ),
) -> None:
    """Rewrite the results section of README from the latest bench report."""
    from leapcast.eval.bench import SUITES
    from leapcast.eval.report import update_readme

    with _refusals():
        if suite not in SUITES:
            _fail(f"`--suite` must be one of {', '.join(SUITES)}, got {suite!r}")
        if not readme.is_file():
            _fail(f"README {str(readme)!r}: {'a folder, not a file' if readme.is_dir() else 'no such file'}")
        source = update_readme(readme, results_dir, suite)
    console.print(f"updated {readme} from {source}")


@app.command()
def plot(
    file: Path = typer.Argument(
        ..., help="Forecasts as written by `leapcast forecast --output`: a .csv or .parquet file, or --ray's folder."
    ),
    out: Path | None = typer.Option(None, "--out", "-o", help="PNG to write; default: FILE with .png."),
    ids: list[str] | None = typer.Option(
        None, "--ids", help="Series to draw; repeat the option. Default: the first four."
    ),
    input: Path | None = typer.Option(
        None, "--input", "-i", help="The history (the forecast's input table), drawn before the forecast."
    ),
    model: str | None = typer.Option(
        None, "--model", "-m", help="Which model's columns to draw, when the file has several."
    ),
    last: int | None = typer.Option(None, help="Draw only the last N history values per series."),
    id_col: str = typer.Option("unique_id", help="Id column."),
    time_col: str = typer.Option("ds", help="Time column."),
    target_col: str = typer.Option("y", help="Target column of --input."),
) -> None:
    """Fan chart (median, 80%/95% bands as present) of a forecast file."""
    from leapcast.eval.plots import bands_from_columns, forecast_figure, point_columns, save

    with _refusals():
        if _kind(file) is None and not file.is_dir():
            _fail(
                f"FILE {str(file)!r}: expected a forecast file ending in {', '.join(CSV_SUFFIXES + PARQUET_SUFFIXES)}"
            )
        out = out or _beside(file.resolve() if file.is_dir() else file, ".png")  # `.`: the folder it means
        _check_output(out, "--out", (".png",))
        _check_requirements_plot()
        check_int(last, "last", none=True, must="a positive integer (values of history per series)")
        forecasts = _read_shards(file) if file.is_dir() else _read_table(file, "FILE", id_col)
        history = _read_table(input, "--input", id_col) if input is not None else None
        for f, name, cols in (
            (forecasts, file.name, [id_col, time_col]),
            (history, "--input", [id_col, time_col, target_col]),
        ):
            if f is None:
                continue
            missing = [c for c in cols if c not in f.columns]
            if missing:
                _fail(f"{name} has no column(s) {missing}; pass --id-col/--time-col/--target-col")
            for col in [time_col, "cutoff"] if f is forecasts and "cutoff" in f.columns else [time_col]:
                try:  # as `leapcast forecast` reads them: day-first where proven, local dates across DST, ...
                    f[col] = _times(f[col], col)
                except (ValueError, TypeError) as err:
                    _fail(f"{name}: {err}")
            f[id_col] = f[id_col].astype(str)  # --ids arrive as strings
            if f is forecasts and "cutoff" in f.columns:  # cross_validation's frame: one window per cutoff
                last_cutoff = f.groupby(id_col)["cutoff"].transform("max")
                if (f["cutoff"] != last_cutoff).any():
                    most = int(f.groupby(id_col)["cutoff"].nunique().max())
                    console.print(f"{name}: drawing each series' last cutoff (of up to {most} a series)")
                    forecasts = f = f[f["cutoff"] == last_cutoff].copy()
            twice = f.duplicated([id_col, time_col])
            if twice.any():
                uid, when = f.loc[twice, [id_col, time_col]].iloc[0].tolist()
                _fail(
                    f"{name} has {int(twice.sum())} repeated ({id_col}, {time_col}) rows, e.g. ({uid}, {when}); "
                    "keep one each"
                )
        if history is not None and _date_kind(history[time_col]) != _date_kind(forecasts[time_col]):
            _fail(
                f"column {time_col!r} holds {_date_kind(forecasts[time_col])} in {file.name} but "
                f"{_date_kind(history[time_col])} in --input: pass the history {file.name} was forecast from"
            )
        names = point_columns(list(forecasts.columns), [id_col, time_col, target_col, "cutoff"])
        if not names:
            _fail(
                f"FILE {file.name} has no forecast columns, only {list(forecasts.columns)}: is it the history? "
                "Pass the history as --input and a file written by `leapcast forecast --output` as FILE"
            )
        model = model or names[0]
        wanted = ids or list(dict.fromkeys(forecasts[id_col]))[:4]
        unknown = [i for i in wanted if i not in set(forecasts[id_col])]
        if model not in names:
            _fail(f"`--model` {model!r} is not a model column of {file.name}; its models: {names}")
        if unknown:
            _fail(f"`--ids` {unknown} are not in {file.name}")
        if history is not None and not set(wanted) & set(history[id_col]):
            _fail(
                f"`--input` holds none of the series drawn ({', '.join(map(repr, wanted))}); pass the history "
                f"{file.name} was forecast from"
            )
        drawn = [model, *[c for pair in bands_from_columns(forecasts.columns, model).values() for c in pair]]
        for f, name, cols in ((forecasts, file.name, drawn), (history, "--input", [target_col])):
            for col in cols if f is not None else []:
                _numeric(f, col, name)
    fig = forecast_figure(
        forecasts, model, wanted, history, id_col=id_col, time_col=time_col, target_col=target_col, last=last
    )
    try:
        out = save(fig, out)
    except OSError as err:
        with _refusals():
            _fail(f"`--out` {str(out)!r} could not be written ({err.strerror or err})")
    console.print(f"wrote {out}")


def _times(col, name: str):
    """A time column as ``leapcast forecast`` reads it (``frame.to_panel``'s rules): datetimes or integer steps."""
    import numpy as np

    from leapcast.frame import _time_values

    values = _time_values(col, name)
    return values.astype(np.int64) if isinstance(values, np.ndarray) else values


def _date_kind(col) -> str:
    """What a time column holds, for telling a forecast and a history apart: dates or step numbers."""
    import pandas as pd

    return "dates" if pd.api.types.is_datetime64_any_dtype(col) else "step numbers"


def _numeric(frame, col: str, name: str) -> None:
    """Column ``col`` of ``frame`` as floats, in place; a value that is not a number is named."""
    import pandas as pd

    values = pd.to_numeric(frame[col], errors="coerce")
    bad = values.isna() & frame[col].notna()
    if bad.any():
        _fail(f"{name}: column {col!r} holds values that are not numbers, e.g. {frame.loc[bad, col].iloc[0]!r}")
    frame[col] = values.astype(float)


def _check_requirements_plot() -> None:
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        _fail("`leapcast plot` draws with matplotlib, which is not installed: pip install matplotlib")


def _register_serve() -> None:
    from leapcast.serve.command import serve

    app.command(name="serve")(serve)  # the HTTP server (leapcast/serve, docs/serving.md)


_register_serve()


def main() -> None:
    """The `leapcast` command: the app, and a last resort for what no check foresaw (a bug, not bad input)."""
    warnings.formatwarning = _one_line_warning  # a warning for the user, not a pointer into leapcast's source
    try:
        app()
    except Exception as err:  # bad input exits 2 from explicit checks; anything reaching here is a leapcast bug
        if os.environ.get("LEAPCAST_TRACEBACK"):
            raise
        refusal = _machine_refusal(err)  # ... or the machine's: a folder not writable, a full disk, no memory left
        if refusal is not None:
            console.print(f"[red]error:[/red] {escape(refusal)}", soft_wrap=True, highlight=False)
            sys.exit(2)
        console.print(
            f"[red]internal error[/red] ({type(err).__name__}): {escape(str(err))}\n"
            "This is a bug in leapcast, not in your input: please report it with the command you ran "
            "(LEAPCAST_TRACEBACK=1 shows the traceback).",
            soft_wrap=True,
            highlight=False,
        )
        sys.exit(1)


def _machine_refusal(err: Exception) -> str | None:
    """What to tell the user when the machine refused the work (not a leapcast bug), else None."""
    if isinstance(err, OSError):
        return (err.strerror or str(err)) + (f" ({err.filename})" if err.filename else "")
    if isinstance(err, MemoryError) or (
        isinstance(err, RuntimeError) and ("allocate memory" in str(err) or "out of memory" in str(err))
    ):
        return (
            "out of memory; work on fewer rows at once (forecast, serve: a lower --batch-size, --num-samples or "
            "--max-rows; train, distill: a lower batch_size in the config)"
        )
    return None


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    return f"warning: {message}\n"


if __name__ == "__main__":
    main()
