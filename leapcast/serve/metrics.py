"""The server's Prometheus metrics (``GET /metrics``), in a registry of its own (one per app, so tests can run
several), with the process's CPU and resident memory (``process_resident_memory_bytes``)."""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 60, 120, 300)
OCCUPANCY_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)


class Metrics:
    """What an operator watches: answers by status, latency, the queue, the decode loop's rows and speculation."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        r = self.registry
        self.requests = Counter(
            "leapcast_requests", "Requests answered, by route and HTTP status", ["route", "status"], registry=r
        )
        self.latency = Histogram(
            "leapcast_request_seconds",
            "Time from a forecast request's arrival to its answer (every status)",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_requests = Gauge("leapcast_queue_requests", "Requests waiting for rows", registry=r)
        self.queue_series = Gauge("leapcast_queue_series", "Series windows waiting for rows", registry=r)
        self.rows = Gauge("leapcast_rows_decoding", "Rows (series x sample paths) in the decode loop", registry=r)
        self.occupancy = Histogram(
            "leapcast_slot_occupancy",
            "Share of --max-rows decoding, per decode iteration (its mean is _sum / _count)",
            buckets=OCCUPANCY_BUCKETS,
            registry=r,
        )
        self.series = Counter("leapcast_series", "Series forecast", registry=r)
        self.drafted = Counter(
            "leapcast_spec_drafted_steps", "Steps proposed by the draft (speculative decoding)", registry=r
        )
        self.accepted = Counter("leapcast_spec_accepted_steps", "Proposed steps the target kept", registry=r)
        self.acceptance = Gauge(
            "leapcast_spec_acceptance_rate", "Accepted / drafted steps since the server started", registry=r
        )

    def spec(self, drafted: int, accepted: int, total_drafted: int, total_accepted: int) -> None:
        """New drafted and accepted steps, and the totals since start."""
        if drafted:
            self.drafted.inc(drafted)
            self.accepted.inc(accepted)
        if total_drafted:
            self.acceptance.set(total_accepted / total_drafted)

    def exposition(self) -> tuple[bytes, str]:
        """The text exposition format and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
