"""Linear maps with their weights prepacked for oneDNN, for decoding on CPUs.

At the row counts of decoding (one to a few hundred rows a step) torch's default float32 GEMM runs
far below the machine's peak: a 20 x 768 by 768 x 6144 product took 3.1 ms here (2 threads), the same
product with the weight packed once for oneDNN 1.3 ms, and 3072 -> 768 went from 1.3 to 0.46 ms
(float32, `F.linear` against the packed op on random weights, timed in one process). The arithmetic is the same float32 (or bfloat16) multiply-add; only the
summation order differs, so results agree to float rounding.

The packed copy is made on first use and remade when the weight changes (its version counter), the
dtype or the device; where oneDNN's packed linear is missing (other devices, float64, builds without it)
or gradients are wanted, ``F.linear`` runs.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from leapcast.models.precision import LinearMap

PACKED_DTYPES = (torch.float32, torch.bfloat16)
ROWS_HINT = 32  # the batch size oneDNN tunes the packed layout for; any row count works


def available() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


class Packed:
    """One weight's packed copy, remade when the weight changes."""

    def __init__(self) -> None:
        self.key: tuple | None = None
        self.weight: torch.Tensor | None = None

    def __call__(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """F.linear(x, weight, bias): x [..., in] -> [..., out], in ``x``'s type.

        A weight in a lower tier than ``x`` (bfloat16 weights, float32 activations; ``leapcast.models.precision``)
        multiplies in the weight's type, with float32 accumulation, and hands back ``x``'s type.
        """
        if weight.dtype != x.dtype:
            out = self(x.to(weight.dtype), weight, None if bias is None else bias.to(weight.dtype))
            return out.to(x.dtype)
        if (
            weight.device.type != "cpu"
            or weight.dtype not in PACKED_DTYPES
            or x.dtype != weight.dtype
            or (torch.is_grad_enabled() and weight.requires_grad)
            or not available()
        ):
            return F.linear(x, weight, bias)
        version = 0 if weight.is_inference() else weight._version  # inference tensors keep no version
        key = (weight.data_ptr(), version, weight.dtype, tuple(weight.shape))
        if key != self.key:
            try:
                self.weight = torch.ops.mkldnn._reorder_linear_weight(weight.detach().contiguous(), ROWS_HINT)
            except RuntimeError:  # a oneDNN build or CPU without this type's packed kernels: the plain product
                self.weight = None
            self.key = key
        if self.weight is None:
            return F.linear(x, weight, bias)
        return torch.ops.mkldnn._linear_pointwise(x, self.weight, bias, "none", [], "")


class PackedLinear(nn.Linear, LinearMap):
    """``nn.Linear`` (same parameters and state dict) whose forward uses a packed weight where it can."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__(in_features, out_features, bias)
        self._packed = Packed()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._packed(x, self.weight, self.bias)
