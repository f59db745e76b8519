"""Load a model from a local checkpoint folder: config.json + *.safetensors.

Pickle weights (.bin, .pt, .pth, .ckpt) are refused: unpickling runs arbitrary
code. So is remote code (``auto_map`` in config.json): leapcast runs only its
own native implementations.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import TypeVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from leapcast.allocator import tune_malloc
from leapcast.checks import check_flag, param
from leapcast.models.chronos_t5 import ChronosT5
from leapcast.models.chronos_tokenizer import ChronosTokenizerConfig
from leapcast.models.precision import lower, resolve_tier
from leapcast.models.t5 import T5, T5Config
from leapcast.models.toto import Toto
from leapcast.models.toto_net import TotoNet
from leapcast.models.toto_net import convert_weights as convert_toto_weights
from leapcast.models.toto_presets import is_toto_config, toto_settings

NetT = TypeVar("NetT", bound=torch.nn.Module)

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


class CheckpointError(ValueError):
    """A checkpoint folder leapcast cannot or will not load."""


def read_checkpoint(path: str | Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """config.json as a dict and all safetensors weights of a folder."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise CheckpointError(
            f"`model` path {str(path)!r} is not a folder; pass a checkpoint folder holding config.json "
            "and model.safetensors, or the name of a bundled model (see `leapcast info --list`)"
        )
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise CheckpointError(
            f"checkpoint folder {str(folder)!r} has no config.json; name a folder holding config.json and model.safetensors, or a bundled model (`leapcast info --list`)"
        )
    config = read_config(config_path)
    if "auto_map" in config:
        raise CheckpointError(
            f"{config_path} asks for remote code (`auto_map`); leapcast never runs code shipped with a "
            "checkpoint. Remove `auto_map` if the architecture is one leapcast implements natively."
        )
    weights_files = sorted(folder.glob("*.safetensors"))
    if not weights_files:
        pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
        if pickles:
            raise CheckpointError(
                f"checkpoint folder {str(folder)!r} holds only pickle weights ({', '.join(pickles)}); leapcast "
                "refuses pickle because loading it can run arbitrary code. Convert once, in an environment you "
                'trust: `python -c "import torch; from safetensors.torch import save_file; '
                f"save_file(torch.load('{pickles[0]}', weights_only=True), 'model.safetensors')\"` "
                "(or `model.save_pretrained(folder, safe_serialization=True)` with transformers)."
            )
        raise CheckpointError(f"checkpoint folder {str(folder)!r} has no *.safetensors weights")
    weights: dict[str, torch.Tensor] = {}
    for file in weights_files:
        try:
            weights.update(load_file(str(file)))
        except SafetensorError as err:  # truncated, garbage, or not safetensors at all
            raise CheckpointError(
                f"{file} is not a readable safetensors file ({err}); it may be truncated or corrupt: copy it again"
            ) from None
    return config, weights


def read_config(path: Path) -> dict:
    """A checkpoint's config.json as a dict, with a message naming the file when it is not a JSON object."""
    try:
        config = json.loads(path.read_text(encoding="utf-8-sig"))  # a byte-order mark some editors write is fine
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path} is not valid JSON ({err}); fix or replace the file") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{path} must hold a JSON object, got {type(config).__name__}")
    return config


def load_model(
    path: str | Path, device: str | torch.device = "cpu", dtype: str | torch.dtype | None = None, compile: bool = False
):
    """A native model for the checkpoint folder at ``path``: Chronos-T5 or Toto, told apart by config.json.

    ``dtype``: the precision tier its linear maps run in (``leapcast.models.precision``: float32, bfloat16,
    auto; None: float32); activations stay float32 (float64 for a float64 net, which the tests use).
    ``compile``: decoding steps through ``torch.compile`` (``leapcast.models.compiled``; Chronos-T5 only).
    """
    tier = resolve_tier(dtype, device)
    if check_flag(compile, "compile"):
        check_compilable(path)
    tune_malloc()  # decoding's temporaries reuse freed memory (``leapcast.allocator``)
    config, weights = read_checkpoint(path)
    if is_toto_config(config):
        return _load_toto(config, weights, Path(path), device, tier)
    if "chronos_config" not in config:
        raise CheckpointError(
            f"{Path(path) / 'config.json'} is neither a Chronos-T5 checkpoint (config.json with a chronos_config block, "
            "as published by chronos-forecasting) nor a Toto one (the fields of toto-ts' `Toto` constructor)"
        )
    where = Path(path) / "config.json"
    arch = config.get("architectures") or ["T5ForConditionalGeneration"]
    if not isinstance(arch, list):
        raise CheckpointError(
            f"{where} `architectures` {arch!r} is not supported; expected ['T5ForConditionalGeneration']"
        )
    if arch[0] != "T5ForConditionalGeneration":
        raise CheckpointError(f"{where} architecture {arch[0]!r} is not supported; expected T5ForConditionalGeneration")
    try:
        chronos = ChronosTokenizerConfig.from_dict(config["chronos_config"])
        cfg = T5Config.from_dict(config)
    except KeyError as err:
        raise CheckpointError(f"{where} lacks the field {err}; a Chronos-T5 config.json has it") from None
    except (TypeError, ValueError, AttributeError) as err:
        raise CheckpointError(
            f"{where} has a field of the wrong type or value ({err}); fix or replace the file"
        ) from None
    if chronos.n_tokens != cfg.vocab_size:  # token ids past the vocabulary fail; a smaller n_tokens misreads bins
        raise CheckpointError(
            f"{where}: chronos_config.n_tokens ({chronos.n_tokens}) must equal vocab_size ({cfg.vocab_size}), the "
            "tokens the model reads and writes; fix the file"
        )
    net = T5(cfg)
    _load_weights(net, convert_hf_t5(weights, cfg), Path(path))
    model = ChronosT5(_in_tier(net, device, tier), chronos, name=Path(path).name)
    if compile:
        model.compile()
    return model


