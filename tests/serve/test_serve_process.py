"""`leapcast serve` as a user runs it: a real uvicorn process on loopback, drained by SIGTERM."""

import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
from conftest import make_checkpoint  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rows_decoding(url: str) -> float:
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith("leapcast_rows_decoding "):
            return float(line.split()[-1])
    return 0.0


def test_bad_options_exit_2_with_a_message():
    done = subprocess.run(
        [sys.executable, "-m", "leapcast.cli", "serve", "--batching", "sometimes"], capture_output=True, text=True
    )
    assert done.returncode == 2 and "`--batching` must be one of continuous, static, off" in done.stderr
    done = subprocess.run([sys.executable, "-m", "leapcast.cli", "serve", "--k", "4"], capture_output=True, text=True)
    assert done.returncode == 2 and "`--k` sets speculative decoding, which runs only with `--draft`" in done.stderr
    done = subprocess.run(
        [sys.executable, "-m", "leapcast.cli", "serve", "--log-level", "nope"], capture_output=True, text=True
    )
    assert done.returncode == 2 and "`--log-level` must be one of" in done.stderr


@contextmanager
def serving(tmp_path, *options: str) -> Iterator[tuple[subprocess.Popen, str]]:
    """`leapcast serve` of a tiny checkpoint on a free loopback port, ready; (the process, its URL). Killed after."""
    folder = make_checkpoint(tmp_path / "m", prediction_length=8, context_length=64)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "leapcast.cli", "serve", "--model", str(folder), "--port", str(port)]
        + ["--max-h", "2000", *options, "--log-level", "warning"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, server.stdout.read()
            try:
                if httpx.get(f"{url}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not get ready"
            time.sleep(0.1)
        yield server, url
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def sigterm_while_decoding(server: subprocess.Popen, url: str, body: dict):
    """Post ``body``, send SIGTERM once its rows decode, and return the answer."""
    answer = {}
    sender = threading.Thread(
        target=lambda: answer.setdefault("r", httpx.post(f"{url}/v1/forecast", json=body, timeout=120))
    )
    sender.start()
    deadline = time.monotonic() + 120
    while rows_decoding(url) == 0:
        assert time.monotonic() < deadline and sender.is_alive()
        time.sleep(0.02)
    server.send_signal(signal.SIGTERM)
    sender.join(120)
    return answer["r"]


def test_sigterm_drains_the_request_in_flight_then_exits(tmp_path):
    with serving(tmp_path) as (server, url):
        body = {"series": [{"id": "a", "values": [float(i % 12) for i in range(60)]}], "h": 2000, "seed": 0}
        r = sigterm_while_decoding(server, url, body)  # the long request decodes for seconds: 250 windows of 8 steps
        assert r.status_code == 200 and len(r.json()["series"][0]["mean"]) == 2000  # finished, not cut off
        assert server.wait(60) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once drained
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{url}/healthz")


def test_a_request_still_decoding_when_the_drain_ends_gets_a_json_503(tmp_path):
    with serving(tmp_path, "--drain-timeout", "1") as (server, url):
        series = [{"id": str(i), "values": [float(i + j % 12) for j in range(60)]} for i in range(8)]
        body = {"series": series, "h": 2000, "num_samples": 60, "seed": 0}  # far more than a second of decoding
        r = sigterm_while_decoding(server, url, body)
        assert r.status_code == 503 and "shut down before this request was forecast" in r.json()["detail"]
        assert server.wait(60) in (0, -signal.SIGTERM)
