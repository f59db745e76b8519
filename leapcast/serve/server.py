"""Serving the app with uvicorn, draining on SIGTERM (and Ctrl-C): /readyz turns 503, no new connection is
accepted, the requests in flight finish (for at most ``drain_s`` seconds), then the engine thread stops. Requests
still decoding near the end of ``drain_s`` are answered 503 (JSON) before uvicorn cancels what is left."""

from __future__ import annotations

import threading

from leapcast.forecaster import Forecaster
from leapcast.serve.app import create_app
from leapcast.serve.limits import ServeConfig


def run(config: ServeConfig, forecaster: Forecaster | None = None, log_level: str = "info") -> None:
    """Serve until SIGTERM or SIGINT. With a ``forecaster`` (already loaded) the port opens once it is warmed up."""
    import uvicorn

    app = create_app(config, forecaster)
    state = app.state.leapcast

    def give_up() -> None:  # uvicorn would cancel the handlers (a bare 500): fail the jobs first, a JSON 503 each
        if state.scheduler is not None:
            state.scheduler.close(drain=False, timeout=0)

    class DrainingServer(uvicorn.Server):
        def handle_exit(self, sig, frame) -> None:
            if not state.draining:
                # the answers need a moment to go out before uvicorn's own deadline
                margin = min(1.0, config.drain_s / 4)
                timer = threading.Timer(max(0.0, config.drain_s - margin), give_up)
                timer.daemon = True  # a server drained early exits without waiting for it
                timer.start()
            state.draining = True  # /readyz says 503 at once; uvicorn then lets requests in flight finish
            super().handle_exit(sig, frame)

    settings = uvicorn.Config(
        app,
        host=config.host,
        port=config.port,
        log_level=log_level,
        timeout_graceful_shutdown=config.drain_s,
    )
    DrainingServer(settings).run()