def check_compilable(path: str | Path, name: str | None = None) -> None:
    """Refuse ``compile=True`` for a checkpoint whose decoder has no compiled step (Toto), before its weights load."""
    if is_toto_config(read_config(Path(path) / "config.json")):
        raise ValueError(
            f"{param('compile')}=True compiles Chronos-T5 decoders only; {name or Path(path).name!r} is a Toto "
            "model: leave compile off for it (docs/precision.md)"
        )


def _in_tier(net: NetT, device, tier: torch.dtype) -> NetT:
    """float64 runs whole (the tests' yardstick); lower tiers keep float32 activations around their linear maps."""
    net = net.to(device=device, dtype=torch.float64 if tier == torch.float64 else torch.float32)
    if tier == torch.bfloat16:
        lower(net, tier)
    return net


def _load_toto(config: dict, weights: dict[str, torch.Tensor], folder: Path, device, tier: torch.dtype) -> Toto:
    try:
        cfg, options = toto_settings(config, folder)
    except ValueError as err:
        raise CheckpointError(str(err)) from None
    try:
        converted = convert_toto_weights(weights, cfg)
    except ValueError as err:
        raise CheckpointError(f"the weights in {str(folder)!r} do not fit its config.json: {err}") from None
    net = TotoNet(cfg)
    _load_weights(net, converted, folder)
    return Toto(_in_tier(net, device, tier), options, name=folder.name)


def _load_weights(net: torch.nn.Module, weights: dict[str, torch.Tensor], folder: Path) -> None:
    """Load, after checking every tensor's shape against the config's, summarised (a mismatch is often every tensor)."""
    expected = net.state_dict()
    wrong = [
        (k, tuple(v.shape), tuple(expected[k].shape))
        for k, v in weights.items()
        if k in expected and v.shape != expected[k].shape
    ]
    if wrong:
        shown = "; ".join(f"{k}: {got} in the weights, {want} from the config" for k, got, want in wrong[:3])
        raise CheckpointError(
            f"the weights in {str(folder)!r} do not match its config.json: {len(wrong)} of {len(expected)} tensors have "
            f"other shapes (e.g. {shown}); the config.json belongs to another model size"
        )
    net.load_state_dict(weights, strict=True)


_STORED_AS_IS = {"embed.weight", "enc_bias.weight", "dec_bias.weight"}
_ATTN = r"(?:SelfAttention|EncDecAttention)"


