"""Official Chronos-T5 sizes, random-weight checkpoints, and saving in the official layout.

Random-weight checkpoints of the official configurations let tests and speed
benchmarks run with no download; they forecast nothing meaningful.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import cast

import torch
from safetensors.torch import save_file

from leapcast.checks import param
from leapcast.models.chronos_t5 import ChronosT5
from leapcast.models.chronos_tokenizer import ChronosTokenizerConfig
from leapcast.models.t5 import T5, DecoderLayer, EncoderLayer, T5Config

# (d_model, d_kv, d_ff, layers per stack, heads) of amazon/chronos-t5-*; all use ReLU, 32 buckets.
CHRONOS_T5_SIZES = {
    "tiny": (256, 64, 1024, 4, 4),
    "mini": (384, 64, 1536, 4, 8),
    "small": (512, 64, 2048, 6, 8),
    "base": (768, 64, 3072, 12, 12),
    "large": (1024, 64, 4096, 24, 16),
}


def chronos_t5_config(size: str, vocab_size: int = 4096, feed_forward_proj: str = "relu") -> T5Config:
    if size not in CHRONOS_T5_SIZES:
        raise ValueError(f"{param('size')} must be one of {', '.join(CHRONOS_T5_SIZES)}, got {size!r}")
    d_model, d_kv, d_ff, layers, heads = CHRONOS_T5_SIZES[size]
    return T5Config(
        vocab_size=vocab_size,
        d_model=d_model,
        d_kv=d_kv,
        d_ff=d_ff,
        num_layers=layers,
        num_decoder_layers=layers,
        num_heads=heads,
        feed_forward_proj=feed_forward_proj,
    )


def random_chronos_t5(
    cfg: T5Config, chronos: ChronosTokenizerConfig | None = None, seed: int = 0, name: str = "random"
) -> ChronosT5:
    """A Chronos-T5 with T5's initialisation scheme and random weights."""
    chronos = chronos or ChronosTokenizerConfig(n_tokens=cfg.vocab_size)
    if chronos.n_tokens != cfg.vocab_size:
        raise ValueError(f"tokenizer n_tokens={chronos.n_tokens} must equal the model's vocab_size={cfg.vocab_size}")
    gen = torch.Generator().manual_seed(seed)
    net = T5(cfg)
    with torch.no_grad():
        for pname, p in net.named_parameters():
            if "norm" in pname.split(".")[-2]:
                continue  # layer norms start at 1
            fan_in = p.shape[0] if p.ndim == 2 else 1  # Dense weights are [in, out]
            std = 1.0 if pname == "embed.weight" else fan_in**-0.5
            if pname.endswith("_bias.weight"):
                std = cfg.d_model**-0.5
            p.copy_(torch.randn(p.shape, generator=gen) * std)
        # T5 attention has no 1/sqrt(d_kv) scaling: queries start d_kv**-0.5 smaller instead,
        # or the initial attention logits have std ~sqrt(d_kv), the softmax saturates and barely learns
        inner = cfg.num_heads * cfg.d_kv
        decoder = cast("Iterable[DecoderLayer]", net.dec_layers)
        attending: list[EncoderLayer | DecoderLayer] = [*cast("Iterable[EncoderLayer]", net.enc_layers), *decoder]
        for layer in attending:
            layer.qkv.weight[:, :inner] *= cfg.d_kv**-0.5
        for layer in decoder:
            layer.cross_q.weight.mul_(cfg.d_kv**-0.5)
    return ChronosT5(net, chronos, name=name)


