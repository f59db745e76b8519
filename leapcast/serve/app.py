"""The HTTP API (FastAPI): ``POST /v1/forecast`` (JSON), ``POST /v1/forecast/frame`` (CSV or Arrow IPC long frame),
``GET /healthz``, ``/readyz``, ``/metrics``, and the OpenAPI docs at ``/docs``. docs/serving.md describes it.

Every refusal is a 4xx whose ``detail`` says what was wrong: 400 an unreadable body, 413 a limit on the amount
of data, 415 a body type not read here, 422 a value out of range (the library's own checks, and pydantic's),
429 a full queue (with Retry-After), 503 not ready or shutting down, 504 a request past ``--timeout``. A 500
is a bug in leapcast, never the caller's input.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from leapcast.forecaster import Forecaster
from leapcast.serve.forecasts import (
    ARROW_FILE,
    ARROW_STREAM,
    CSV,
    BadBody,
    FrameParams,
    Work,
    frame_work,
    json_work,
    read_frame,
    write_frame,
)
from leapcast.serve.limits import LimitExceeded, ServeConfig
from leapcast.serve.metrics import Metrics
from leapcast.serve.scheduler import Closed, GivenUp, QueueFull, Scheduler
from leapcast.serve.schemas import ErrorResponse, ForecastRequest, ForecastResponse

log = logging.getLogger("leapcast.serve")
ROUTES = ("/v1/forecast", "/v1/forecast/frame", "/healthz", "/readyz", "/metrics")


class NotReady(Exception):
    """The model is loading or warming up, or the server is draining."""


class TimedOut(Exception):
    pass


class ClientGone(Exception):
    pass


class ServerState:
    """The model, its scheduler, and whether they are ready; shared by the routes and the lifespan."""

    def __init__(self, config: ServeConfig, forecaster: Forecaster | None) -> None:
        self.config = config
        self.fc = forecaster
        self.metrics = Metrics()
        self.scheduler: Scheduler | None = None
        self.ready = threading.Event()
        self.draining = False
        self.error: str | None = None

    def start(self) -> None:
        """Load the model (unless given), start the engine thread, warm it up; /readyz answers 200 after."""
        try:
            if self.fc is None:
                self.fc = load_forecaster(self.config)
            self.scheduler = Scheduler(self.fc, self.config, self.metrics)
            self.scheduler.start()
            if self.config.warmup:
                prepared = self.fc.prepare([[float(i % 7) for i in range(48)]], min(8, self.config.max_h), seed=0)
                self.scheduler.submit(prepared, 0).future.result()
            self.ready.set()
        except Exception as err:  # noqa: BLE001 - reported by /readyz and the log
            self.error = f"{type(err).__name__}: {err}"
            log.exception("the model could not be loaded or warmed up")

    def live(self) -> tuple[Forecaster, Scheduler]:
        if self.draining:
            raise NotReady("the server is shutting down")
        if not self.ready.is_set() or self.fc is None or self.scheduler is None:
            raise NotReady(f"the model is not ready ({self.error or 'loading'}); poll GET /readyz")
        return self.fc, self.scheduler


def load_forecaster(config: ServeConfig) -> Forecaster:
    """``Forecaster.from_pretrained`` with the server's model, draft and dtype (unset: the library's defaults)."""
    from leapcast.engine.speculative import SpecConfig

    extra = {} if config.dtype is None else {"dtype": config.dtype}
    spec = SpecConfig(k=config.k, adaptive=config.adaptive) if config.draft is not None else None
    return Forecaster.from_pretrained(config.model, draft=config.draft, spec=spec, **extra)


def create_app(config: ServeConfig | None = None, forecaster: Forecaster | None = None) -> FastAPI:
    """The server's app. With a ``forecaster`` it is ready when the app has started (tests); without one the
    model loads in the background while /healthz answers and /readyz says 503."""
    config = config or ServeConfig()
    state = ServerState(config, forecaster)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if forecaster is not None:
            await run_in_threadpool(state.start)
        else:
            threading.Thread(target=state.start, name="leapcast-load", daemon=True).start()
        yield
        state.draining = True
        if state.scheduler is not None:
            await run_in_threadpool(state.scheduler.close, True, config.drain_s)

    app = FastAPI(
        title="leapcast",
        summary="Probabilistic forecasts from autoregressive time-series models, continuously batched.",
        version="0.1.0",
        lifespan=lifespan,
        responses={
            code: {"model": ErrorResponse, "description": text}
            for code, text in (
                (400, "Unreadable body"),
                (413, "Over a size limit (named)"),
                (422, "Invalid value (named)"),
                (429, "Queue full: retry after Retry-After seconds"),
                (503, "Not ready, or shutting down"),
                (504, "Not done within --timeout"),
            )
        },
    )
    app.state.leapcast = state
    app.add_middleware(Guard, state=state)
    _handlers(app)

    @app.post("/v1/forecast", response_model=ForecastResponse)
    async def forecast(req: ForecastRequest, request: Request):
        """Forecast the JSON series: per series its mean, median, quantiles (or intervals), future timestamps
        when it had timestamps, and its sample paths on request."""
        _check_accept(
            request.headers.get("accept", ""),
            ("json",),
            "JSON; frames as CSV or Arrow IPC come from /v1/forecast/frame",
        )
        fc, scheduler = state.live()
        work = await run_in_threadpool(json_work, fc, req, config)
        body = await _forecast(request, fc, scheduler, work, config)
        return await run_in_threadpool(JSONResponse, body)  # encoded off the event loop: answers can be large

    @app.post(
        "/v1/forecast/frame",
        response_class=Response,
        openapi_extra={
            "requestBody": {
                "required": True,
                "description": "A long frame: one row per (series, time), columns unique_id, ds, y (names set by "
                "id_col, time_col, target_col).",
                "content": {t: {"schema": {"type": "string", "format": "binary"}} for t in (CSV, ARROW_STREAM)},
            }
        },
        responses={200: {"content": {CSV: {}, ARROW_STREAM: {}}, "description": "Forecaster.forecast's frame"}},
    )
    async def forecast_frame(
        request: Request,
        h: Annotated[int, Query(description="Horizon in steps.")],
        quantiles: Annotated[list[float] | None, Query(description="Quantile levels in (0, 1); repeatable.")] = None,
        level: Annotated[list[float] | None, Query(description="Interval levels in (0, 100); repeatable.")] = None,
        point: Annotated[str, Query(description="The point column: median or mean.")] = "median",
        id_col: str = "unique_id",
        time_col: str = "ds",
        target_col: str = "y",
        freq: Annotated[
            str | None,
            Query(description="Pandas frequency alias (or an int step for integer times); inferred when omitted."),
        ] = None,
        season_length: int | None = None,
        num_samples: int | None = None,
        temperature: float | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | None = None,
    ):
        """Forecast a long frame (CSV or Arrow IPC body): the answer is ``Forecaster.forecast``'s frame, as CSV
        or an Arrow IPC stream (the request's type, or the Accept header's); the seed used is in X-Leapcast-Seed."""
        _check_query(request)
        fc, scheduler = state.live()
        kind = request.headers.get("content-type", "")
        out = _answer_kind(request.headers.get("accept", ""), kind)
        df = await run_in_threadpool(read_frame, await request.body(), kind, id_col)
        params = FrameParams(
            h=h,
            quantiles=quantiles,
            level=level,
            point=point,
            id_col=id_col,
            time_col=time_col,
            target_col=target_col,
            freq=freq,  # digits: an int step (frame.to_panel)
            season_length=season_length,
            num_samples=num_samples,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            seed=seed,
        )
        work = await run_in_threadpool(frame_work, fc, df, params, config)
        frame = await _forecast(request, fc, scheduler, work, config)
        body = await run_in_threadpool(write_frame, frame, out)
        return Response(body, media_type=out, headers={"X-Leapcast-Seed": str(work.seed)})

    @app.get("/healthz")
    async def healthz():
        """The process is up (liveness)."""
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz():
        """200 once the model is loaded and warmed up; 503 while loading, after a failed load, or draining."""
        if state.draining:
            return JSONResponse({"status": "draining"}, status_code=503)
        if not state.ready.is_set():
            return JSONResponse({"status": "failed" if state.error else "loading", "error": state.error}, 503)
        assert state.fc is not None
        return {"status": "ready", "model": state.fc.name, "batching": config.batching, "max_rows": config.max_rows}

    @app.get("/metrics")
    async def metrics():
        """Prometheus text format."""
        body, content_type = state.metrics.exposition()
        return Response(body, media_type=content_type)

    return app


async def _forecast(request: Request, fc: Forecaster, scheduler: Scheduler, work: Work, config: ServeConfig):
    """Queue the work, wait for its samples (no longer than ``timeout_s``, and only while the client is there),
    and build the answer."""
    job = scheduler.submit(work.prepared, work.seed)
    done = asyncio.wrap_future(job.future)
    gone = asyncio.ensure_future(_client_gone(request))
    try:
        finished, _ = await asyncio.wait({done, gone}, timeout=config.timeout_s, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        scheduler.cancel(job)
        done.cancel()
        raise
    finally:
        gone.cancel()
    if done not in finished:
        scheduler.cancel(job)
        done.cancel()
        if gone in finished:
            raise ClientGone()
        raise TimedOut(f"the forecast took longer than this server's limit of {config.timeout_s:g} s (`--timeout`)")
    samples = done.result()  # the job's own error, if it failed
    return await run_in_threadpool(lambda: work.answer(fc.finish(work.prepared, samples)))


async def _client_gone(request: Request) -> None:
    """Returns when the client disconnects (the body has been read: the next message is the disconnect)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


