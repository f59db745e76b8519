"""``leapcast serve``: the command's options, registered by ``leapcast.cli``; docs/serving.md."""

from __future__ import annotations

import importlib.util
import os

import typer

from leapcast.checks import cli_spelling

PRIMITIVE_CACHE = 64  # compiled products a server keeps per cache (oneDNN's and torch's defaults: 1,024)
CACHE_VARIABLES = ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "LRU_CACHE_CAPACITY")


def bound_compiled_products() -> None:
    """Cap oneDNN's primitive cache and torch's cache in front of it at ``PRIMITIVE_CACHE`` entries, unless the
    user set them: both keep a compiled product per shape, and continuous batching meets a new row count nearly
    every pass, so their default 1,024 entries each grew a server by hundreds of MB over minutes
    (docs/serving.md). Read when the first product runs, so this goes before the model loads."""
    for variable in CACHE_VARIABLES:
        os.environ.setdefault(variable, str(PRIMITIVE_CACHE))


def serve(
    ctx: typer.Context,
    model: str | None = typer.Option(
        None,
        "--model",
        "-m",
        help="Checkpoint folder, bundled model name or hub id; default: the bundled house-patch-target.",
    ),
    draft: str | None = typer.Option(None, help="Speculative decoding's draft, as `leapcast forecast --draft`."),
    k: int = typer.Option(4, "--k", help="With --draft: steps proposed per target pass (the most, with --adaptive)."),
    adaptive: bool = typer.Option(True, "--adaptive/--fixed-k", help="With --draft: choose k from measured speed."),
    dtype: str | None = typer.Option(None, help="Precision tier (float32, bfloat16, auto); default: the library's."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on (0.0.0.0: every interface)."),
    port: int = typer.Option(8000, help="Port to listen on."),
    batching: str = typer.Option(
        "continuous",
        help="continuous (series join and leave the decode loop between iterations), static (windows of "
        "--static-max-requests requests or --static-window-ms, by horizon bucket) or off (one request at a time).",
    ),
    max_rows: int = typer.Option(640, help="Rows (series x sample paths) decoding at once."),
    max_queue: int = typer.Option(256, help="Requests waiting for rows; beyond them: 429 with Retry-After."),
    max_series: int = typer.Option(256, help="Series per request (413 beyond)."),
    max_h: int = typer.Option(2048, help="Largest horizon (422 beyond)."),
    max_context: int = typer.Option(20_000, help="Longest series, in values (413 beyond)."),
    max_samples: int | None = typer.Option(
        None, help="Most sample paths per series (422 beyond); default: --max-rows."
    ),
    max_body_mb: float = typer.Option(16.0, help="Largest request body in MiB (413 beyond)."),
    max_values: int = typer.Option(
        2**24, help="Most values one answer holds, series x sample paths x h (413 beyond): the memory a request takes."
    ),
    timeout: float = typer.Option(120.0, help="Seconds a request may take (504 after; its rows are dropped); 0: none."),
    join_share: float = typer.Option(
        0.25,
        help="continuous: queued series join once this share of --max-rows is free (each join runs a context pass).",
    ),
    long_steps: int = typer.Option(
        64, help="continuous: requests of more model steps decode in a lane of their own (0: one lane)."
    ),
    long_share: float = typer.Option(
        0.25, help="continuous: the long lane's share of decode iterations while shorter requests decode too."
    ),
    static_max_requests: int = typer.Option(32, help="static: most requests per batch."),
    static_window_ms: float = typer.Option(10.0, help="static: how long a batch waits to fill."),
    static_leave: bool = typer.Option(
        False,
        "--static-leave",
        help="static: series leave the batch as they finish, instead of decoding to its longest horizon as a batch "
        "handler calling a pipeline does.",
    ),
    drain_timeout: float = typer.Option(30.0, help="On SIGTERM: seconds requests in flight may take to finish."),
    threads: int | None = typer.Option(None, help="torch CPU threads."),
    log_level: str = typer.Option("info", help="uvicorn's log level (warning: no line per request)."),
) -> None:
    """Serve forecasts over HTTP: POST /v1/forecast (JSON) and /v1/forecast/frame (CSV or Arrow), /docs."""
    missing = [m for m in ("fastapi", "uvicorn", "prometheus_client") if importlib.util.find_spec(m) is None]
    with cli_spelling():
        try:
            if missing:
                raise ValueError(f"`leapcast serve` needs {', '.join(missing)}: pip install 'leapcast[serve]'")
            levels = ("critical", "error", "warning", "info", "debug", "trace")
            if log_level.lower() not in levels:
                raise ValueError(f"`--log-level` must be one of {', '.join(levels)}, got {log_level!r}")
            for name, option in (("k", "--k"), ("adaptive", "--adaptive" if adaptive else "--fixed-k")):
                source = ctx.get_parameter_source(name)  # written out, even at its default: refused, not ignored
                if draft is None and source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT"):
                    raise ValueError(f"`{option}` sets speculative decoding, which runs only with `--draft`; add one")
            from leapcast.serve.app import load_forecaster
            from leapcast.serve.limits import ServeConfig

            config = ServeConfig(
                model=model,
                draft=draft,
                dtype=dtype,
                k=k,
                adaptive=adaptive,
                host=host,
                port=port,
                batching=batching,
                max_rows=max_rows,
                max_queue=max_queue,
                max_series=max_series,
                max_h=max_h,
                max_context=max_context,
                max_samples=max_samples,
                max_body_bytes=max(1, int(max_body_mb * 2**20)),
                max_values=max_values,
                timeout_s=timeout or None,
                join_share=join_share,
                long_steps=long_steps,
                long_share=long_share,
                static_max_requests=static_max_requests,
                static_window_ms=static_window_ms,
                static_leave=static_leave,
                drain_s=drain_timeout,
                threads=threads,
            )
            if threads is not None:
                import torch

                torch.set_num_threads(threads)
            bound_compiled_products()
            forecaster = load_forecaster(config)
        except (ValueError, TypeError, FileNotFoundError, ImportError) as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(2) from None
    from leapcast.serve.server import run

    run(config, forecaster, log_level=log_level.lower())