def save_chronos_t5(model: ChronosT5, folder: str | Path, options: dict | None = None) -> Path:
    """Write config.json + model.safetensors in the layout chronos-forecasting and transformers read.

    options: leapcast pipeline options for config.json's ``leapcast`` block (e.g. seasonal_adjustment).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cfg = model.net.cfg
    config = {
        "architectures": ["T5ForConditionalGeneration"],
        "model_type": "t5",
        "vocab_size": cfg.vocab_size,
        "d_model": cfg.d_model,
        "d_kv": cfg.d_kv,
        "d_ff": cfg.d_ff,
        "num_layers": cfg.num_layers,
        "num_decoder_layers": cfg.num_decoder_layers,
        "num_heads": cfg.num_heads,
        "relative_attention_num_buckets": cfg.relative_attention_num_buckets,
        "relative_attention_max_distance": cfg.relative_attention_max_distance,
        "layer_norm_epsilon": cfg.layer_norm_epsilon,
        "feed_forward_proj": cfg.feed_forward_proj,
        "tie_word_embeddings": cfg.tie_word_embeddings,
        "decoder_start_token_id": cfg.decoder_start_token_id,
        "pad_token_id": model.chronos.pad_token_id,
        "eos_token_id": model.chronos.eos_token_id,
        "dropout_rate": 0.1,
        "is_encoder_decoder": True,
        "chronos_config": model.chronos.to_dict(),
    }
    if options:
        config["leapcast"] = dict(options)
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    save_file(to_hf_t5(model.net), str(folder / "model.safetensors"))
    return folder


def to_hf_t5(net: T5) -> dict[str, torch.Tensor]:
    """This package's fused layout -> Hugging Face T5 weight names."""
    cfg = net.cfg
    as_is = {"embed.weight", "enc_bias.weight", "dec_bias.weight"}
    sd = {
        k: (v.t() if v.ndim == 2 and k not in as_is else v).detach().float().cpu().contiguous()
        for k, v in net.state_dict().items()
    }  # HF: [out, in]
    out = {
        "shared.weight": sd["embed.weight"],
        "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight": sd["enc_bias.weight"],
        "decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight": sd["dec_bias.weight"],
        "encoder.final_layer_norm.weight": sd["enc_norm.weight"],
        "decoder.final_layer_norm.weight": sd["dec_norm.weight"],
    }
    for i in range(cfg.num_layers):
        p, m = f"encoder.block.{i}.layer", f"enc_layers.{i}"
        out[f"{p}.0.layer_norm.weight"] = sd[f"{m}.norm_attn.weight"]
        for w, t in zip("qkv", sd[f"{m}.qkv.weight"].chunk(3)):
            out[f"{p}.0.SelfAttention.{w}.weight"] = t.contiguous()
        out[f"{p}.0.SelfAttention.o.weight"] = sd[f"{m}.o.weight"]
        out[f"{p}.1.layer_norm.weight"] = sd[f"{m}.norm_ff.weight"]
        out.update(_ff_to_hf(sd, f"{m}.ff", f"{p}.1.DenseReluDense", cfg))
    for i in range(cfg.num_decoder_layers):
        p, m = f"decoder.block.{i}.layer", f"dec_layers.{i}"
        out[f"{p}.0.layer_norm.weight"] = sd[f"{m}.norm_self.weight"]
        for w, t in zip("qkv", sd[f"{m}.qkv.weight"].chunk(3)):
            out[f"{p}.0.SelfAttention.{w}.weight"] = t.contiguous()
        out[f"{p}.0.SelfAttention.o.weight"] = sd[f"{m}.o.weight"]
        out[f"{p}.1.layer_norm.weight"] = sd[f"{m}.norm_cross.weight"]
        out[f"{p}.1.EncDecAttention.q.weight"] = sd[f"{m}.cross_q.weight"]
        for w, t in zip("kv", sd[f"{m}.cross_kv.weight"].chunk(2)):
            out[f"{p}.1.EncDecAttention.{w}.weight"] = t.contiguous()
        out[f"{p}.1.EncDecAttention.o.weight"] = sd[f"{m}.cross_o.weight"]
        out[f"{p}.2.layer_norm.weight"] = sd[f"{m}.norm_ff.weight"]
        out.update(_ff_to_hf(sd, f"{m}.ff", f"{p}.2.DenseReluDense", cfg))
    if not cfg.tie_word_embeddings:
        out["lm_head.weight"] = sd["lm_head.weight"]
    return out


def _ff_to_hf(sd: dict, src: str, dst: str, cfg: T5Config) -> dict[str, torch.Tensor]:
    wi = sd[f"{src}.wi.weight"]
    if cfg.gated:
        a, b = wi.chunk(2)
        return {
            f"{dst}.wi_0.weight": a.contiguous(),
            f"{dst}.wi_1.weight": b.contiguous(),
            f"{dst}.wo.weight": sd[f"{src}.wo.weight"],
        }
    return {f"{dst}.wi.weight": wi, f"{dst}.wo.weight": sd[f"{src}.wo.weight"]}
