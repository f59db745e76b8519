"""Serving the app with uvicorn, draining on SIGTERM (and Ctrl-C): /readyz turns 503, no new connection is
accepted, the requests in flight finish (for at most ``drain_s`` seconds), then the engine thread stops."""

from __future__ import annotations

from leapcast.forecaster import Forecaster
from leapcast.serve.app import create_app
from leapcast.serve.limits import ServeConfig


def run(config: ServeConfig, forecaster: Forecaster | None = None, log_level: str = "info") -> None:
    """Serve until SIGTERM or SIGINT. With a ``forecaster`` (already loaded) the port opens once it is warmed up."""
    import uvicorn

    app = create_app(config, forecaster)
    state = app.state.leapcast

    class DrainingServer(uvicorn.Server):
        def handle_exit(self, sig, frame) -> None:
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