def _check_query(request: Request) -> None:
    """The frame route's query names only its own parameters: a misspelt one would otherwise be dropped unseen."""
    known = [f.name for f in dataclasses.fields(FrameParams)]
    unknown = sorted(set(request.query_params) - set(known))
    if unknown:
        hint = " (the JSON route's `levels` is `level` here)" if "levels" in unknown else ""
        raise ValueError(f"unknown query parameters {unknown}{hint}; this route takes {', '.join(known)}")


def _check_accept(accept: str, takes: tuple[str, ...], answers: str) -> None:
    """A 406 for an Accept header that allows none of what the route writes (``takes``: words of its types), checked
    before any decoding."""
    kinds = [a.split(";")[0].strip().lower() for a in accept.split(",") if a.strip()]
    if kinds and not any(k in ("*/*", "text/*", "application/*") or any(t in k for t in takes) for k in kinds):
        raise BadBody(f"this route answers {answers}, not {accept!r} (the Accept header)", 406)


def _answer_kind(accept: str, sent: str) -> str:
    """The frame answer's type: what Accept names (CSV or an Arrow stream), else the request's own; an Accept that
    allows neither (only JSON, say) is a 406, checked before any decoding."""
    accept = accept.lower()
    if ARROW_STREAM in accept or ARROW_FILE in accept:
        return ARROW_STREAM
    if CSV in accept:
        return CSV
    _check_accept(accept, (), f"{CSV} or {ARROW_STREAM}; JSON answers come from /v1/forecast")
    return CSV if sent.split(";")[0].strip().lower() == CSV else ARROW_STREAM


