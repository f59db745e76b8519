"""The server's scheduler on a tiny random checkpoint (windows of 8 steps, so horizons roll out): series join and
leave the decode loop between iterations, given-up requests lose their rows, a failing request fails alone, a full
queue answers 429, a slow request 504; every mode and a draft give the library's forecast."""

import os
import threading
import time

import numpy as np
import pytest
import torch

pytest.importorskip("fastapi")
pytest.importorskip("prometheus_client")
from conftest import make_checkpoint  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from leapcast import Forecaster  # noqa: E402
from leapcast.engine.speculative import SpecConfig  # noqa: E402
from leapcast.serve.app import create_app  # noqa: E402
from leapcast.serve.limits import ServeConfig  # noqa: E402
from leapcast.serve.scheduler import Closed, GivenUp, Scheduler  # noqa: E402


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("tiny") / "m", layers=2, prediction_length=8, context_length=64)


@pytest.fixture(scope="module")
def fc(folder):
    return Forecaster.from_pretrained(folder)


def series(n: int, length: int, seed: int = 0) -> list[list[float]]:
    rng = np.random.default_rng(seed)
    return [list(rng.normal(size=length).cumsum() + 10) for _ in range(n)]


def wait_for(condition, seconds: float = 60.0) -> None:
    """Poll ``condition`` until it holds (a bound against hanging, not a speed claim)."""
    end = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < end, "the scheduler did not get there"
        time.sleep(0.005)


def hold(sched) -> threading.Event:
    """Hold ``sched``'s decode passes until the returned event is set (so a request that started cannot end before
    the test sends the next one, however fast the machine)."""
    go = threading.Event()
    step = sched._step

    def held_step(lane):
        assert go.wait(60), "the test never let the scheduler go on"
        return step(lane)

    sched._step = held_step
    return go


def forecast(fc, sched, values, h, **settings):
    prepared = fc.prepare(values, h, seed=settings.pop("seed", 0), **settings)
    return prepared, sched.submit(prepared, prepared.sampling.seed)


def result(fc, prepared, job, seconds: float = 60.0):
    return fc.finish(prepared, job.future.result(timeout=seconds))


def finish_order(fc, batching: str) -> list[str]:
    """A long request decodes; a short one arrives after it started: which is answered first?"""
    sched = Scheduler(fc, ServeConfig(batching=batching, max_rows=200))
    go = hold(sched)
    sched.start()
    order: list[str] = []
    _, long = forecast(fc, sched, series(2, 40), 600, num_samples=4)
    wait_for(lambda: any(d.busy for d in sched.decoders))
    _, short = forecast(fc, sched, series(1, 30, seed=1), 3, num_samples=4)
    go.set()
    long.future.add_done_callback(lambda _: order.append("long"))
    short.future.add_done_callback(lambda _: order.append("short"))
    wait_for(lambda: len(order) == 2, 120)
    sched.close()
    return order


def test_continuous_batching_answers_a_short_request_while_a_long_one_decodes(fc):
    assert finish_order(fc, "continuous") == ["short", "long"]
    assert finish_order(fc, "off") == ["long", "short"]  # the control: one request at a time


