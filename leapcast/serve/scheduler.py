"""The engine loop: one thread owns the model and decodes the series of every request.

A request becomes a ``Job``: its series, prepared by the library (``Forecaster.prepare``), each decoded in
windows of at most the model's ``prediction_length`` steps (``Window``), longer horizons rolling out by the
model's own rule (``model.extend``) as ``leapcast.engine.rollout`` does. Each series draws from the stream
(seed, series key), whatever it is batched with, so a seeded request gets the library's forecast (to float
rounding, which can differ with the batch's shape: docs/serving.md).

Batching modes:

- continuous: a ``Decoder`` runs for the life of the server. Between two decode iterations, series that
  finished leave and queued windows join (first come, first served) while their rows (series x sample paths)
  fit in ``max_rows``; every unfinished row takes a step each iteration (``Decoder(catch_up=False)``).
  Requests of more than ``long_steps`` model steps decode in a second lane, a decoder of their own that takes
  ``long_share`` of the iterations while both lanes have rows: a short request's passes then do not carry
  the long rows (their positions far along, their attention long), and a long request still moves on.
- static: requests are gathered for ``static_window_ms`` after the first one waits, or until
  ``static_max_requests``, among those whose horizon falls in the first one's bucket (powers of two in model
  steps: 1-8, 9-16, 17-32, ...), then decoded as one batch to its end; no request joins a running batch. Every
  series decodes to the batch's longest horizon, as a batch handler calling a pipeline with one
  ``prediction_length`` does (the steps past its own horizon are dropped), unless ``static_leave``: then series
  leave the batch as they finish.
- off: one request at a time (static batches of one, no window).

Rows of a request that is given up (timeout, client gone, an error) are dropped between iterations.
"""

from __future__ import annotations

import copy
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Iterable
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field

import torch

from leapcast.allocator import release_free_memory
from leapcast.engine.loop import Decoder
from leapcast.engine.streams import RowStreams
from leapcast.forecaster import Forecaster, Prepared
from leapcast.serve.limits import ServeConfig
from leapcast.serve.metrics import Metrics

log = logging.getLogger("leapcast.serve")

TRIM_EVERY_S = 5.0  # seconds between the engine's hand-backs of free heap memory (20-45 ms each)
# continuous batching gives every row's caches room for this many decoder positions (windows of more steps get more),
# so that series joining write into the caches' room instead of copying them (``Decoder(min_capacity=...)``)
CACHE_POSITIONS = 64


class QueueFull(Exception):
    """``max_queue`` requests already wait: try again after ``retry_after`` seconds."""

    def __init__(self, waiting: int, retry_after: int) -> None:
        super().__init__(f"{waiting} requests are waiting, this server's limit (`--max-queue`); retry later")
        self.retry_after = retry_after


class Closed(Exception):
    """The server is shutting down and takes no new requests."""


class GivenUp(Exception):
    """The request was given up (timeout, client gone) before its forecast was done."""


@dataclass(eq=False)
class Job:
    """One request in the engine. ``future`` resolves to its samples [N, S, h] float64 (before
    ``Forecaster.finish``), or to the error that failed it."""

    prepared: Prepared
    seed: int
    created: float = field(default_factory=time.monotonic)
    future: Future = field(default_factory=Future)
    cancelled: bool = False
    out: torch.Tensor | None = None  # [N, S, h] float64, filled as series finish
    pieces: list[list[torch.Tensor]] = field(default_factory=list)  # per series, its windows' values [S, n * P]
    left: int = 0  # series not finished
    waiting: int = 0  # series whose first window has not joined the decode loop

    @property
    def rows(self) -> int:
        """Rows per series: its sample paths."""
        return self.prepared.sampling.num_samples


@dataclass(eq=False)
class Window:
    """Steps ``first_step .. first_step + steps - 1`` of series ``index`` of ``job``, from ``context`` [1, T]."""

    job: Job
    index: int
    context: torch.Tensor
    first_step: int
    steps: int
    decode: int = 0  # steps decoded, when more than ``steps``: a static batch's longer horizons (the rest dropped)

    @property
    def decoded(self) -> int:
        return max(self.steps, self.decode)


@dataclass(eq=False)
class Lane:
    """A decoder and the windows decoding in it (its series ids -> windows); ``seen``: its speculative
    counts already in the metrics."""

    dec: Decoder
    live: dict[int, Window] = field(default_factory=dict)
    seen: tuple[int, int] = (0, 0)

    @property
    def rows(self) -> int:
        rows = self.dec.rows  # read once: other threads (the gauges, /metrics) read while the engine moves on
        return len(rows.series) if rows is not None else 0