def _error(status: int, detail: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def _handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        sent = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if request.url.path == "/v1/forecast" and not sent.endswith("json"):  # FastAPI parses JSON types only
            return _error(
                415,
                f"the body's Content-Type is {sent or 'not given'!r}; send JSON as application/json "
                "(a CSV or Arrow IPC frame goes to /v1/forecast/frame)",
            )
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            ctx = next(e for e in errors if e.get("type") == "json_invalid").get("ctx", {})
            return _error(400, f"the body is not valid JSON ({ctx.get('error', 'malformed')})")
        parts = []
        for e in errors[:10]:
            where = ".".join(str(x) for x in e.get("loc", ()) if x != "body")
            parts.append(f"{where or 'body'}: {e.get('msg')}")
        more = f" (and {len(errors) - 10} more)" if len(errors) > 10 else ""
        return _error(422, "; ".join(parts) + more)

    @app.exception_handler(LimitExceeded)
    async def limit(request: Request, exc: LimitExceeded):
        return _error(exc.status, str(exc))

    @app.exception_handler(BadBody)
    async def bad_body(request: Request, exc: BadBody):
        return _error(exc.status, str(exc))

    @app.exception_handler(ValueError)
    async def bad_value(request: Request, exc: ValueError):
        return _error(422, str(exc))

    @app.exception_handler(ArithmeticError)
    async def numeric(request: Request, exc: ArithmeticError):  # a request's numbers failed in the engine, alone
        return _error(422, f"the request's series could not be forecast ({type(exc).__name__}: {exc})")

    @app.exception_handler(TypeError)
    async def bad_type(request: Request, exc: TypeError):
        return _error(422, str(exc))

    @app.exception_handler(QueueFull)
    async def full(request: Request, exc: QueueFull):
        return _error(429, str(exc), {"Retry-After": str(exc.retry_after)})

    @app.exception_handler(NotReady)
    async def not_ready(request: Request, exc: NotReady):
        return _error(503, str(exc), {"Retry-After": "1"})

    @app.exception_handler(Closed)
    async def closed(request: Request, exc: Closed):
        return _error(503, str(exc))

    @app.exception_handler(TimedOut)
    async def timed_out(request: Request, exc: TimedOut):
        return _error(504, str(exc))

    @app.exception_handler(GivenUp)
    async def given_up(request: Request, exc: GivenUp):
        return _error(503, str(exc))

    @app.exception_handler(ClientGone)
    async def client_gone(request: Request, exc: ClientGone):
        return _error(499, "the client closed the connection")  # never read: nginx's code, for the logs

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception):
        log.error("internal error", exc_info=exc)
        return _error(500, f"internal error ({type(exc).__name__}: {exc}); a bug in leapcast, not in the request")


