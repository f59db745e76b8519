"""Toto checkpoints: the official sizes, random weights, loading and writing the reference's folder layout.

A folder holds config.json (the reference constructor's fields, plus an optional ``leapcast`` block of
``TotoOptions``) and model.safetensors in the reference's key layout, which ``Toto.load_from_checkpoint``
of ``toto-ts`` reads as well.
"""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from leapcast.checks import param
from leapcast.models.toto import Toto, TotoOptions
from leapcast.models.toto_net import TotoConfig, TotoNet

# base: Toto-Open-Base-1.0 as released (151M parameters); small: a quarter-width, 4-layer sibling for CPUs.
TOTO_SIZES: dict[str, dict[str, Any]] = {
    "base": dict(
        patch_size=64,
        stride=64,
        embed_dim=768,
        num_layers=12,
        num_heads=12,
        mlp_hidden_dim=3072,
        spacewise_every_n_layers=12,
        spacewise_first=False,
        k_components=24,
        dropout=0.1,
    ),
    "small": dict(
        patch_size=16,
        stride=16,
        embed_dim=256,
        num_layers=4,
        num_heads=4,
        mlp_hidden_dim=1024,
        spacewise_every_n_layers=4,
        spacewise_first=False,
        k_components=24,
        dropout=0.1,
    ),
}


def is_toto_config(config: dict) -> bool:
    return "scaler_cls" in config or (
        "patch_size" in config and "embed_dim" in config and "chronos_config" not in config
    )


def toto_config(size: str) -> TotoConfig:
    if size not in TOTO_SIZES:
        raise ValueError(f"{param('size')} must be one of {', '.join(TOTO_SIZES)} for Toto, got {size!r}")
    return TotoConfig(**TOTO_SIZES[size])


def random_toto(
    cfg: TotoConfig, seed: int = 0, options: TotoOptions = TotoOptions(), name: str = "random-toto"
) -> Toto:
    """Random weights (seeded): Linear weights N(0, 1/fan_in), the residual branches' outputs a further
    1/sqrt(2 * layers) (GPT-2's rule, so activations stay of order 1), biases N(0, 0.1^2), norm scales near 1."""
    g = torch.Generator().manual_seed(seed)
    net = TotoNet(cfg)
    with torch.no_grad():
        for pname, param in net.named_parameters():
            if pname.endswith("norm1") or pname.endswith("norm2"):
                param.copy_(1 + 0.1 * torch.randn(param.shape, generator=g))
            elif param.dim() == 2:
                damp = (2 * cfg.num_layers) ** -0.5 if pname.endswith(("out.weight", "ff_out.weight")) else 1.0
                param.copy_(torch.randn(param.shape, generator=g) / param.shape[1] ** 0.5 * damp)
            else:
                param.copy_(0.1 * torch.randn(param.shape, generator=g))
    return Toto(net, options, name=name)


def toto_settings(config: dict, folder: Path) -> tuple[TotoConfig, TotoOptions]:
    """A Toto checkpoint folder's parsed config.json -> its network config and leapcast's options (its ``leapcast`` block)."""
    where = str(folder / "config.json")
    cfg = TotoConfig.from_dict(config, where)
    block = config.get("leapcast", {})
    if not isinstance(block, dict):
        raise ValueError(f"{where}: `leapcast` must be an object, got {block!r}")
    known = {f.name for f in fields(TotoOptions)}
    unknown = sorted(set(block) - known - {"seasonal_adjustment"})
    if unknown:
        raise ValueError(
            f"{where}: the `leapcast` block has fields Toto does not take: {unknown} (known: {sorted(known)})"
        )
    return cfg, TotoOptions(**{k: v for k, v in block.items() if k in known})


def to_reference(net: TotoNet, fused: bool = False) -> dict[str, torch.Tensor]:
    """``TotoNet``'s weights in the reference's key layout (``fused``: the xFormers SwiGLU names ``mlp.0.w12`` / ``w3``)."""
    cfg = net.cfg
    d, h, hd, c = cfg.embed_dim, cfg.num_heads, cfg.head_dim, cfg.k_components
    sd = {k: v.detach().float().cpu() for k, v in net.state_dict().items()}
    out = {
        "model.patch_embed.projection.weight": sd["embed.weight"],
        "model.patch_embed.projection.bias": sd["embed.bias"],
        "model.unembed.weight": sd["unembed.weight"],
        "model.unembed.bias": sd["unembed.bias"],
    }
    ff_in, ff_out = ("mlp.0.w12", "mlp.0.w3") if fused else ("mlp.0", "mlp.2")
    for i in range(cfg.num_layers):
        src, dst = f"layers.{i}", f"model.transformer.layers.{i}"
        out[f"{dst}.norm1.scale"], out[f"{dst}.norm2.scale"] = sd[f"{src}.norm1"], sd[f"{src}.norm2"]
        out[f"{dst}.attention.wQKV.weight"] = (
            sd[f"{src}.qkv.weight"].view(3, h, hd, d).transpose(1, 2).reshape(3 * d, d)
        )
        out[f"{dst}.attention.wQKV.bias"] = sd[f"{src}.qkv.bias"].view(3, h, hd).transpose(1, 2).reshape(3 * d)
        for part in ("weight", "bias"):
            out[f"{dst}.attention.wO.{part}"] = sd[f"{src}.out.{part}"]
            out[f"{dst}.{ff_in}.{part}"] = sd[f"{src}.ff_in.{part}"]
            out[f"{dst}.{ff_out}.{part}"] = sd[f"{src}.ff_out.{part}"]
    for part in ("weight", "bias"):
        for j, name in enumerate(("mixture_weights", "loc_proj", "scale_proj", "df")):
            out[f"model.output_distribution.{name}.{part}"] = sd[f"head.{part}"][j * c : (j + 1) * c]
    return {k: v.contiguous() for k, v in out.items()}


def save_toto(model: Toto, folder: str | Path, fused: bool = False, options: dict | None = None) -> Path:
    """Write config.json + model.safetensors as the reference reads them (``options``: extra ``leapcast`` fields)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = model.cfg.to_dict()
    block = {k: v for k, v in asdict(model.options).items() if v != getattr(TotoOptions(), k)}
    block.update(options or {})
    if block:
        config["leapcast"] = block
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    save_file(to_reference(model.net, fused=fused), str(folder / "model.safetensors"))
    return folder
