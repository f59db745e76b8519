"""The HTTP API against the library: a seeded request gets ``Forecaster.forecast``'s answer, bad input is a 4xx that
says what was wrong (never a 500), limits are named, and the metrics are there. The bundled house-target model."""

import io
import json
import threading

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("prometheus_client")
from fastapi.testclient import TestClient  # noqa: E402

from leapcast import Forecaster  # noqa: E402
from leapcast.client import Client, ServerError  # noqa: E402
from leapcast.serve.app import create_app  # noqa: E402
from leapcast.serve.limits import ServeConfig  # noqa: E402

LIMITS = ServeConfig(max_series=6, max_context=600, max_h=100, max_body_bytes=60_000, max_samples=40, timeout_s=120)


@pytest.fixture(scope="module")
def fc():
    return Forecaster.from_pretrained("house-target")


@pytest.fixture(scope="module")
def client(fc):
    with TestClient(create_app(LIMITS, fc)) as c:
        yield c


def frame(seed: int, n: int = 3) -> pd.DataFrame:
    """n monthly series of 40-300 values, seasonal (the seasonal adjustment runs), one missing value each."""
    rng = np.random.default_rng(seed)
    parts = []
    for i in range(n):
        t = int(rng.integers(40, 300))
        y = 50 + 10 * np.sin(np.arange(t) * 2 * np.pi / 12) + rng.normal(size=t).cumsum() + 5 * i
        y[t // 2] = np.nan
        ds = pd.date_range("1990-01-01", periods=t, freq="MS")
        parts.append(pd.DataFrame({"unique_id": f"s{seed}-{i}", "ds": ds, "y": y}))
    return pd.concat(parts, ignore_index=True)


def body_of(df: pd.DataFrame, h: int, **settings) -> dict:
    """The JSON request of a long frame: ISO timestamps, null for NaN."""
    series = [
        {
            "id": uid,
            "values": [None if np.isnan(v) else float(v) for v in g["y"]],
            "timestamps": [t.isoformat() for t in g["ds"]],
        }
        for uid, g in df.groupby("unique_id", sort=False)
    ]
    return {"series": series, "h": h, **settings}


def library_samples(fc, df, h, **settings):
    """[N, S, h] the paths Forecaster.forecast draws for df (its own plan_frame and predict)."""
    plan = fc.plan_frame(df, h)
    return fc.predict(plan.panel.contexts, h, season_length=plan.season, series_keys=plan.keys, **settings).numpy()


def post_together(client, bodies):
    """Post every body at once (threads), so that their series join the decode loop at different iterations."""
    answers = [None] * len(bodies)

    def send(i):
        answers[i] = client.post("/v1/forecast", json=bodies[i])

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return answers


def test_greedy_requests_decoded_together_get_the_library_forecast_exactly(client, fc):
    frames = [frame(seed) for seed in range(4)]
    horizons = [6, 30, 12, 70]  # 70: two windows of house-target's 64 steps
    bodies = [body_of(df, h, top_k=1, seed=3, quantiles=[0.1, 0.5, 0.9]) for df, h in zip(frames, horizons)]
    for df, h, answer in zip(frames, horizons, post_together(client, bodies)):
        assert answer.status_code == 200, answer.text
        want = fc.forecast(df, h, quantiles=[0.1, 0.5, 0.9], top_k=1, seed=3)
        mean = fc.forecast(df, h, point="mean", top_k=1, seed=3)
        for s in answer.json()["series"]:
            mine, means = want[want.unique_id == s["id"]], mean[mean.unique_id == s["id"]]
            assert s["median"] == mine["house-target"].tolist()
            assert s["mean"] == means["house-target"].tolist()
            assert s["quantiles"]["0.9"] == mine["house-target-q-90"].tolist()
            assert s["timestamps"] == [t.isoformat() for t in mine["ds"]]


def test_sampled_paths_are_the_library_paths(client, fc):
    frames = [frame(seed, n=4) for seed in (10, 11, 12)]
    horizons = [24, 9, 40]
    bodies = [body_of(df, h, seed=5, return_samples=True, num_samples=30) for df, h in zip(frames, horizons)]
    same = total = 0
    for df, h, answer in zip(frames, horizons, post_together(client, bodies)):
        assert answer.status_code == 200, answer.text
        got = np.array([s["samples"] for s in answer.json()["series"]])  # [N, S, h]
        want = library_samples(fc, df, h, seed=5, num_samples=30)
        assert got.shape == want.shape == (4, 30, h)
        same += int((got == want).sum())
        total += got.size
    print(f"{same} of {total} sampled values ({same / total:.4%}) as the library's")
    assert same / total >= 0.999, f"{same / total:.4%} of sampled values as the library's"
    other = client.post("/v1/forecast", json={**bodies[0], "seed": 6}).json()  # the control: another seed
    paths = np.array([s["samples"] for s in other["series"]])
    assert (paths == library_samples(fc, frames[0], 24, seed=5, num_samples=30)).mean() < 0.5


def test_series_without_timestamps_and_an_unseeded_request_that_returns_its_seed(client, fc):
    values = [float(v) for v in np.random.default_rng(0).normal(size=80).cumsum()]
    answer = client.post("/v1/forecast", json={"series": [{"id": 7, "values": values}], "h": 5, "levels": [80]})
    assert answer.status_code == 200, answer.text
    out = answer.json()
    seed = out["seed"]
    s = out["series"][0]
    assert (
        s["id"] == 7
        and s["timestamps"] is None
        and s["quantiles"] is None
        and set(s["intervals"]) == {"lo-80", "hi-80"}
    )
    df = pd.DataFrame({"unique_id": 7, "ds": np.arange(80), "y": values})
    want = fc.forecast(df, 5, level=[80], seed=seed)  # the seed it reported gives the library's forecast
    assert s["intervals"]["hi-80"] == want["house-target-hi-80"].tolist()
    assert s["median"] == want["house-target"].tolist()


def test_frame_bodies_answer_the_library_frame(client, fc):
    df = frame(20)
    want = fc.forecast(df, 12, level=[80, 95], seed=9)
    csv = client.post(
        "/v1/forecast/frame",
        params={"h": 12, "level": [80, 95], "seed": 9},
        content=df.to_csv(index=False),
        headers={"content-type": "text/csv"},
    )
    assert csv.status_code == 200, csv.text
    assert csv.headers["content-type"].startswith("text/csv") and csv.headers["x-leapcast-seed"] == "9"
    assert csv.text == want.to_csv(index=False)
    with Client(http=client) as remote:  # Arrow IPC both ways: the frame with its types
        got = remote.forecast(df, 12, level=[80, 95], seed=9)
        pd.testing.assert_frame_equal(got, want)
        got_q = remote.forecast(df, 3, quantiles=[0.25, 0.75], point="mean", top_k=1, seed=1)
        pd.testing.assert_frame_equal(got_q, fc.forecast(df, 3, quantiles=[0.25, 0.75], point="mean", top_k=1, seed=1))
        with pytest.raises(ServerError, match="`level`"):
            remote.forecast(df, 3, level=[150])
        with pytest.raises(ValueError, match="`quantiles` is empty"):  # httpx would drop an empty list unsent
            remote.forecast(df, 3, quantiles=[])
        from_iterator = remote.forecast(df, 3, quantiles=iter([0.25, 0.75]), seed=1)  # read once, sent whole
        assert list(from_iterator.columns[-2:]) == ["house-target-q-25", "house-target-q-75"]


def test_health_readiness_docs_and_metrics(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["model"] == "house-target"
    assert "/v1/forecast" in client.get("/openapi.json").json()["paths"]
    assert client.get("/docs").status_code == 200
    client.post("/v1/forecast", json={"series": [{"id": "a", "values": [1.0, 2.0, 3.0]}], "h": 2})
    client.post("/v1/forecast", json={"series": [], "h": 2})
    text = client.get("/metrics").text
    for name in (
        'leapcast_requests_total{route="/v1/forecast",status="200"}',
        'leapcast_requests_total{route="/v1/forecast",status="422"}',
        "leapcast_request_seconds_bucket",
        "leapcast_queue_requests",
        "leapcast_queue_series",
        "leapcast_rows_decoding",
        "leapcast_slot_occupancy_count",
        "leapcast_series_total",
        "leapcast_spec_acceptance_rate",
        "process_resident_memory_bytes",
    ):
        assert name in text, name
    served = [line for line in text.splitlines() if line.startswith("leapcast_series_total")]
    assert float(served[0].split()[-1]) >= 1


GOOD = {"series": [{"id": "a", "values": [1.0, 2.0, 3.0, 2.0]}], "h": 3}


def _with(**change):
    body = json.loads(json.dumps(GOOD))
    for key, value in change.items():
        if key.startswith("s_"):
            body["series"][0][key[2:]] = value
        else:
            body[key] = value
    return body


MALFORMED_JSON = [  # (what, body: bytes or JSON object, status, words the answer must hold)
    ("not JSON", b'{"series": [', 400, "not valid JSON"),
    ("not an object", [1, 2], 422, "body"),
    ("no series", {"h": 3}, 422, "series"),
    ("empty series list", _with(series=[]), 422, "series"),
    ("no h", {"series": GOOD["series"]}, 422, "h"),
    ("h zero", _with(h=0), 422, "`h`"),
    ("h negative", _with(h=-2), 422, "`h`"),
    ("h a string", _with(h="3"), 422, "h"),
    ("h a float", _with(h=1.5), 422, "h"),
    ("h a boolean", _with(h=True), 422, "h"),
    ("unknown field", _with(num_sample=3), 422, "num_sample"),
    ("empty values", _with(s_values=[]), 422, "values"),
    ("a string value", _with(s_values=[1.0, "2"]), 422, "values"),
    ("a boolean value", _with(s_values=[1.0, True]), 422, "values"),
    ("no observed value", _with(s_values=[None, None]), 422, "values"),
    ("a list as id", _with(s_id=[1]), 422, "id"),
    ("value too large", _with(s_values=[1e306, 1.0]), 422, "1e+306"),
    ("quantile out of range", _with(quantiles=[0.5, 1.5]), 422, "1.5"),
    ("quantiles and levels", _with(quantiles=[0.5], levels=[80]), 422, "not both"),
    ("level out of range", _with(levels=[150]), 422, "`level`"),
    ("zero samples", _with(num_samples=0), 422, "`num_samples`"),
    ("negative top_k", _with(top_k=-1), 422, "`top_k`"),
    ("zero temperature", _with(temperature=0.0), 422, "`temperature`"),
    ("top_p above 1", _with(top_p=2.0), 422, "`top_p`"),
    ("negative seed", _with(seed=-1), 422, "`seed`"),
    ("seed past 64 bits", _with(seed=2**64), 422, "`seed`"),
    ("zero season length", _with(season_length=0), 422, "`season_length`"),
    ("duplicate ids", _with(series=[GOOD["series"][0], GOOD["series"][0]]), 422, "twice"),
    ("7 and '7'", _with(series=[{"id": 7, "values": [1.0]}, {"id": "7", "values": [2.0]}]), 422, "twice"),
    ("timestamps of another length", _with(s_timestamps=["2020-01-01"]), 422, "timestamps"),
    ("timestamps not dates", _with(s_timestamps=["a", "b", "c", "d"]), 422, "timestamps"),
    ("duplicate timestamps", _with(s_timestamps=[1, 2, 2, 3]), 422, "duplicated"),
    (
        "a freq pandas lacks",
        _with(s_timestamps=["2020-01-01", "2020-02-01", "2020-03-01", "2020-04-01"], freq="XYZ"),
        422,
        "freq",
    ),
    (
        "a freq the dates are off",
        _with(s_timestamps=["2020-01-01", "2020-02-01", "2020-03-01", "2020-04-01"], freq="D"),
        422,
        "missing",
    ),
    ("too many samples", _with(num_samples=41), 422, "--max-samples"),
    ("h over the limit", _with(h=101), 422, "--max-h"),
    ("too many series", _with(series=[{"id": i, "values": [1.0]} for i in range(7)]), 413, "--max-series"),
    ("a series too long", _with(s_values=[1.0] * 601), 413, "--max-context"),
    (  # 320 values over 640 steps (half of them empty): the context the model reads is the grid, gaps included
        "a grid too long",
        _with(s_values=[1.0] * 320, s_timestamps=list(range(160)) + list(range(480, 640))),
        413,
        "--max-context",
    ),
    (
        "a freq finer than the span holds",
        _with(s_values=[1.0, 2.0], s_timestamps=["2000-01-01", "2020-01-01"], freq="ns"),
        422,
        "631152000000000001 steps",
    ),
    ("no quantile", _with(quantiles=[]), 422, "is empty"),
    ("an int freq of 0 without timestamps", _with(freq=0), 422, "`freq`"),
]


@pytest.mark.parametrize("what, body, status, words", MALFORMED_JSON, ids=[m[0] for m in MALFORMED_JSON])
def test_malformed_json_is_a_4xx_that_says_what(client, what, body, status, words):
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    answer = client.post("/v1/forecast", content=content, headers={"content-type": "application/json"})
    assert answer.status_code == status, answer.text
    assert words in answer.json()["detail"]


def test_bodies_over_the_size_limit_are_refused_before_reading(client):
    big = json.dumps(_with(s_values=[1.0] * 20_000)).encode()
    answer = client.post("/v1/forecast", content=big, headers={"content-type": "application/json"})  # declared
    assert answer.status_code == 413 and "--max-body-mb" in answer.json()["detail"]

    def chunks():  # no Content-Length: counted as it arrives
        yield big[:30_000]
        yield big[30_000:]

    answer = client.post("/v1/forecast/frame?h=3", content=chunks(), headers={"content-type": "text/csv"})
    assert answer.status_code == 413


CSV_GOOD = "unique_id,ds,y\na,1,1.0\na,2,2.0\na,3,3.0\n"
MALFORMED_FRAMES = [  # (what, content type, body, query, status, words)
    ("empty body", "text/csv", b"", "h=3", 400, "empty"),
    ("not CSV", "text/csv", b'unique_id,ds,y\n"a,1,2\n', "h=3", 400, "CSV"),
    ("not UTF-8", "text/csv", b"\xff\xfe\x00\x01", "h=3", 400, "UTF-8"),
    ("not Arrow", "application/vnd.apache.arrow.stream", b"PAR1 nope", "h=3", 400, "Arrow"),
    ("a type not read", "application/xml", b"<a/>", "h=3", 415, "text/csv"),
    ("no h", "text/csv", CSV_GOOD.encode(), "", 422, "h"),
    ("h not a number", "text/csv", CSV_GOOD.encode(), "h=abc", 422, "h"),
    ("a column missing", "text/csv", b"unique_id,ds,value\na,1,1.0\n", "h=3", 422, "missing"),
    ("y not numeric", "text/csv", b"unique_id,ds,y\na,1,x\na,2,y\n", "h=3", 422, "numeric"),
    ("duplicate rows", "text/csv", b"unique_id,ds,y\na,1,1\na,1,2\n", "h=3", 422, "duplicated"),
    ("infinite value", "text/csv", b"unique_id,ds,y\na,1,inf\na,2,1\n", "h=3", 422, "infinite"),
    ("point not known", "text/csv", CSV_GOOD.encode(), "h=3&point=mode", 422, "`point`"),
    ("a null id", "text/csv", b"unique_id,ds,y\n,1,1\na,2,1\n", "h=3", 422, "null"),
    (
        "a freq finer than the span",
        "text/csv",
        b"unique_id,ds,y\na,2000-01-01,1\na,2020-01-01,2\n",
        "h=3&freq=ns",
        422,
        "missing",
    ),
    ("an int freq of 0", "text/csv", CSV_GOOD.encode(), "h=3&freq=0", 422, "`freq`"),
    ("the JSON route's levels", "text/csv", CSV_GOOD.encode(), "h=3&levels=80", 422, "`level` here"),
    ("a misspelt parameter", "text/csv", CSV_GOOD.encode(), "h=3&num_sample=5", 422, "['num_sample']"),
    ("a header and no rows", "text/csv", b"unique_id,ds,y\n", "h=3", 422, "empty"),
]


@pytest.mark.parametrize(
    "what, kind, body, query, status, words", MALFORMED_FRAMES, ids=[m[0] for m in MALFORMED_FRAMES]
)
def test_malformed_frames_are_a_4xx_that_says_what(client, what, kind, body, query, status, words):
    answer = client.post(f"/v1/forecast/frame?{query}", content=body, headers={"content-type": kind})
    assert answer.status_code == status, answer.text
    assert words in answer.json()["detail"]


@pytest.mark.parametrize("kind", [None, "application/x-www-form-urlencoded", "text/plain"])
def test_json_sent_as_another_type_is_a_415_that_names_it(client, kind):
    headers = {} if kind is None else {"content-type": kind}
    answer = client.post("/v1/forecast", content=json.dumps(GOOD), headers=headers)
    assert answer.status_code == 415 and "application/json" in answer.json()["detail"], answer.text


def test_a_frame_with_a_column_twice_is_a_400(client):
    import pyarrow as pa

    table = pa.table([["a", "a"], [1, 2], [1.0, 2.0], [3.0, 4.0]], names=["unique_id", "ds", "y", "y"])
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    answer = client.post(
        "/v1/forecast/frame?h=3",
        content=sink.getvalue().to_pybytes(),
        headers={"content-type": "application/vnd.apache.arrow.stream"},
    )
    assert answer.status_code == 400 and "['y'] more than once" in answer.json()["detail"]


def test_csv_ids_are_read_as_written(client, fc):
    """'007' stays '007', and '01' and '001' are two series, as in a frame whose ids are strings."""
    df = frame(3).assign(
        unique_id=lambda d: d.unique_id.map({u: v for u, v in zip(sorted(d.unique_id.unique()), ["007", "01", "001"])})
    )
    answer = client.post(
        "/v1/forecast/frame",
        params={"h": 3, "seed": 1},
        content=df.to_csv(index=False),
        headers={"content-type": "text/csv"},
    )
    assert answer.status_code == 200, answer.text
    assert answer.text == fc.forecast(df, 3, seed=1).to_csv(index=False)
    assert sorted(pd.read_csv(io.StringIO(answer.text), dtype={"unique_id": str}).unique_id.unique()) == [
        "001",
        "007",
        "01",
    ]


def test_the_client_sends_only_the_columns_a_forecast_reads_and_int_steps(client, fc):
    df = frame(4).assign(ds=lambda d: d.groupby("unique_id").cumcount() * 2, note=lambda d: [object()] * len(d))
    with Client(http=client) as remote:  # `note` would not convert to Arrow; freq=2: integer steps of 2
        got = remote.forecast(df, 3, freq=2, seed=2)
    pd.testing.assert_frame_equal(got, fc.forecast(df, 3, freq=2, seed=2))


def test_a_season_length_for_a_model_without_the_adjustment_is_a_422():
    patch = Forecaster.from_pretrained("house-patch-target")  # reads seasons from the context: no adjustment
    df = frame(7, n=2)
    with TestClient(create_app(LIMITS, patch)) as c:
        refused = c.post("/v1/forecast", json=body_of(df, 4, season_length=12, seed=0, num_samples=4))
        assert refused.status_code == 422 and "`season_length` sets the seasonal adjustment" in refused.text
        csv = c.post(
            "/v1/forecast/frame?h=4&season_length=12",
            content=df.to_csv(index=False),
            headers={"content-type": "text/csv"},
        )
        assert csv.status_code == 422 and "`season_length`" in csv.text
        got = Client(http=c).forecast(df, 4, seed=0, num_samples=4)  # the frequency's season is not the caller's
    pd.testing.assert_frame_equal(got, patch.forecast(df, 4, seed=0, num_samples=4), check_dtype=False)


def test_an_answer_over_max_values_is_a_413_before_any_decoding(fc):
    small = ServeConfig(max_values=1000, max_samples=40)
    df = frame(8, n=2)
    with TestClient(create_app(small, fc)) as c:
        over = c.post("/v1/forecast", json=body_of(df, 30, num_samples=20))  # 2 x 20 x 30 = 1200 values
        assert over.status_code == 413 and "1200, above this server's limit of 1000 (`--max-values`)" in over.text
        csv = c.post(
            "/v1/forecast/frame?h=30&num_samples=20",
            content=df.to_csv(index=False),
            headers={"content-type": "text/csv"},
        )
        assert csv.status_code == 413 and "`--max-values`" in csv.text
        assert c.post("/v1/forecast", json=body_of(df, 25, num_samples=20)).status_code == 200  # 1000: at the limit
        assert "leapcast_rows_decoding 0.0" in c.get("/metrics").text


def test_a_json_answer_to_an_accept_without_json_is_a_406(client):
    answer = client.post("/v1/forecast", json=GOOD, headers={"accept": "text/csv"})
    assert answer.status_code == 406 and "/v1/forecast/frame" in answer.json()["detail"]
    for accept in ("application/json", "application/json; charset=utf-8", "*/*", "text/csv, */*;q=0.1"):
        assert client.post("/v1/forecast", json=GOOD, headers={"accept": accept}).status_code == 200, accept


def test_a_frame_answer_in_a_type_the_route_does_not_write_is_a_406(client):
    asked = {"content-type": "text/csv", "accept": "application/json"}
    answer = client.post("/v1/forecast/frame?h=3", content=CSV_GOOD, headers=asked)
    assert answer.status_code == 406 and "/v1/forecast" in answer.json()["detail"]
    for accept in ("*/*", "application/json, */*;q=0.1", "text/*", ""):
        ok = client.post("/v1/forecast/frame?h=3", content=CSV_GOOD, headers={**asked, "accept": accept})
        assert ok.status_code == 200 and ok.headers["content-type"].startswith("text/csv"), (accept, ok.text)


def test_a_greedy_request_decodes_one_row_per_series_and_answers_every_path(client, fc):
    from leapcast.serve.forecasts import json_work
    from leapcast.serve.schemas import ForecastRequest

    df = frame(9, n=2)
    body = body_of(df, 6, top_k=1, num_samples=20, seed=0, return_samples=True)
    work = json_work(fc, ForecastRequest(**body), LIMITS)
    assert work.prepared.sampling.num_samples == 1  # the rows the decode loop takes: one per series
    answer = client.post("/v1/forecast", json=body).json()
    assert answer["num_samples"] == 20
    want = library_samples(fc, df, 6, top_k=1, num_samples=20, seed=0)  # [N, S, h]
    for i, s in enumerate(answer["series"]):
        assert np.array_equal(np.array(s["samples"]), want[i])
