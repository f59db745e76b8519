"""Forecasts at cluster scale: ``forecast(dataset, model=..., h=...)`` over a ray.data Dataset of long-frame rows,
and the ``leapcast forecast --ray`` command built on it (docs/distributed.md). Needs the ``ray`` extra:
``pip install 'leapcast[ray]'``."""

from __future__ import annotations

try:
    import ray.data  # noqa: F401  (the whole package runs on it)
except ImportError as err:  # pragma: no cover - the plain install
    raise ImportError(
        "leapcast.distributed runs on Ray Data, which is not installed: pip install 'leapcast[ray]'"
    ) from err

from leapcast.distributed.pipeline import Plan, forecast, plan, start_local

__all__ = ["Plan", "forecast", "plan", "start_local"]
