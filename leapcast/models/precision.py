"""Precision tiers: the numeric type a model's linear maps run in.

- ``float32``: the reference; every oracle test holds it to the official implementations.
- ``bfloat16``: the weights of the linear maps inside the network (attention and feed-forward projections;
  for Toto also the patch embedding) are stored in bfloat16. A map casts its float32 input to bfloat16,
  oneDNN multiplies with float32 accumulation, and the result comes back as float32. Embedding look-ups, the
  residual stream, norms, attention scores and softmax, scaling, the output head, the output distribution
  and sampling stay float32. The output head stays float32 because oneDNN's bfloat16 product also rounds its
  result to bfloat16: 8 significant bits, 0.06 at a logit of 16, enough to tie the top-k boundary and move the
  probabilities sampling draws from.
- ``auto``: bfloat16 where the CPU has bfloat16 matrix instructions (AMX or AVX512-BF16), float32 elsewhere.
  CPUs without them emulate bfloat16 products, many times slower than float32.

int8 is not offered: see docs/precision.md for the measurement that ruled out the maintained paths.
"""

from __future__ import annotations

import functools
import warnings
from pathlib import Path

import torch
from torch import nn

from leapcast.checks import param

TIERS = ("float32", "bfloat16", "auto")
_NAMES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}
# float64 is not a tier for users: the tests run nets in it to give float32 a yardstick
_DTYPES = (torch.float32, torch.bfloat16, torch.float64)


@functools.cache
def cpu_has_bf16_matrix_units() -> bool:
    """AMX tiles or AVX512-BF16 on this CPU: torch's own probes, else the kernel's CPU flags."""
    for probe in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"):
        check = getattr(torch.cpu, probe, None)
        if check is not None and check():
            return True
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        flags = set(cpuinfo.read_text(errors="replace").split())
        return bool(flags & {"amx_bf16", "avx512_bf16"})
    return False


def resolve_tier(dtype: str | torch.dtype | None, device: torch.device | str = "cpu") -> torch.dtype:
    """``dtype`` as given by a user (a tier name or a torch dtype; None: float32) -> the type linear maps run in."""
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        if dtype not in _DTYPES:
            raise ValueError(f"{param('dtype')} {dtype} is not supported; use one of {', '.join(TIERS)}")
        return _checked(dtype, device)
    if not isinstance(dtype, str):
        raise TypeError(f"{param('dtype')} must be a tier name ({', '.join(TIERS)}), got {dtype!r}")
    name = dtype.strip().lower().removeprefix("torch.")
    if name == "auto":
        device = torch.device(device)
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
        return torch.bfloat16 if device.type == "cpu" and cpu_has_bf16_matrix_units() else torch.float32
    if name == "int8":
        raise ValueError(
            f"{param('dtype')} 'int8' is not offered: no maintained int8 path was faster than bfloat16 on CPUs "
            "(docs/precision.md); use 'bfloat16' or 'auto'"
        )
    if name not in _NAMES:
        raise ValueError(f"{param('dtype')} {dtype!r} is not a tier; use one of {', '.join(TIERS)}")
    return _checked(_NAMES[name], device)


def _checked(dtype: torch.dtype, device: torch.device | str) -> torch.dtype:
    """A tier asked for by name or type: bfloat16 on a CPU that emulates it is kept, with a warning (once)."""
    if dtype == torch.bfloat16 and torch.device(device).type == "cpu" and not cpu_has_bf16_matrix_units():
        _warn_emulated()
    return dtype


@functools.cache
def _warn_emulated() -> None:
    warnings.warn(
        f"{param('dtype')} 'bfloat16' on a CPU without bfloat16 matrix instructions (AMX, AVX512-BF16): its "
        "products are emulated, about 20x slower than float32 on an AVX2-only CPU (docs/precision.md); "
        "'auto' picks the fast tier of each machine",
        RuntimeWarning,
        stacklevel=4,
    )


def tier_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


class LinearMap(nn.Module):
    """Marks a module whose ``weight`` (and ``bias``, if any) ``lower`` stores in the tier's type; its forward
    casts its input to the weight's type and its output back (``leapcast.models.packed.Packed`` does).
    ``in_tier = False`` keeps one (an output head) in float32."""

    in_tier = True


def lower(net: nn.Module, tier: torch.dtype) -> nn.Module:
    """Store the weights of ``net``'s linear maps in ``tier`` (in place); everything else keeps its type.
    The net records its tier (``net.tier``)."""
    if tier not in (torch.float32, torch.float64, torch.bfloat16):
        raise ValueError(f"{param('tier')} {tier} is not a tier to lower to")
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, LinearMap) and module.in_tier:
                module.weight.data = module.weight.data.to(tier)
                bias = getattr(module, "bias", None)
                if bias is not None:
                    bias.data = bias.data.to(tier)
    setattr(net, "tier", tier)  # noqa: B010 (nn.Module's typed __setattr__ takes tensors and modules)
    return net