def convert_hf_t5(hf: dict[str, torch.Tensor], cfg: T5Config) -> dict[str, torch.Tensor]:
    """Hugging Face T5 weight names -> this package's fused layout."""
    out: dict[str, torch.Tensor] = {}
    try:
        out["embed.weight"] = hf["shared.weight"]
        out["enc_bias.weight"] = hf["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"]
        out["dec_bias.weight"] = hf["decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"]
        out["enc_norm.weight"] = hf["encoder.final_layer_norm.weight"]
        out["dec_norm.weight"] = hf["decoder.final_layer_norm.weight"]
        for i in range(cfg.num_layers):
            p = f"encoder.block.{i}.layer"
            out[f"enc_layers.{i}.norm_attn.weight"] = hf[f"{p}.0.layer_norm.weight"]
            out[f"enc_layers.{i}.qkv.weight"] = torch.cat([hf[f"{p}.0.SelfAttention.{w}.weight"] for w in "qkv"])
            out[f"enc_layers.{i}.o.weight"] = hf[f"{p}.0.SelfAttention.o.weight"]
            out[f"enc_layers.{i}.norm_ff.weight"] = hf[f"{p}.1.layer_norm.weight"]
            out.update(_ff(hf, f"{p}.1.DenseReluDense", f"enc_layers.{i}.ff", cfg))
        for i in range(cfg.num_decoder_layers):
            p = f"decoder.block.{i}.layer"
            d = f"dec_layers.{i}"
            out[f"{d}.norm_self.weight"] = hf[f"{p}.0.layer_norm.weight"]
            out[f"{d}.qkv.weight"] = torch.cat([hf[f"{p}.0.SelfAttention.{w}.weight"] for w in "qkv"])
            out[f"{d}.o.weight"] = hf[f"{p}.0.SelfAttention.o.weight"]
            out[f"{d}.norm_cross.weight"] = hf[f"{p}.1.layer_norm.weight"]
            out[f"{d}.cross_q.weight"] = hf[f"{p}.1.EncDecAttention.q.weight"]
            out[f"{d}.cross_kv.weight"] = torch.cat([hf[f"{p}.1.EncDecAttention.{w}.weight"] for w in "kv"])
            out[f"{d}.cross_o.weight"] = hf[f"{p}.1.EncDecAttention.o.weight"]
            out[f"{d}.norm_ff.weight"] = hf[f"{p}.2.layer_norm.weight"]
            out.update(_ff(hf, f"{p}.2.DenseReluDense", f"{d}.ff", cfg))
        if not cfg.tie_word_embeddings:
            out["lm_head.weight"] = hf["lm_head.weight"]
    except KeyError as err:
        raise CheckpointError(
            f"checkpoint weights lack {err.args[0]!r}; is this a T5 checkpoint saved by transformers?"
        ) from None
    out = {
        k: (v.t().contiguous() if v.ndim == 2 and k not in _STORED_AS_IS else v) for k, v in out.items()
    }  # Dense: [in, out]
    used = set(_consumed_names(hf, cfg))
    unknown = sorted(k for k in hf if k not in used)
    if unknown:
        raise CheckpointError(
            f"checkpoint has weights this T5 layout does not use: {unknown[:5]} (config.json says {cfg.num_layers} "
            f"encoder and {cfg.num_decoder_layers} decoder layers)"
        )
    return out


def _ff(hf: dict, src: str, dst: str, cfg: T5Config) -> dict[str, torch.Tensor]:
    wi = torch.cat([hf[f"{src}.wi_0.weight"], hf[f"{src}.wi_1.weight"]]) if cfg.gated else hf[f"{src}.wi.weight"]
    return {f"{dst}.wi.weight": wi, f"{dst}.wo.weight": hf[f"{src}.wo.weight"]}


def _consumed_names(hf: dict, cfg: T5Config) -> list[str]:
    """The weights of ``hf`` this layout reads: T5's names, in blocks the config has (a block past them would be
    dropped, and the forecasts with it)."""
    pattern = re.compile(
        r"^(shared\.weight|lm_head\.weight|(?P<stack>encoder|decoder)\.(embed_tokens\.weight|final_layer_norm\.weight|"
        rf"block\.(?P<block>\d+)\.layer\.\d\.({_ATTN}\.(q|k|v|o|relative_attention_bias)\.weight|layer_norm\.weight|"
        r"DenseReluDense\.(wi|wi_0|wi_1|wo)\.weight)))$"
    )
    blocks = {"encoder": cfg.num_layers, "decoder": cfg.num_decoder_layers}
    used = []
    for k in hf:
        match = pattern.match(k)
        if match and (match["block"] is None or int(match["block"]) < blocks[match["stack"]]):
            used.append(k)
    return used


def leapcast_options(path: str | Path) -> dict:
    """The ``leapcast`` block of a checkpoint's config.json (pipeline options, e.g. seasonal_adjustment); {} when absent."""
    config = read_config(Path(path) / "config.json")
    options = config.get("leapcast", {})
    if not isinstance(options, dict):
        raise CheckpointError(f"{Path(path) / 'config.json'}: `leapcast` must be an object, got {options!r}")
    return options


def describe(path: str | Path) -> str:
    """One line about a checkpoint folder: family, parameter count, and what its model card says it is for."""
    from safetensors import safe_open

    folder = Path(path)
    config = read_config(folder / "config.json")
    family = (
        "chronos-t5"
        if "chronos_config" in config
        else "toto"
        if is_toto_config(config)
        else config.get("model_type", "unknown family")
    )
    count = 0
    for file in sorted(folder.glob("*.safetensors")):
        try:
            with safe_open(str(file), framework="pt") as f:
                count += sum(math.prod(f.get_slice(name).get_shape()) for name in f.keys())
        except SafetensorError as err:
            raise CheckpointError(f"{file} is not a readable safetensors file ({err})") from None
    card = folder / "MODEL_CARD.md"
    purpose = ""
    if card.is_file():  # the first sentence of the card's first paragraph
        paragraphs = [
            p for p in card.read_text(encoding="utf-8").split("\n\n") if p.strip() and not p.lstrip().startswith("#")
        ]
        if paragraphs:
            purpose = " ".join(paragraphs[0].split()).split(": ")[0].split(". ")[0].rstrip(".")
    return f"{family}, {count / 1e6:.2f}M parameters" + (f": {purpose}" if purpose else "")
