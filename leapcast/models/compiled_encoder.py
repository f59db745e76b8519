"""A T5 encoder compiled by ``torch.compile`` (inductor), for Chronos-T5 with ``compile=True``.

Eager, the encoder's norms, casts, ReLU and residual adds run as separate passes over [B, L, D] and [B, L, d_ff]
tensors: on house-target at 64 series of 127 tokens (bfloat16) they take a third of the encoder's 95 ms, and the
encoder 15% of a forecast at h 18 (docs/precision.md). Inductor fuses them around the products and the fused
attention. One graph with dynamic sizes serves every batch and context length (``dynamic=True``: a graph per
length would recompile for every new history length). Without ``max_autotune``: the products here are large enough
for oneDNN's own kernels, and autotuning a dynamic graph tripled its compile time for nothing measurable.
"""

from __future__ import annotations

import torch
from torch import nn
from torch._dynamo import config as dynamo_config
from torch._dynamo.exc import FailOnRecompileLimitHit, TorchDynamoException
from torch._inductor import config as inductor_config

from leapcast.models.compiled import _COMPILING, compile_failed, compile_region
from leapcast.models.t5 import T5

COMPILE_OPTIONS = {  # as the decoder's, less autotuning
    "freezing": True,
    "size_asserts": False,
    "alignment_asserts": False,
}


class EncoderPass(nn.Module):
    """tokens [B, L] long, mask [B, L] bool -> the encoder's output [B, L, D]: ``T5._encode`` of one chunk."""

    def __init__(self, net: T5) -> None:
        super().__init__()
        self.net = net

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.net._encode(tokens, mask)


class CompiledEncoder:
    """One net's compiled encoder pass, with the eager pass as the fallback where compiling fails."""

    def __init__(self, net: T5) -> None:
        self.net = net
        self.step, self.settings = compile_region(EncoderPass(net), COMPILE_OPTIONS, dynamic=True)
        self.failed: str | None = None
        self.calls = 0  # chunks encoded through the compiled graph

    def __call__(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """tokens [B, L] long, mask [B, L] bool -> [B, L, D], as ``T5._encode``."""
        if self.failed is None:
            try:
                with _COMPILING, inductor_config.patch(self.settings[0]), dynamo_config.patch(self.settings[1]):
                    out = self.step(tokens, mask)
                self.calls += 1
                return out
            except (TorchDynamoException, FailOnRecompileLimitHit) as err:  # no C++ compiler, inductor failing, ...
                self.failed = compile_failed(err, "encoding")
        return self.net._encode(tokens, mask)
