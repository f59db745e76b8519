"""leapcast: fast autoregressive time-series foundation models."""

from leapcast.engine.sampling import SamplingConfig
from leapcast.forecaster import Forecaster

__all__ = ["Forecaster", "SamplingConfig"]
__version__ = "0.1.0"
