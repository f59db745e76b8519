"""Toto's network (Datadog, 2025; reference: the ``toto-ts`` package): config, layers, causal patch scaler, weights.

The parts the engine never sees. ``leapcast.models.toto`` drives them behind the engine's contract.

- ``TotoConfig``: the reference constructor's fields as config.json holds them, validated.
- ``TotoNet``: patch embedding (linear maps prepacked for oneDNN on CPUs, ``leapcast.models.packed``), a stack of pre-norm transformer layers (time-wise causal attention with
  rotary positions and xPos scaling, or space-wise attention across the variates of one item), SwiGLU
  feed-forward, an unembedding to P positions per patch and a Student-T mixture projection per value.
- ``patch_stats``: the reference's ``CausalPatchStdMeanScaler``, incremental: running Welford sums in
  float64 carried from patch to patch, so a step never rereads the context.
- ``convert_weights``: the reference's state dict (either feed-forward key layout) -> ``TotoNet``'s, strict.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import cast

import torch
from torch import nn
from torch.nn import functional as F

from leapcast.models.packed import Packed, PackedLinear

SCALER = "<class 'model.scaler.CausalPatchStdMeanScaler'>"
MIXTURE = "<class 'model.distribution.MixtureOfStudentTsOutput'>"
MINIMUM_SCALE = 0.1  # the reference scaler's default floor (its constructor never sets it)
XPOS_BASE = 512  # rotary-embedding-torch's xpos_scale_base, the reference's default
NORM_EPS = 1e-8  # the reference RMSNorm's eps
METADATA_KEYS = (
    "architectures",
    "model_type",
    "transformers_version",
    "torch_dtype",
)  # written by hub tooling; carry nothing


@dataclass(frozen=True)
class TotoConfig:
    """The reference constructor's fields (config.json), plus ``pre_xformers_checkpoint`` (which feed-forward
    key layout the weights use; leapcast reads the layout from the key names and only records the flag)."""

    patch_size: int
    stride: int
    embed_dim: int
    num_layers: int
    num_heads: int
    mlp_hidden_dim: int
    spacewise_every_n_layers: int
    k_components: int = 24
    spacewise_first: bool = True
    stabilize_with_global: bool = True
    scale_factor_exponent: float = 10.0
    dropout: float = 0.0  # training only
    use_memory_efficient_attention: bool = True  # xFormers in the reference; the same attention either way
    pre_xformers_checkpoint: bool = False
    scaler_cls: str = SCALER
    output_distribution_classes: tuple[str, ...] = (MIXTURE,)

    def __post_init__(self) -> None:
        for name in ("patch_size", "stride", "embed_dim", "num_layers", "num_heads", "mlp_hidden_dim", "k_components"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Toto config `{name}` must be a positive integer, got {value!r}")
        if self.stride != self.patch_size:
            raise ValueError(
                f"Toto config `stride` ({self.stride}) must equal `patch_size` ({self.patch_size}): "
                "overlapping patches cannot be decoded patch by patch"
            )
        if self.embed_dim % self.num_heads or (self.embed_dim // self.num_heads) % 2:
            raise ValueError(
                f"Toto config `embed_dim` {self.embed_dim} must split into `num_heads` {self.num_heads} heads of even size"
            )
        n = self.spacewise_every_n_layers
        if isinstance(n, bool) or not isinstance(n, int) or not (n == -1 or (n >= 1 and self.num_layers % n == 0)):
            raise ValueError(
                f"Toto config `spacewise_every_n_layers` must be -1 (none) or divide `num_layers` "
                f"{self.num_layers}, got {n!r}"
            )
        if self.scaler_cls != SCALER:
            raise ValueError(
                f"Toto config `scaler_cls` {self.scaler_cls!r} is not supported; leapcast implements {SCALER!r}, "
                "the scaler of the released checkpoints"
            )
        if list(self.output_distribution_classes) != [MIXTURE]:
            raise ValueError(
                f"Toto config `output_distribution_classes` {list(self.output_distribution_classes)!r} is not "
                f"supported; leapcast implements [{MIXTURE!r}], the head of the released checkpoints"
            )
        if not math.isfinite(self.scale_factor_exponent) or self.scale_factor_exponent < 0:
            raise ValueError(
                f"Toto config `scale_factor_exponent` must be a finite number >= 0, got {self.scale_factor_exponent!r}"
            )

    @classmethod
    def from_dict(cls, config: dict, where: str = "config.json") -> TotoConfig:
        """The reference's config.json (``where`` names it in messages); an unknown field is refused, as the
        reference's constructor refuses it."""
        fields = {
            k: v for k, v in config.items() if k != "leapcast" and not k.startswith("_") and k not in METADATA_KEYS
        }
        kwargs = dict(fields.pop("output_distribution_kwargs", None) or {})
        k = kwargs.pop("k_components", None)
        if kwargs:
            raise ValueError(
                f"{where}: `output_distribution_kwargs` has fields Toto's mixture does not take: {sorted(kwargs)}"
            )
        if k is not None:
            fields["k_components"] = k
        if "output_distribution_classes" in fields:
            fields["output_distribution_classes"] = tuple(fields["output_distribution_classes"])
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(fields) - known)
        if unknown:
            raise ValueError(f"{where} has fields Toto does not take: {unknown}")
        missing = sorted(
            name
            for name in (
                "patch_size",
                "stride",
                "embed_dim",
                "num_layers",
                "num_heads",
                "mlp_hidden_dim",
                "spacewise_every_n_layers",
            )
            if name not in fields
        )
        if missing:
            raise ValueError(f"{where} lacks Toto's fields {missing}")
        try:
            return cls(**fields)
        except ValueError as err:
            raise ValueError(f"{where}: {err}") from None

    def to_dict(self) -> dict:
        """config.json as the reference's ``Toto(**config)`` reads it."""
        out = asdict(self)
        out["output_distribution_kwargs"] = {"k_components": out.pop("k_components")}
        out["output_distribution_classes"] = list(self.output_distribution_classes)
        if not out["pre_xformers_checkpoint"]:
            del out["pre_xformers_checkpoint"]  # the reference's constructor does not take it
        return out

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads

    def spacewise(self) -> list[bool]:
        """Per layer: True where attention runs across variates (the reference's ``_get_layer_types``)."""
        n = self.spacewise_every_n_layers
        if n == -1:
            return [False] * self.num_layers
        block = [False] * (n - 1)
        block = [True, *block] if self.spacewise_first else [*block, True]
        return block * (self.num_layers // n)


class TotoLayer(nn.Module):
    """Pre-norm attention (time-wise or space-wise) and SwiGLU feed-forward. qkv rows are head-major
    ([3, H, hd]; the reference's are [3, hd, H], permuted once when loading)."""

    def __init__(self, cfg: TotoConfig, spacewise: bool) -> None:
        super().__init__()
        d = cfg.embed_dim
        self.spacewise = spacewise
        self.num_heads = cfg.num_heads
        self.norm1 = nn.Parameter(torch.ones(d))
        self.norm2 = nn.Parameter(torch.ones(d))
        self.qkv = PackedLinear(d, 3 * d)
        self.out = PackedLinear(d, d)
        self.ff_in = PackedLinear(d, 2 * cfg.mlp_hidden_dim)
        self.ff_out = PackedLinear(cfg.mlp_hidden_dim, d)

    def attention_inputs(self, h: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """h [..., n, D] -> q, k, v [..., H, n, hd] (before rotation)."""
        qkv = self.qkv(rms_norm(h, self.norm1)).unflatten(-1, (3, self.num_heads, -1))  # [..., n, 3, H, hd]
        return qkv.movedim(-4, -2).unbind(-4)

    def across_variates(self, h: torch.Tensor) -> torch.Tensor:
        """A space-wise layer: h [N, V, n, D] -> [N, V, n, D], bidirectional attention across the V variates at each patch."""
        q, k, v = self.attention_inputs(h.transpose(1, 2))  # [N, n, H, V, hd]
        att = F.scaled_dot_product_attention(q, k, v)
        return self.feed_forward(h + self.out(att.transpose(-3, -2).flatten(-2)).transpose(1, 2))

    def feed_forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [..., D] (after attention's residual) -> x + SwiGLU(norm2(x)); the gate is the first half, as in the reference."""
        gate, up = self.ff_in(rms_norm(x, self.norm2)).chunk(2, dim=-1)
        return x + self.ff_out(F.silu(gate) * up)


class TotoNet(nn.Module):
    """Toto's weights and the pieces of its forward pass; ``leapcast.models.toto.Toto`` runs them."""

    inv_freq: torch.Tensor  # buffers, registered in __init__
    xpos: torch.Tensor

    def __init__(self, cfg: TotoConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d, p, c = cfg.embed_dim, cfg.patch_size, cfg.k_components
        self.embed = PackedLinear(p, d)
        self.layers = nn.ModuleList(TotoLayer(cfg, s) for s in cfg.spacewise())
        self.unembed = nn.Linear(d, d * p)
        self.head = nn.Linear(d, 4 * c)  # per value: mixture logits, loc, scale, df (the reference's four projections)
        self._fold_key: tuple | None = None
        self._fold_packed = Packed()
        hd = cfg.head_dim
        self.register_buffer(
            "inv_freq", 1.0 / (10000 ** (torch.arange(0, hd, 2)[: hd // 2].float() / hd)), persistent=False
        )
        self.register_buffer("xpos", (torch.arange(0, hd, 2) + 0.4 * hd) / (1.4 * hd), persistent=False)

    def mixture(self, h: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """h [..., D] at the last layer of a patch, the scaler's loc / scale [...] of that patch ->
        (logits, loc, scale, df), each [..., P, C] float32 (float64 for a float64 net), in value space.

        The unembedding (D -> P x D) and the four projections (D -> 4C per value) are two linear maps in a row:
        they run as one (D -> P x 4C), folded in float64 once (``_folded``); for the released size that reads
        4.7M weights a step instead of 38M.
        """
        cfg = self.cfg
        weight, bias = self._folded(h)
        work = torch.promote_types(h.dtype, torch.float32)  # float32 for lower tiers, float64 for checks
        out = (
            self._fold_packed(h, weight, bias).to(work).unflatten(-1, (cfg.patch_size, 4, cfg.k_components))
        )  # [..., P, 4, C]
        eps = torch.finfo(work).eps
        logits, base_loc = out[..., 0, :], out[..., 1, :]
        positive = F.softplus(out[..., 2:, :]).clamp_min(eps)  # scale and df, [..., P, 2, C]
        loc, scale = loc[..., None, None], scale[..., None, None]
        return logits, loc + scale * base_loc, scale * positive[..., 0, :], 2.0 + positive[..., 1, :]

    def forward(self, scaled: torch.Tensor) -> torch.Tensor:
        """The whole causal pass, for training: scaled [B, V, L, P] (patches scaled by their own causal statistics,
        counted from each series' first patch; a series shorter than L ends in padding, which no earlier patch
        attends to) -> h [B, V, L, D] at the last layer. Positions count from 0 with one xPos centre, so only
        relative positions count, as in the reference's uncached pass."""
        length = scaled.shape[2]
        index = torch.arange(length, device=scaled.device, dtype=self.xpos.dtype)
        rope = self.rope(index, torch.zeros_like(index))  # [L, hd] each
        h = self.embed(scaled)
        for layer in self.blocks():
            if layer.spacewise:
                h = layer.across_variates(h)
            else:
                q, k, v = layer.attention_inputs(h)  # [B, V, H, L, hd]
                q, k = self.rotate(q, rope, keys=False), self.rotate(k, rope, keys=True)
                att = F.scaled_dot_product_attention(q, k, v, is_causal=True)
                h = layer.feed_forward(h + layer.out(att.transpose(-3, -2).flatten(-2)))
        return h

    def blocks(self, count: int | None = None) -> list[TotoLayer]:
        """The first ``count`` layers (None: all), typed."""
        return cast("list[TotoLayer]", list(self.layers)[:count])

    def distribution(self, h: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """h [..., D] -> (logits, loc, scale, df) [..., P, C] of the next patch in the scaled space (before
        ``mixture`` shifts and scales it to values): the unembedding and the head one after the other, so
        gradients flow (``mixture`` runs them folded, for decoding)."""
        cfg = self.cfg
        u = self.unembed(h).unflatten(-1, (cfg.patch_size, cfg.embed_dim))  # [..., P, D]
        out = self.head(u).unflatten(-1, (4, cfg.k_components))  # [..., P, 4, C]
        positive = F.softplus(out[..., 2:, :]).clamp_min(torch.finfo(out.dtype).eps)
        return out[..., 0, :], out[..., 1, :], positive[..., 0, :], 2.0 + positive[..., 1, :]

    def _folded(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The unembedding and head as one map: weight [P * 4C, D], bias [P * 4C] in the activations' type, whatever
        the tier (``leapcast.models.precision``), cached."""
        key = tuple(
            (t.data_ptr(), t.dtype, 0 if t.is_inference() else t._version)
            for t in (self.unembed.weight, self.unembed.bias, self.head.weight, self.head.bias)
        )
        if getattr(self, "_fold_key", None) != key:
            cfg = self.cfg
            with torch.no_grad():
                u = self.unembed.weight.double().view(cfg.patch_size, cfg.embed_dim, cfg.embed_dim)  # [P, D_out, D_in]
                ub = self.unembed.bias.double().view(cfg.patch_size, cfg.embed_dim)
                hw, hb = self.head.weight.double(), self.head.bias.double()  # [4C, D]
                weight = torch.einsum("cd,pde->pce", hw, u).reshape(-1, cfg.embed_dim)
                bias = (ub @ hw.T + hb).reshape(-1)
            self._fold = (weight.to(self.unembed.weight.dtype), bias.to(self.unembed.weight.dtype))
            self._fold_key = key
        return self._fold

    def rope(self, positions: torch.Tensor, centers: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Rotary positions with xPos scaling, as the reference's ``TimeAwareRotaryEmbedding``, for ``rotate``.

        positions, centers [..., n]: the patches' indices and the xPos centres they are scaled about ->
        (cos, sin, query scale, key scale), each [..., n, hd]. Queries are scaled by xpos ** ((t - c) / 512),
        keys by its inverse; frequencies pair adjacent dimensions, the scale repeats its half (the reference's layout).
        """
        freqs = (positions[..., None] * self.inv_freq).repeat_interleave(2, dim=-1)  # [..., n, hd]
        power = (positions - centers) / XPOS_BASE
        scale = self.xpos ** power[..., None]  # [..., n, hd/2]
        scale = torch.cat([scale, scale], dim=-1)
        return freqs.cos(), freqs.sin(), scale, scale**-1

    @staticmethod
    def rotate(x: torch.Tensor, rope: tuple[torch.Tensor, ...], keys: bool) -> torch.Tensor:
        """x [..., n, hd] rotated by ``rope`` (broadcast against x's leading dims)."""
        cos, sin, q_scale, k_scale = rope
        scale = k_scale if keys else q_scale
        pairs = x.unflatten(-1, (-1, 2))
        rotated = torch.stack([-pairs[..., 1], pairs[..., 0]], dim=-1).flatten(-2)  # (x0, x1) -> (-x1, x0)
        return (x * cos * scale + rotated * sin * scale).to(x.dtype)


def rms_norm(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return x / torch.sqrt((x * x).mean(dim=-1, keepdim=True) + NORM_EPS) * weight


# --- the causal patch scaler ------------------------------------------------------------------------------


def global_bounds(values: torch.Tensor, weights: torch.Tensor, cfg: TotoConfig) -> torch.Tensor:
    """The clamp of the causal scale from the whole context's statistics (``stabilize_with_global``), and that scale.

    values, weights [..., T] float64 (weights 0 where missing or padding) -> [..., 3] float64 (low, high, the
    context's scale); low, high = (0, inf) when the config does not stabilise.
    """
    count = weights.sum(-1).clamp_min(1.0)
    mean = torch.nan_to_num((values * weights).sum(-1) / count)
    variance = (((values - mean[..., None]) * weights) ** 2).sum(-1) / count
    scale = torch.sqrt(variance + MINIMUM_SCALE)
    if not cfg.stabilize_with_global:
        return torch.stack([torch.zeros_like(scale), torch.full_like(scale, math.inf), scale], dim=-1)
    factor = 10.0**cfg.scale_factor_exponent
    low = torch.clamp_min(scale / factor, MINIMUM_SCALE)
    return torch.stack([low, scale * factor, scale], dim=-1)


def patch_stats(
    values: torch.Tensor, weights: torch.Tensor, sums: torch.Tensor, bounds: torch.Tensor, patch_size: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Causal statistics of whole patches, continuing from running sums (Welford, in float64).

    values, weights [..., n * P] float64 (weights 0 where missing); sums [..., 3] float64: (weight, weighted sum,
    M2) of everything before; bounds [..., 2 or 3] from ``global_bounds`` ->
    (loc [..., n], scale [..., n] float64: each patch's statistics through its own last value, the values the
    patch is scaled by and the next patch's distribution is shifted and scaled by; sums after each patch [..., n, 3]).
    """
    count = sums[..., :1] + weights.cumsum(-1)  # [..., nP]
    total = sums[..., 1:2] + (values * weights).cumsum(-1)
    mean = total / count.clamp_min(1.0)
    before = torch.cat(
        [sums[..., 1:2] / sums[..., :1].clamp_min(1.0), mean[..., :-1]], dim=-1
    )  # the mean before each value
    m2 = sums[..., 2:3] + ((values - before) * (values - mean) * weights).cumsum(-1)
    variance = m2 / (count - 1.0).clamp_min(1.0)  # Bessel's correction
    scale = torch.sqrt(variance + MINIMUM_SCALE)
    scale = torch.maximum(torch.minimum(scale, bounds[..., 1:2]), bounds[..., :1])
    last = torch.arange(patch_size - 1, values.shape[-1], patch_size, device=values.device)
    after = torch.stack([count[..., last], total[..., last], m2[..., last]], dim=-1)  # [..., n, 3]
    return mean[..., last], scale[..., last], after


# --- weights ----------------------------------------------------------------------------------------------

_DERIVED = ("model.transformer.rotary_emb.freqs",)  # a buffer the reference computes from the config, sometimes saved


def convert_weights(ref: dict[str, torch.Tensor], cfg: TotoConfig) -> dict[str, torch.Tensor]:
    """The reference's state dict -> ``TotoNet``'s. Either feed-forward layout (``mlp.0`` / ``mlp.2``, or the fused
    ``mlp.0.w12`` / ``mlp.0.w3``) is read; any missing or unexpected tensor is named (the reference loads with
    strict=False and would leave it random)."""
    d, h, hd = cfg.embed_dim, cfg.num_heads, cfg.head_dim
    used: set[str] = set(k for k in ref if k in _DERIVED)
    missing: list[str] = []
    out: dict[str, torch.Tensor] = {}

    def take(name: str, *alternatives: str) -> torch.Tensor | None:
        for key in (name, *alternatives):
            if key in ref:
                used.add(key)
                return ref[key]
        missing.append(name)
        return None

    def linear(dst: str, src: str, *alternatives: str) -> None:
        for part in ("weight", "bias"):
            tensor = take(f"{src}.{part}", *(f"{a}.{part}" for a in alternatives))
            if tensor is not None:
                out[f"{dst}.{part}"] = tensor

    linear("embed", "model.patch_embed.projection")
    linear("unembed", "model.unembed")
    for i in range(cfg.num_layers):
        src, dst = f"model.transformer.layers.{i}", f"layers.{i}"
        for n in ("norm1", "norm2"):
            t = take(f"{src}.{n}.scale")
            if t is not None:
                out[f"{dst}.{n}"] = t
        w, b = take(f"{src}.attention.wQKV.weight"), take(f"{src}.attention.wQKV.bias")
        if w is not None and b is not None and w.shape == (3 * d, d) and b.shape == (3 * d,):
            # the reference splits rows as (qkv, head_dim, heads); ours are (qkv, heads, head_dim)
            out[f"{dst}.qkv.weight"] = w.view(3, hd, h, d).transpose(1, 2).reshape(3 * d, d)
            out[f"{dst}.qkv.bias"] = b.view(3, hd, h).transpose(1, 2).reshape(3 * d)
        elif w is not None and b is not None:
            out[f"{dst}.qkv.weight"], out[f"{dst}.qkv.bias"] = w, b  # a wrong shape, named by the shape check
        linear(f"{dst}.out", f"{src}.attention.wO")
        linear(f"{dst}.ff_in", f"{src}.mlp.0", f"{src}.mlp.0.w12")
        linear(f"{dst}.ff_out", f"{src}.mlp.2", f"{src}.mlp.0.w3")
    heads = []
    for part in ("weight", "bias"):
        pieces = [
            take(f"model.output_distribution.{n}.{part}") for n in ("mixture_weights", "loc_proj", "scale_proj", "df")
        ]
        if all(p is not None for p in pieces):
            heads.append((part, torch.cat([p for p in pieces if p is not None])))  # all of them
    for part, tensor in heads:
        out[f"head.{part}"] = tensor
    unexpected = sorted(set(ref) - used)
    if missing or unexpected:
        problems = []
        if missing:
            problems.append(f"missing {len(missing)} tensor(s) Toto needs (e.g. {missing[:3]})")
        if unexpected:
            problems.append(f"{len(unexpected)} tensor(s) Toto does not have (e.g. {unexpected[:3]})")
        raise ValueError("; ".join(problems))
    return out
