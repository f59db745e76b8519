"""leapcast: fast autoregressive time-series foundation models."""

from leapcast.engine.sampling import SamplingConfig
from leapcast.engine.speculative import SpecConfig, SpecStats
from leapcast.forecaster import Forecaster

__all__ = ["Forecaster", "SamplingConfig", "SpecConfig", "SpecStats"]
__version__ = "0.1.0"