def test_a_long_request_decodes_in_its_own_lane(fc):
    """Past ``long_steps`` a request decodes beside the short ones, not with them: the short lane's passes carry
    only the short request's rows, and both forecasts are the library's."""
    sched = Scheduler(fc, ServeConfig(max_rows=200, long_steps=64))
    seen = []  # the rows of each short-lane pass taken while the long lane had rows (on the engine thread)
    short_sent = threading.Event()  # the long lane waits for it: however fast the machine, it cannot end first
    step = sched._step

    def recording_step(lane):
        short_lane, long_lane = sched._lanes
        if lane is long_lane:
            short_sent.wait(60)
        elif long_lane.dec.busy:
            seen.append(lane.rows)
        return step(lane)

    sched._step = recording_step
    sched.start()
    long_values, short_values = series(2, 40), series(1, 30, seed=1)
    long_prep, long = forecast(fc, sched, long_values, 600, num_samples=4, top_k=1)
    wait_for(lambda: len(sched.decoders) == 2 and sched.decoders[1].busy)
    short_prep, short = forecast(fc, sched, short_values, 20, num_samples=4, top_k=1)
    short_sent.set()
    short.future.result(timeout=60)
    assert seen and set(seen) == {4}  # one series x 4 paths: none of the long request's 8 rows
    assert not long.future.done()  # the long request was still decoding when the short one was answered
    assert torch.equal(result(fc, short_prep, short), fc.predict(short_values, 20, seed=0, num_samples=4, top_k=1))
    assert torch.equal(result(fc, long_prep, long), fc.predict(long_values, 600, seed=0, num_samples=4, top_k=1))
    sched.close()


@pytest.mark.parametrize(("share", "want"), [(0.25, "SSSLSSSL"), (0.5, "SLSLSLSL"), (1.0, "LLLLLLLL")])
def test_the_long_lane_takes_its_share_of_iterations(fc, share, want):
    sched = Scheduler(fc, ServeConfig(long_share=share))

    class Busy:
        def __init__(self, name, busy=True):
            self.name, self.dec = name, type("D", (), {"busy": busy})()

    lanes = [Busy("S"), Busy("L")]
    assert "".join(sched._next_lane(lanes).name for _ in range(8)) == want
    lanes[0].dec.busy = False  # one lane with rows: it takes every iteration
    assert "".join(sched._next_lane(lanes).name for _ in range(3)) == "LLL"
    lanes[1].dec.busy = False
    assert sched._next_lane(lanes) is None


def test_one_lane_when_long_steps_is_0(fc):
    sched = Scheduler(fc, ServeConfig(long_steps=0))
    sched.start()
    prepared, job = forecast(fc, sched, series(1, 40), 600, num_samples=2, top_k=1)
    wait_for(lambda: any(d.busy for d in sched.decoders))
    assert len(sched.decoders) == 1
    assert torch.equal(result(fc, prepared, job), fc.predict(series(1, 40), 600, seed=0, num_samples=2, top_k=1))
    sched.close()


@pytest.mark.parametrize(
    ("settings", "words"),
    [({"long_steps": -1}, "long_steps"), ({"long_share": 0}, "long_share"), ({"long_share": 1.5}, "long_share")],
)
def test_lane_settings_are_checked(settings, words):
    with pytest.raises(ValueError, match=words):
        ServeConfig(**settings)


@pytest.mark.parametrize("settings", [{"k": 2}, {"adaptive": False}])
def test_speculative_settings_without_a_draft_are_refused(settings):
    with pytest.raises(ValueError, match="sets speculative decoding, which runs only with `draft`"):
        ServeConfig(**settings)
    ServeConfig(draft="early-exit:1", **settings)  # with one, they are the draft's


@pytest.mark.parametrize("batching", ["continuous", "static", "off"])
def test_every_mode_gives_the_library_forecast(fc, batching):
    sched = Scheduler(fc, ServeConfig(batching=batching, max_rows=60))  # 60 rows: 3 series of 20 at a time
    jobs = []
    for i, (n, h) in enumerate([(3, 5), (1, 20), (4, 12), (2, 5)]):
        values = series(n, 20 + 15 * i, seed=i)
        for top_k in (1, None):
            jobs.append((values, h, top_k, *forecast(fc, sched, values, h, seed=i, top_k=top_k)))
    sched.start()  # every request queued before the loop starts: they share windows and batches
    for values, h, top_k, prepared, job in jobs:
        want = fc.predict(values, h, seed=prepared.sampling.seed, top_k=top_k)
        got = result(fc, prepared, job)
        if top_k == 1:
            assert torch.equal(got, want)
        elif h <= 8:  # one window; past it a rare flipped draw moves the median the next window starts from
            assert (got == want).double().mean() >= 0.99
    sched.close()


