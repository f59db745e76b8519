"""The Chronos tokenizer: mean-absolute scaling and uniform bins.

Matches chronos-forecasting's ``MeanScaleUniformBins`` bit for bit: the scale
is the mean absolute value of the observed context (1 where that is not
positive), values are bucketed into ``n_tokens - n_special_tokens - 1`` bins
centred on ``linspace(low_limit, high_limit)``, NaN becomes PAD and is masked,
and seq2seq models get an EOS token appended to the context.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from leapcast.models.base import Tokenized


@dataclass(frozen=True)
class ChronosTokenizerConfig:
    """The ``chronos_config`` block of a Chronos checkpoint's config.json."""

    context_length: int = 512
    prediction_length: int = 64
    n_tokens: int = 4096
    n_special_tokens: int = 2
    pad_token_id: int = 0
    eos_token_id: int = 1
    use_eos_token: bool = True
    low_limit: float = -15.0
    high_limit: float = 15.0
    num_samples: int = 20
    temperature: float = 1.0
    top_k: int = 50
    top_p: float = 1.0

    def __post_init__(self) -> None:
        for name in ("context_length", "prediction_length", "n_tokens", "num_samples"):
            if getattr(self, name) < 1:
                raise ValueError(f"chronos_config `{name}` must be >= 1, got {getattr(self, name)}")
        if not (self.pad_token_id < self.n_special_tokens and self.eos_token_id < self.n_special_tokens):
            raise ValueError(
                f"chronos_config special token ids must be < n_special_tokens={self.n_special_tokens}, "
                f"got pad_token_id={self.pad_token_id}, eos_token_id={self.eos_token_id}"
            )
        if not self.low_limit < self.high_limit:
            raise ValueError(f"chronos_config needs low_limit < high_limit, got {self.low_limit}, {self.high_limit}")

    @classmethod
    def from_dict(cls, raw: dict) -> ChronosTokenizerConfig:
        tokenizer_class = raw.get("tokenizer_class", "MeanScaleUniformBins")
        if tokenizer_class != "MeanScaleUniformBins":
            raise ValueError(
                f"chronos_config `tokenizer_class` {tokenizer_class!r} is not supported; "
                "leapcast reads MeanScaleUniformBins checkpoints (all published Chronos-T5 models)"
            )
        if raw.get("model_type", "seq2seq") != "seq2seq":
            raise ValueError(
                f"chronos_config `model_type` {raw.get('model_type')!r} is not supported; "
                "leapcast runs the seq2seq (T5) Chronos models"
            )
        kwargs = raw.get("tokenizer_kwargs", {})
        fields = {
            k: raw[k]
            for k in (
                "context_length",
                "prediction_length",
                "n_tokens",
                "n_special_tokens",
                "pad_token_id",
                "eos_token_id",
                "use_eos_token",
                "num_samples",
                "temperature",
                "top_k",
                "top_p",
            )
            if k in raw
        }
        return cls(
            low_limit=float(kwargs.get("low_limit", -15.0)), high_limit=float(kwargs.get("high_limit", 15.0)), **fields
        )

    def to_dict(self) -> dict:
        return {
            "tokenizer_class": "MeanScaleUniformBins",
            "tokenizer_kwargs": {"low_limit": self.low_limit, "high_limit": self.high_limit},
            "context_length": self.context_length,
            "prediction_length": self.prediction_length,
            "n_tokens": self.n_tokens,
            "n_special_tokens": self.n_special_tokens,
            "pad_token_id": self.pad_token_id,
            "eos_token_id": self.eos_token_id,
            "use_eos_token": self.use_eos_token,
            "model_type": "seq2seq",
            "num_samples": self.num_samples,
            "temperature": self.temperature,
            "top_k": self.top_k,
            "top_p": self.top_p,
        }


class ChronosTokenizer:
    def __init__(self, config: ChronosTokenizerConfig) -> None:
        self.config = config
        self.centers = torch.linspace(
            config.low_limit, config.high_limit, config.n_tokens - config.n_special_tokens - 1
        )
        mids = (self.centers[1:] + self.centers[:-1]) / 2
        self.boundaries = torch.cat([torch.tensor([-1e20]), mids, torch.tensor([1e20])])

    def tokenize(self, contexts: torch.Tensor) -> Tokenized:
        """contexts [B, T] float (NaN = missing) -> tokens [B, L], mask [B, L], scale [B].

        L = min(T, context_length) + 1 with the EOS token.
        """
        cfg = self.config
        contexts = contexts[..., -cfg.context_length :].to(torch.float32)
        mask = ~torch.isnan(contexts)
        scale = torch.nansum(contexts.abs() * mask, dim=-1) / torch.nansum(mask, dim=-1)
        scale[~(scale > 0)] = 1.0
        scaled = contexts / scale.unsqueeze(-1)
        tokens = torch.bucketize(scaled, self.boundaries, right=True) + cfg.n_special_tokens
        tokens.clamp_(0, cfg.n_tokens - 1)
        tokens[~mask] = cfg.pad_token_id
        if cfg.use_eos_token:
            b = tokens.shape[0]
            tokens = torch.cat([tokens, torch.full((b, 1), cfg.eos_token_id, dtype=tokens.dtype)], dim=1)
            mask = torch.cat([mask, torch.ones(b, 1, dtype=torch.bool)], dim=1)
        return Tokenized(tokens=tokens, mask=mask, scale=scale)

    def detokenize(self, steps: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """steps [B, S, n] long, scale [B] -> values [B, S, n] float32 (bin centres times scale)."""
        index = torch.clamp(steps - self.config.n_special_tokens - 1, min=0, max=len(self.centers) - 1)
        return self.centers[index] * scale.to(torch.float32)[:, None, None]