class Scheduler:
    """Owns the model on one thread; ``submit`` from any thread, ``cancel`` to give a request up."""

    def __init__(self, forecaster: Forecaster, config: ServeConfig, metrics: Metrics | None = None) -> None:
        self.fc = forecaster
        self.model = forecaster.model
        self.config = config
        self.metrics = metrics or Metrics()
        self._cv = threading.Condition()
        self._queue: deque[Window] = deque()  # windows waiting for rows, first come first served
        self._waiting_jobs = 0  # jobs with a series not yet admitted: what --max-queue bounds
        self._cancelled: list[Job] = []  # given up, rows still to drop (engine thread)
        self._lanes: list[
            Lane
        ] = []  # the decoders running: continuous batching's short and long lanes, or a static batch
        self._closing = False
        self._abort = False
        self._done_times: deque[float] = deque(maxlen=256)  # when series finished: the rate behind Retry-After
        self._long_credit = 0.0  # continuous: the long lane's share of iterations, accrued while both lanes have rows
        self._spec_totals = (0, 0)  # drafted and accepted steps since start, every lane
        self._trimmed = time.monotonic()  # when the engine last gave free heap memory back
        self._untrimmed = False  # passes ran since then
        self._thread = threading.Thread(target=self._run, name="leapcast-engine", daemon=True)

    # --- any thread ---------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def submit(self, prepared: Prepared, seed: int) -> Job:
        """Queue a request's series; QueueFull when ``max_queue`` requests wait, Closed while shutting down."""
        job = Job(prepared, seed)
        n = len(prepared.contexts)
        job.pieces, job.left, job.waiting = [[] for _ in range(n)], n, n
        first = min(prepared.steps, self.model.prediction_length)
        with self._cv:
            if self._closing:
                raise Closed("the server is shutting down")
            if self._waiting_jobs >= self.config.max_queue:
                raise QueueFull(self._waiting_jobs, self._retry_after())
            self._queue.extend(Window(job, i, c, 0, first) for i, c in enumerate(prepared.contexts))
            self._waiting_jobs += 1
            self._gauges()
            self._cv.notify()
        return job

    def cancel(self, job: Job, error: BaseException | None = None) -> None:
        """Give ``job`` up: its queued windows go now, its rows between the next iterations; its future
        resolves to ``error`` (default GivenUp) unless it has resolved already."""
        with self._cv:
            if not job.cancelled:
                job.cancelled = True
                if job.waiting > 0:
                    self._waiting_jobs -= 1
                self._queue = deque(w for w in self._queue if w.job is not job)
                self._cancelled.append(job)
                self._gauges()
                self._cv.notify()
        _resolve(job, error=error or GivenUp("the request was given up"))

    def close(self, drain: bool = True, timeout: float | None = None) -> None:
        """Stop taking requests; with ``drain`` finish those queued and decoding first, else fail them."""
        with self._cv:
            self._closing = True
            if not drain:
                self._abort = True
                for w in list(self._queue):
                    _resolve(w.job, error=Closed("the server shut down before this request was forecast"))
                self._queue.clear()
            self._cv.notify()
        if self._thread.is_alive():
            self._thread.join(timeout)

    @property
    def queued_series(self) -> int:
        return len(self._queue)

    @property
    def decoders(self) -> list[Decoder]:
        """The decoders running: continuous batching's lanes (short, then long), or the static batch's."""
        return [lane.dec for lane in self._lanes]

    @property
    def rows_decoding(self) -> int:
        return sum(lane.rows for lane in self._lanes)

    def decoding_jobs(self) -> set[Job]:
        """The requests with a series in a decoder now."""
        return {w.job for lane in self._lanes for w in tuple(lane.live.values())}  # a copy: the engine moves on

    # --- the engine thread --------------------------------------------------------------------------

    def _run(self) -> None:
        if self.config.threads is not None:
            torch.set_num_threads(self.config.threads)
        with torch.no_grad():  # as Forecaster.predict runs: its samples are ordinary tensors that finish may change
            if self.config.batching == "continuous":
                self._continuous()
            else:
                self._static()

    def _continuous(self) -> None:
        short = self._lane(catch_up=False)
        lanes = [short, self._lane(catch_up=False)] if self.config.long_steps else [short]
        self._lanes = lanes
        wave = max(1, round(self.config.join_share * self.config.max_rows))
        while True:
            with self._cv:
                while not (self._queue or any(la.dec.busy for la in lanes) or self._cancelled or self._closing):
                    self._trim(idle=True)
                    self._cv.wait()
                if self._abort:
                    for lane in lanes:
                        self._fail_live(lane, Closed("the server shut down before this request was forecast"))
                    self._fail_windows(self._queue)  # next windows put back after close() emptied the queue
                    self._queue.clear()
                    return
                if self._closing and not self._queue and not any(la.dec.busy for la in lanes):
                    return
                cancelled, self._cancelled = self._cancelled, []
                going = sum(la.rows for la in lanes)  # series that finish leave at once
                free = self.config.max_rows - going
                queued = sum(w.job.rows for w in self._queue)
                # a join runs the joining series' context pass and copies the series' cross-attention caches: joins
                # wait until a wave of rows is free, unless the loop is idle or everything queued fits
                join = bool(self._queue) and (going == 0 or free >= wave or queued <= free)
                admitted = self._admit(going) if join else []
            for lane in lanes:
                self._drop(lane, cancelled)
            for i, lane in enumerate(lanes):
                self._add(lane, [w for w in admitted if self._lane_of(w.job) == i])
            lane = self._next_lane(lanes)
            if lane is None:
                continue
            finished = self._step(lane)
            if finished is None:  # the pass failed: a fresh decoder for the requests that come next
                lane.dec, lane.live, lane.seen = self._decoder(catch_up=False), {}, (0, 0)
            else:
                later = self._collect(lane, finished)
                if later:
                    with self._cv:
                        self._queue.extendleft(reversed(later))  # a started request's next window goes first
                        self._gauges()

    def _lane_of(self, job: Job) -> int:
        """Continuous batching's lane for ``job``: 1 (long) past ``long_steps`` model steps, else 0."""
        return int(bool(self.config.long_steps) and job.prepared.steps > self.config.long_steps)

    def _next_lane(self, lanes: list[Lane]) -> Lane | None:
        """The lane that takes the next iteration: the only one with rows, or, while both have rows, the long lane
        once its share has accrued to a whole iteration."""
        busy = [lane for lane in lanes if lane.dec.busy]
        if len(busy) < 2:
            self._long_credit = 0.0
            return busy[0] if busy else None
        self._long_credit += self.config.long_share
        if self._long_credit >= 1.0:
            self._long_credit -= 1.0
            return busy[1]
        return busy[0]

    def _admit(self, busy: int) -> list[Window]:
        """Queued windows, first come first served, while their rows fit beside ``busy`` rows (one at least)."""
        admitted = []
        while self._queue and (busy == 0 or busy + self._queue[0].job.rows <= self.config.max_rows):
            w = self._queue.popleft()
            busy += w.job.rows
            admitted.append(w)
            if w.first_step == 0:
                w.job.waiting -= 1
                if w.job.waiting == 0:
                    self._waiting_jobs -= 1
        self._gauges()
        return admitted

    def _static(self) -> None:
        off = self.config.batching == "off"
        most = 1 if off else self.config.static_max_requests
        window = 0.0 if off else self.config.static_window_ms / 1000
        while True:
            with self._cv:
                while not (self._queue or self._closing):
                    self._trim(idle=True)
                    self._cv.wait()
                if not self._queue:
                    return
                jobs = self._gather(most, window)
                batch = [w for w in self._queue if w.job in jobs]
                self._queue = deque(w for w in self._queue if w.job not in jobs)
                for job in jobs:
                    job.waiting = 0
                self._waiting_jobs -= len(jobs)
                self._gauges()
            self._run_batch(batch)
            if self._abort:
                return

    def _gather(self, most: int, window: float) -> set[Job]:
        """The jobs of the next static batch: the first waiting job's horizon bucket, up to ``most`` jobs whose rows
        fit in ``max_rows`` (the first always), once the batch is full or ``window`` seconds after the first arrived.
        Called holding the lock; waits on it."""
        while True:
            if not self._queue:
                return set()
            first = self._queue[0].job
            bucket = _bucket(first.prepared.steps)
            jobs: dict[Job, None] = {}  # ordered: first come first served
            rows = 0
            full = False
            for w in self._queue:
                job = w.job
                if job in jobs or _bucket(job.prepared.steps) != bucket:
                    continue
                need = job.rows * len(job.prepared.contexts)
                if jobs and (len(jobs) >= most or rows + need > self.config.max_rows):
                    full = True
                    break
                jobs[job] = None
                rows += need
            wait = first.created + window - time.monotonic()
            if full or len(jobs) >= most or wait <= 0 or self._closing:
                return set(jobs)
            self._cv.wait(wait)

    def _run_batch(self, windows: list[Window]) -> None:
        """A static batch to its end: window by window as ``rollout`` goes, ``max_rows`` rows at a time."""
        pending = windows
        lane = None
        while pending and not self._abort:
            if not self.config.static_leave:
                longest = max(w.job.prepared.steps for w in pending)  # the batch's horizon, of requests still live
                for w in pending:
                    w.decode = min(self.model.prediction_length, longest - w.first_step)
            lane = self._lane(catch_up=True)
            self._lanes = [lane]
            chunk, rows = [], 0
            while pending and (not chunk or rows + pending[0].job.rows <= self.config.max_rows):
                rows += pending[0].job.rows
                chunk.append(pending.pop(0))
            self._add(lane, chunk)
            later: list[Window] = []
            while lane.dec.busy and not self._abort:
                with self._cv:
                    cancelled, self._cancelled = self._cancelled, []
                self._drop(lane, cancelled)
                if not lane.dec.busy:
                    break
                finished = self._step(lane)
                if finished is None:
                    break
                later.extend(self._collect(lane, finished))
            pending = [w for w in pending + later if not w.job.cancelled]
        if self._abort:
            if lane is not None:
                self._fail_live(lane, Closed("the server shut down before this request was forecast"))
            self._fail_windows(pending)  # the batch's windows that had not joined yet

    # --- the parts: join, step, leave ---------------------------------------------------------------

    def _lane(self, catch_up: bool) -> Lane:
        return Lane(self._decoder(catch_up))

    def _decoder(self, catch_up: bool) -> Decoder:
        """A fresh decoder; continuous batching's rows stand at their own positions, and leaving rows' places are
        taken by rows from the end (``Decoder._keep``). Each decoder gets its own copy of the proposer: a proposer
        holds the state of its decoder's rows (the draft's caches), and two lanes decode at once; the copies share
        the draft's weights."""
        return Decoder(
            self.model,
            None if self.fc.proposer is None else copy.copy(self.fc.proposer),
            self.fc.spec,
            catch_up=catch_up,
            min_capacity=0 if catch_up else min(self.model.prediction_length, CACHE_POSITIONS) + self.fc.spec.k + 1,
        )

    def _add(self, lane: Lane, windows: Iterable[Window]) -> None:
        """Windows join the decoder, one ``add`` (one merge of the caches) per sampling setting and sample count;
        a group that fails is retried window by window, so that only the window at fault fails its request."""
        groups: dict[tuple, list[Window]] = {}
        for w in windows:
            if w.job.cancelled:
                continue
            s = w.job.prepared.sampling
            groups.setdefault((s.temperature, s.top_k, s.top_p, s.num_samples), []).append(w)
        for group in groups.values():
            self._add_group(lane, group)

    def _add_group(self, lane: Lane, group: list[Window]) -> None:
        first = group[0]
        width = max(w.context.shape[-1] for w in group)
        contexts = torch.cat(
            [torch.nn.functional.pad(w.context, (width - w.context.shape[-1], 0), value=float("nan")) for w in group]
        )  # [B, T_max], left-padded with NaN
        streams = RowStreams(
            torch.cat(
                [RowStreams.for_series(w.job.seed, [w.job.prepared.keys[w.index]], w.job.rows).base for w in group]
            )
        )
        try:
            steps, starts = [w.decoded for w in group], [w.first_step for w in group]
            ids = lane.dec.add(contexts, steps, first.job.prepared.sampling, streams, first_step=starts)
        except Exception as err:  # noqa: BLE001 - a request's numbers; it fails alone
            if len(group) > 1:
                for w in group:
                    self._add_group(lane, [w])
                return
            log.warning("a request failed as its series joined the decode loop: %s", err)
            self.cancel(first.job, err)
            return
        lane.live.update(zip(ids, group))

    def _step(self, lane: Lane) -> dict[int, torch.Tensor] | None:
        """One decode iteration of ``lane`` -> the series that finished; None when the pass failed (every request
        decoding in it fails: a pass runs many requests' rows at once, so the fault cannot be told apart)."""
        rows = lane.rows  # the rows this pass carries
        try:
            finished = lane.dec.step()
        except Exception as err:  # noqa: BLE001 - reported to the requests, logged; the loop goes on
            log.exception("a decode iteration failed; its requests fail, the loop goes on")
            self._fail_live(lane, err)
            return None
        m = self.metrics
        m.occupancy.observe(min(rows / self.config.max_rows, 1.0))
        m.rows.set(self.rows_decoding)
        drafted, accepted = lane.seen
        st = lane.dec.stats
        new_drafted, new_accepted = st.drafted_steps - drafted, st.accepted_steps - accepted
        self._spec_totals = (self._spec_totals[0] + new_drafted, self._spec_totals[1] + new_accepted)
        m.spec(new_drafted, new_accepted, *self._spec_totals)  # totals over every lane and decoder since start
        lane.seen = (st.drafted_steps, st.accepted_steps)
        self._untrimmed = True
        self._trim()
        return finished

    def _trim(self, idle: bool = False) -> None:
        """Free heap memory back to the system (``allocator.release_free_memory``): every ``TRIM_EVERY_S`` seconds
        of decoding, and once when the loop goes idle after passes (what the last requests freed)."""
        if self._untrimmed and (idle or time.monotonic() - self._trimmed >= TRIM_EVERY_S):
            release_free_memory()
            self._trimmed, self._untrimmed = time.monotonic(), False

    def _collect(self, lane: Lane, finished: dict[int, torch.Tensor]) -> list[Window]:
        """Finished windows of ``lane``: a series with steps to go gets its next window (returned), a series done is
        written into its job's samples, and a job with every series done resolves."""
        later = []
        for sid, values in finished.items():  # values [S, decoded * P]
            w = lane.live.pop(sid)
            job = w.job
            if job.cancelled:
                continue
            values = values[:, : values.shape[-1] // w.decoded * w.steps]  # [S, steps * P]
            job.pieces[w.index].append(values)
            done = w.first_step + w.steps
            p = job.prepared
            if done < p.steps:
                try:
                    context = self.model.extend(w.context, values[None])  # [1, T + steps * P]
                except Exception as err:  # noqa: BLE001
                    self.cancel(job, err)
                    continue
                later.append(Window(job, w.index, context, done, min(p.steps - done, self.model.prediction_length)))
                continue
            if job.out is None:
                job.out = torch.empty(len(p.contexts), job.rows, p.h, dtype=torch.float64)
            job.out[w.index] = torch.cat(job.pieces[w.index], dim=-1)[:, : p.h].double()  # as Forecaster._decode
            job.pieces[w.index] = []
            job.left -= 1
            self._done_times.append(time.monotonic())
            self.metrics.series.inc()
            if job.left == 0:
                _resolve(job, result=job.out)
        return later

    def _drop(self, lane: Lane, jobs: list[Job]) -> None:
        if not jobs:
            return
        gone = {id(j) for j in jobs}
        ids = [sid for sid, w in lane.live.items() if id(w.job) in gone]
        lane.dec.drop(ids)
        for sid in ids:
            del lane.live[sid]
        self.metrics.rows.set(self.rows_decoding)

    def _fail_live(self, lane: Lane, err: BaseException) -> None:
        for w in list(lane.live.values()):
            self.cancel(w.job, err)
        lane.live.clear()
        self.metrics.rows.set(sum(la.rows for la in self._lanes if la is not lane))

    @staticmethod
    def _fail_windows(windows: Iterable[Window]) -> None:
        for w in windows:
            _resolve(w.job, error=Closed("the server shut down before this request was forecast"))

    def _gauges(self) -> None:
        self.metrics.queue_requests.set(self._waiting_jobs)
        self.metrics.queue_series.set(len(self._queue))

    def _retry_after(self) -> int:
        """Seconds until the queued series would be done at the recent rate (1..60)."""
        times = self._done_times
        if len(times) < 2 or times[-1] <= times[0]:
            return 1
        rate = (len(times) - 1) / (times[-1] - times[0])  # series per second
        return int(min(60, max(1, math.ceil(len(self._queue) / rate))))


def _bucket(steps: int) -> int:
    """Static batching's horizon bucket: 1-8 steps, 9-16, 17-32, 33-64, ... (powers of two)."""
    return max(3, (steps - 1).bit_length())


def _resolve(job: Job, result: torch.Tensor | None = None, error: BaseException | None = None) -> None:
    """Settle ``job.future`` once; a future already settled (or cancelled by its waiter) stays as it is."""
    try:
        if error is not None:
            job.future.set_exception(error)
        else:
            job.future.set_result(result)
    except InvalidStateError:
        pass