@pytest.mark.parametrize("leave", [False, True])
def test_a_static_batch_decodes_every_series_to_its_longest_horizon(fc, leave):
    """As a batch handler calling a pipeline with one prediction_length: a request of h 3 beside one of h 7 (one
    bucket, one batch) keeps its rows in every pass until the h-7 request ends, and its answer is the library's
    (the steps past its horizon are dropped). ``static_leave``: its rows leave after its 3 steps."""
    sched = Scheduler(fc, ServeConfig(batching="static", max_rows=60, static_leave=leave))
    rows = []  # the rows each pass carries
    step = sched._step

    def recording_step(lane):
        rows.append(lane.rows)
        return step(lane)

    sched._step = recording_step
    short_values, long_values = series(2, 30, seed=5), series(1, 40, seed=6)
    sent = [
        (v, h, top_k, *forecast(fc, sched, v, h, top_k=top_k))
        for v, h, top_k in [(short_values, 3, 1), (long_values, 7, None)]
    ]
    sched.start()  # both queued before the loop starts: one batch
    for values, h, top_k, prepared, job in sent:
        want = fc.predict(values, h, seed=0, top_k=top_k)
        got = result(fc, prepared, job)
        assert torch.equal(got, want) if top_k == 1 else (got == want).double().mean() >= 0.99
    sched.close()
    assert len(rows) == 7
    if leave:
        assert rows[3:] == [rows[-1]] * 4 and rows[0] > rows[-1]  # the short request's rows left after 3 passes
    else:
        assert rows == [rows[0]] * 7  # every pass carried every row


def test_a_static_batch_stops_padding_to_a_request_given_up(fc):
    """The longest horizon is that of the requests still live: once the h-30 request is given up, the h-17 one's
    later windows (windows of 8 steps here) decode only its own steps, 17 passes in all instead of 24."""
    sched = Scheduler(fc, ServeConfig(batching="static", max_rows=200))
    passes, step = [], sched._step
    long_prep, short_prep = (
        fc.prepare(series(1, 40, 2), 30, num_samples=4),
        fc.prepare(series(1, 30, 1), 17, num_samples=4),
    )
    long, short = sched.submit(long_prep, 0), sched.submit(short_prep, 0)

    def giving_up_step(lane):
        passes.append(lane.rows)
        if len(passes) == 2:
            sched.cancel(long)  # after its first pass, as a timeout or a client gone would
        return step(lane)

    sched._step = giving_up_step
    sched.start()
    short.future.result(timeout=60)
    sched.close()
    assert len(passes) == 17


def test_a_given_up_request_loses_its_rows_and_the_others_go_on(fc):
    sched = Scheduler(fc, ServeConfig(max_rows=200))
    gone_values, kept_values = series(2, 40, seed=3), series(1, 50, seed=4)
    _, gone = forecast(fc, sched, gone_values, 800, num_samples=5)
    kept_prep, kept = forecast(fc, sched, kept_values, 300, num_samples=5, top_k=1)
    sched.start()
    wait_for(lambda: sched.decoding_jobs() == {gone, kept})
    sched.cancel(gone)  # what the app does when its client disconnects or its timeout passes
    wait_for(lambda: gone not in sched.decoding_jobs())
    seen = []  # rows decoding, as observed; h 300 decodes in windows of 64, and between two none are

    def only_kept_rows() -> bool:
        rows = sched.rows_decoding
        if rows:
            seen.append(rows)
        return rows == 5 or kept.future.done()

    wait_for(only_kept_rows)
    assert seen and seen[-1] == 5  # only the kept request's rows
    with pytest.raises(GivenUp):
        gone.future.result(timeout=1)
    assert torch.equal(result(fc, kept_prep, kept), fc.predict(kept_values, 300, seed=0, num_samples=5, top_k=1))
    sched.close()


@pytest.mark.parametrize("batching", ["continuous", "static"])
def test_closing_without_draining_answers_every_request(fc, batching):
    """Windows that wait when the loop sees the abort fail with Closed, never left waiting: in continuous batching
    a request's next window put back in the queue after ``close`` emptied it, in a static batch the windows that
    had not joined yet (here, all of them: the abort is seen before the first join)."""
    sched = Scheduler(fc, ServeConfig(batching=batching))
    jobs = [forecast(fc, sched, series(1, 40, seed=s), 30)[1] for s in (0, 1)]
    windows = list(sched._queue)
    sched._abort = True  # as close(drain=False) leaves it, with windows still waiting
    if batching == "continuous":
        sched._continuous()
    else:
        sched._run_batch(windows)
    for job in jobs:
        with pytest.raises(Closed):
            job.future.result(timeout=5)


class Faulty:
    """The model, except that a series of exactly 55 values fails as it joins (a numeric error of its own)."""

    def __init__(self, model) -> None:
        self._model = model

    def __getattr__(self, name):
        return getattr(self._model, name)

    def prefix(self, contexts, rows_per_series, capacity):
        if bool(((~torch.isnan(contexts)).sum(-1) == 55).any()):
            raise FloatingPointError("the series overflowed")
        return self._model.prefix(contexts, rows_per_series, capacity)


def test_a_failing_request_fails_alone_and_the_loop_goes_on(fc):
    faulty = Forecaster(Faulty(fc.model), name="faulty")
    sched = Scheduler(faulty, ServeConfig())
    good = [forecast(faulty, sched, series(2, 50, seed=s), 10, top_k=1) for s in (5, 6)]
    _, bad = forecast(faulty, sched, series(1, 55), 10, top_k=1)
    sched.start()  # the three join in one group: it fails, and is retried series by series
    with pytest.raises(FloatingPointError, match="overflowed"):
        bad.future.result(timeout=60)
    for (prepared, job), s in zip(good, (5, 6)):
        assert torch.equal(result(faulty, prepared, job), fc.predict(series(2, 50, seed=s), 10, seed=0, top_k=1))
    later_prep, later = forecast(faulty, sched, series(1, 60, seed=7), 10, top_k=1)  # the loop goes on
    assert torch.equal(result(faulty, later_prep, later), fc.predict(series(1, 60, seed=7), 10, seed=0, top_k=1))
    sched.close()


def test_speculative_decoding_inside_continuous_batching(folder, fc):
    spec = Forecaster.from_pretrained(folder, draft="early-exit:1", spec=SpecConfig(k=3, adaptive=False))
    sched = Scheduler(spec, ServeConfig())
    jobs = [(s, *forecast(spec, sched, series(2, 40, seed=s), 20 + s, top_k=1, num_samples=2)) for s in range(3)]
    sched.start()
    for s, prepared, job in jobs:  # lossless: greedy forecasts are the plain ones
        want = fc.predict(series(2, 40, seed=s), 20 + s, seed=0, top_k=1, num_samples=2)
        assert torch.equal(result(spec, prepared, job), want)
    assert sum(d.stats.drafted_steps for d in sched.decoders) > 0
    assert sched.metrics.drafted._value.get() > 0 and sched.metrics.acceptance._value.get() > 0
    sched.close()


