"""Native PyTorch models behind one small contract (see `base.StepModel`)."""

from leapcast.models.base import DecoderState, StepModel
from leapcast.models.loading import load_model

__all__ = ["DecoderState", "StepModel", "load_model"]