class Guard:
    """ASGI middleware: refuses bodies over ``max_body_bytes`` (413) before the app reads them, and counts
    every answer by route and status, with the latency of the forecast routes."""

    def __init__(self, app, state: ServerState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = scope["path"] if scope["path"] in ROUTES else "other"
        started = time.perf_counter()
        status = [500]

        async def counted(message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            if scope["method"] in ("POST", "PUT", "PATCH"):
                body = await self._body(scope, receive)
                if body is None:
                    limit = self.state.config.max_body_bytes
                    await _error(413, f"the body is over this server's limit of {limit} bytes (`--max-body-mb`)")(
                        scope, receive, counted
                    )
                    return
                receive = _replay(body, receive)
            await self.app(scope, receive, counted)
        finally:
            m = self.state.metrics
            m.requests.labels(route, str(status[0])).inc()
            if route.startswith("/v1/"):
                m.latency.labels(route).observe(time.perf_counter() - started)

    async def _body(self, scope, receive) -> bytes | None:
        """The whole body, or None when it is over the limit (declared or sent)."""
        limit = self.state.config.max_body_bytes
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                return None
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break  # the client left mid-body: the app sees an empty body and the disconnect
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)


def _replay(body: bytes, receive):
    """An ASGI receive that gives ``body`` once, then whatever the connection sends next (the disconnect)."""
    sent = False

    async def replayed():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed
