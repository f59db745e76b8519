"""The server's settings and limits, checked once at start-up; each limit is named in the answer that hits it."""

from __future__ import annotations

from dataclasses import dataclass

from leapcast.checks import check_int, cli_spelled, param
from leapcast.inputs import MAX_HORIZON

BATCHING = ("continuous", "static", "off")
_OPTION = {"timeout_s": "timeout", "drain_s": "drain_timeout"}  # fields whose CLI option has another name


@dataclass(frozen=True)
class ServeConfig:
    """How ``leapcast serve`` runs.

    model, draft, dtype: as ``Forecaster.from_pretrained`` takes them (None: the library's default);
    k, adaptive: speculative decoding's ``SpecConfig`` when there is a draft.
    batching: "continuous" (series join and leave the decode loop between iterations), "static" (requests gathered
        for ``static_window_ms`` or until ``static_max_requests``, by horizon bucket, then decoded to the end of the
        batch's longest horizon), or "off" (one request at a time).
    static_leave: static: series leave the batch as they finish, instead of decoding to the batch's longest horizon
        as a batch handler calling a pipeline with one ``prediction_length`` does (a stronger baseline).
    max_rows: rows (series x sample paths) decoding at once; the decode loop's budget in every mode.
    join_share: continuous: queued series join once this share of ``max_rows`` is free (or the loop is idle, or
        all that waits fits): every join runs a context pass, so joins come in waves.
    long_steps, long_share: continuous: requests of more than ``long_steps`` model steps decode in a lane of their
        own, which takes ``long_share`` of the decode iterations while shorter requests decode too (0: one lane).
    max_queue: requests waiting for rows; one more is answered 429 with Retry-After.
    max_series, max_h, max_context, max_samples, max_body_bytes: per-request limits (413 / 422, naming the limit);
        max_samples None: max_rows.
    max_values: the most values one answer may hold, series x sample paths x h (413 beyond): the engine keeps a
        request's paths in float64 until it answers, and ``return_samples`` sends them all.
    timeout_s: a request not answered within it is given up (504) and its rows dropped; None: no timeout.
    drain_s: on SIGTERM, how long requests in flight may take to finish before the server exits anyway.
    warmup: decode one small forecast before answering /readyz with 200.
    """

    model: str | None = None
    draft: str | None = None
    dtype: str | None = None
    k: int = 4
    adaptive: bool = True
    host: str = "127.0.0.1"
    port: int = 8000
    batching: str = "continuous"
    max_rows: int = 640
    max_queue: int = 256
    max_series: int = 256
    max_h: int = 2048
    max_context: int = 20_000
    max_samples: int | None = None
    max_body_bytes: int = 16 * 2**20
    max_values: int = 2**24
    timeout_s: float | None = 120.0
    join_share: float = 0.25
    long_steps: int = 64
    long_share: float = 0.25
    static_max_requests: int = 32
    static_window_ms: float = 10.0
    static_leave: bool = False
    drain_s: float = 30.0
    threads: int | None = None
    warmup: bool = True

    def __post_init__(self) -> None:
        if self.draft is None and (self.k != ServeConfig.k or not self.adaptive):  # refused, not ignored
            option = (
                param("k") if self.k != ServeConfig.k else param("fixed_k") if cli_spelled() else "`adaptive=False`"
            )
            raise ValueError(f"{option} sets speculative decoding, which runs only with {param('draft')}")
        if self.batching not in BATCHING:
            raise ValueError(f"{param('batching')} must be one of {', '.join(BATCHING)}, got {self.batching!r}")
        check_int(self.port, "port", low=0, high=65536, must="an integer in 0..65535")
        for name in ("max_rows", "max_queue", "max_series", "max_context", "max_body_bytes", "max_values"):
            check_int(getattr(self, name), name)
        check_int(self.max_samples, "max_samples", none=True)
        check_int(self.static_max_requests, "static_max_requests")
        if not isinstance(self.static_leave, bool):
            raise ValueError(f"{param('static_leave')} must be True or False, got {self.static_leave!r}")
        check_int(self.long_steps, "long_steps", low=0, must="an integer >= 0 (0: one lane)")
        check_int(self.threads, "threads", none=True)
        check_int(self.max_h, "max_h", high=MAX_HORIZON + 1, must=f"an integer in 1..{MAX_HORIZON}")
        if self.max_samples is not None and self.max_samples > self.max_rows:
            raise ValueError(
                f"{param('max_samples')} ({self.max_samples}) exceeds {param('max_rows')} ({self.max_rows}): one "
                "series' sample paths must fit in the decode loop's rows"
            )
        if (
            isinstance(self.join_share, bool)
            or not isinstance(self.join_share, (int, float))
            or not 0 <= self.join_share <= 1
        ):
            raise ValueError(f"{param('join_share')} must be a number in [0, 1], got {self.join_share!r}")
        if (
            isinstance(self.long_share, bool)
            or not isinstance(self.long_share, (int, float))
            or not 0 < self.long_share <= 1
        ):
            raise ValueError(f"{param('long_share')} must be a number in (0, 1], got {self.long_share!r}")
        for name, none in (("timeout_s", True), ("static_window_ms", False), ("drain_s", False)):
            value = getattr(self, name)
            if value is None and none:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
                raise ValueError(f"{param(_OPTION.get(name, name))} must be a finite number >= 0, got {value!r}")

    @property
    def samples_limit(self) -> int:
        """The most sample paths a series may ask for."""
        return self.max_rows if self.max_samples is None else self.max_samples


class LimitExceeded(ValueError):
    """A request over one of the server's limits: ``status`` 413 (too much data) or 422 (a setting out of range)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def over(what: str, value: int, limit: int, option: str, status: int = 413) -> LimitExceeded:
    """The refusal of ``what`` = ``value`` above ``limit``, naming the server option that sets it."""
    return LimitExceeded(f"{what} is {value}, above this server's limit of {limit} (`--{option}`)", status)