def test_speculative_decoding_in_both_lanes(folder, fc):
    """A long and a short request decode at once, each lane drafting with its own copy of the proposer."""
    spec = Forecaster.from_pretrained(folder, draft="early-exit:1", spec=SpecConfig(k=3, adaptive=False))
    sched = Scheduler(spec, ServeConfig(long_steps=64))
    long_values, short_values = series(2, 40, seed=8), series(1, 30, seed=9)
    long_prep, long = forecast(spec, sched, long_values, 200, top_k=1, num_samples=2)
    go = hold(sched)
    sched.start()
    wait_for(lambda: len(sched.decoders) == 2 and sched.decoders[1].busy)
    short_prep, short = forecast(spec, sched, short_values, 30, top_k=1, num_samples=2)
    go.set()
    got_short, got_long = result(spec, short_prep, short), result(spec, long_prep, long)
    assert torch.equal(got_short, fc.predict(short_values, 30, seed=0, top_k=1, num_samples=2))
    assert torch.equal(got_long, fc.predict(long_values, 200, seed=0, top_k=1, num_samples=2))
    assert all(d.stats.drafted_steps > 0 for d in sched.decoders)
    assert sched.decoders[0].proposer is not sched.decoders[1].proposer
    sched.close()


def test_a_full_queue_answers_429_and_a_slow_request_504(fc):
    config = ServeConfig(max_queue=1, timeout_s=5.0, warmup=False)  # the second request must come within it
    app = create_app(config, fc)
    body = {"series": [{"id": "a", "values": series(1, 30)[0]}], "h": 4}
    with TestClient(app) as client:
        state = app.state.leapcast
        state.scheduler.close()
        state.scheduler = Scheduler(fc, config, state.metrics)  # never started: requests wait in its queue
        answers = {}
        first = threading.Thread(target=lambda: answers.setdefault("first", client.post("/v1/forecast", json=body)))
        first.start()
        wait_for(lambda: state.scheduler.queued_series == 1)
        full = client.post("/v1/forecast", json=body)
        assert full.status_code == 429 and "--max-queue" in full.json()["detail"]
        assert int(full.headers["retry-after"]) >= 1
        first.join()
        slow = answers["first"]
        assert slow.status_code == 504 and "--timeout" in slow.json()["detail"]
        assert state.scheduler.queued_series == 0  # given up: its series left the queue
        metrics = client.get("/metrics").text
        assert 'status="429"' in metrics and 'status="504"' in metrics


@pytest.mark.parametrize("batching", ["continuous", "static"])
def test_the_engine_hands_free_heap_memory_back_as_it_decodes(fc, monkeypatch, batching):
    from leapcast.serve import scheduler

    trims: list[float] = []
    monkeypatch.setattr(scheduler, "release_free_memory", lambda: trims.append(time.monotonic()) or True)
    monkeypatch.setattr(scheduler, "TRIM_EVERY_S", 0.0)  # at every pass
    sched = Scheduler(fc, ServeConfig(batching=batching, max_rows=200))
    sched.start()
    prepared, job = forecast(fc, sched, series(2, 40), 12, num_samples=4)
    result(fc, prepared, job)
    assert len(trims) >= 3  # h 12 is at least 3 passes of any model here
    monkeypatch.setattr(scheduler, "TRIM_EVERY_S", 3600.0)
    wait_for(lambda: not sched._untrimmed)  # the loop went idle after the first request
    before = len(trims)
    prepared, job = forecast(fc, sched, series(1, 40), 12, num_samples=4)
    result(fc, prepared, job)
    wait_for(lambda: len(trims) == before + 1)  # not during the passes: once, as the loop goes idle
    time.sleep(0.05)
    assert len(trims) == before + 1
    sched.close()


def test_a_server_caps_the_caches_of_compiled_products_unless_told(monkeypatch):
    from leapcast.serve.command import CACHE_VARIABLES, PRIMITIVE_CACHE, bound_compiled_products

    monkeypatch.setenv(CACHE_VARIABLES[0], "")  # recorded, so that the test's own setting is undone after it
    monkeypatch.delenv(CACHE_VARIABLES[0])
    monkeypatch.setenv(CACHE_VARIABLES[1], "512")
    bound_compiled_products()
    assert os.environ[CACHE_VARIABLES[0]] == str(PRIMITIVE_CACHE)
    assert os.environ[CACHE_VARIABLES[1]] == "512"  # the user's own setting
