"""A T5 encoder-decoder written for cached, batched decoding.

Same arithmetic as Hugging Face's ``T5ForConditionalGeneration`` (relative
position buckets shared from the first layer of each stack, RMS "T5" layer
norm, unscaled attention, ReLU or gated-GELU feed-forward, tied embeddings
rescaled by d_model**-0.5 before the head), laid out for decoding:

- the decoder's self-attention keys and values live in one static buffer per
  layer, [R, H, T, dk], written at explicit positions;
- cross-attention keys and values are computed once per *series*, [B, H, L, dk],
  and every sample row of that series reads them in place: the queries of a
  series' S rows are grouped into one [S*n] block instead of copying K/V S times.

Weights are fused at load time (q|k|v, cross k|v, gated wi_0|wi_1) and stored
[in, out], so a decode step runs few, large, fast matmuls.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from leapcast.models.packed import Packed
from leapcast.models.precision import LinearMap
from leapcast.models.rows import RowGroup, own_memory


@dataclass(frozen=True)
class T5Config:
    vocab_size: int
    d_model: int
    d_kv: int
    d_ff: int
    num_layers: int
    num_decoder_layers: int
    num_heads: int
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    layer_norm_epsilon: float = 1e-6
    feed_forward_proj: str = "relu"
    tie_word_embeddings: bool = True
    decoder_start_token_id: int = 0

    def __post_init__(self) -> None:
        for name in ("vocab_size", "d_model", "d_kv", "d_ff", "num_layers", "num_decoder_layers", "num_heads"):
            if getattr(self, name) < 1:
                raise ValueError(f"config.json `{name}` must be >= 1, got {getattr(self, name)}")
        if self.activation not in _ACTIVATIONS:
            raise ValueError(
                f"config.json `feed_forward_proj` {self.feed_forward_proj!r} is not supported; "
                f"use one of relu, gelu, silu, optionally prefixed by 'gated-'"
            )

    @property
    def gated(self) -> bool:
        return self.feed_forward_proj.startswith("gated-")

    @property
    def activation(self) -> str:
        name = self.feed_forward_proj.split("-")[-1]
        return "gelu_new" if self.feed_forward_proj == "gated-gelu" else name

    @classmethod
    def from_dict(cls, raw: dict) -> T5Config:
        num_layers = int(raw["num_layers"])
        return cls(
            vocab_size=int(raw["vocab_size"]),
            d_model=int(raw["d_model"]),
            d_kv=int(raw["d_kv"]),
            d_ff=int(raw["d_ff"]),
            num_layers=num_layers,
            num_decoder_layers=int(raw.get("num_decoder_layers") or num_layers),
            num_heads=int(raw["num_heads"]),
            relative_attention_num_buckets=int(raw.get("relative_attention_num_buckets", 32)),
            relative_attention_max_distance=int(raw.get("relative_attention_max_distance", 128)),
            layer_norm_epsilon=float(raw.get("layer_norm_epsilon", 1e-6)),
            feed_forward_proj=str(raw.get("feed_forward_proj", "relu")),
            tie_word_embeddings=_flag(raw.get("tie_word_embeddings", True), "tie_word_embeddings"),
            decoder_start_token_id=int(raw.get("decoder_start_token_id", 0) or 0),
        )


def _flag(value: object, name: str) -> bool:
    """A config.json boolean; "false" (a string) would read as True."""
    if not isinstance(value, bool):
        raise ValueError(f"`{name}` must be true or false, got {value!r}")
    return value


_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": F.relu,
    "gelu": F.gelu,
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "silu": F.silu,
}


def relative_position_bucket(
    relative_position: torch.Tensor, bidirectional: bool, num_buckets: int, max_distance: int
) -> torch.Tensor:
    """T5's bucketing of key_position - query_position: exact for small
    distances, logarithmic up to ``max_distance``, and one sign bit when
    bidirectional."""
    buckets = torch.zeros_like(relative_position)
    if bidirectional:
        num_buckets //= 2
        buckets += (relative_position > 0).long() * num_buckets
        distance = relative_position.abs()
    else:
        distance = -torch.clamp(relative_position, max=0)
    max_exact = num_buckets // 2
    is_small = distance < max_exact
    large = (
        max_exact
        + (
            torch.log(distance.float() / max_exact) / math.log(max_distance / max_exact) * (num_buckets - max_exact)
        ).long()
    )
    large = torch.clamp(large, max=num_buckets - 1)
    return buckets + torch.where(is_small, distance, large)


class Dense(LinearMap):
    """A bias-free linear layer whose weight is stored [in, out].

    float32 (the reference tier) multiplies ``x @ weight``: on a row-major [in, out] matrix that runs up to 1.4x
    faster than ``F.linear`` on [out, in] for decoding's few rows. MKL's product rounds a row alike in most
    products of different row counts, not all (one row; a 1024-wide input at a few rows against hundreds), unless
    ``MKL_CBWR=AUTO,STRICT`` is set (``products_row_invariant``; docs/precision.md: without it greedy speculative
    and plain decoding differ on 0.32% of house-target's values at 2 threads, with it on none). oneDNN's packed
    kernels are up to 2x faster still, and their rounding moves with the row count more often. In a lower tier
    (``leapcast.models.precision``) the weight is bfloat16 and the product runs through the packed kernel, with
    float32 in and out.
    """

    def __init__(self, d_in: int, d_out: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(d_in, d_out))
        self._packed = Packed()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == self.weight.dtype and self.weight.dtype != torch.bfloat16:
            return x @ self.weight
        if torch.compiler.is_compiling():  # inductor packs constant weights itself (``leapcast.models.compiled``)
            return (x.to(self.weight.dtype) @ self.weight).to(x.dtype)
        return self._packed(x, self.weight.t(), None)  # a lower tier: packed, whatever x's type

    def forward_in_tier(self, x: torch.Tensor) -> torch.Tensor:
        """The product in the weight's type, not cast back (for a ReLU next, which is exact in any type)."""
        if (x.dtype == self.weight.dtype and self.weight.dtype != torch.bfloat16) or torch.compiler.is_compiling():
            return x.to(self.weight.dtype) @ self.weight
        return self._packed(x.to(self.weight.dtype), self.weight.t(), None)


class RMSNorm(nn.Module):
    """T5's layer norm: scale only, no mean subtraction, variance in fp32."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.float32:  # one fused op, same arithmetic; decode runs ~20 of these a step
            return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)
        variance = x.to(torch.float32).pow(2).mean(-1, keepdim=True)
        x = x * torch.rsqrt(variance + self.eps)
        return self.weight * x.to(self.weight.dtype)


class FeedForward(nn.Module):
    def __init__(self, cfg: T5Config) -> None:
        super().__init__()
        self.gated = cfg.gated
        self.d_ff = cfg.d_ff
        self.wi = Dense(cfg.d_model, cfg.d_ff * (2 if cfg.gated else 1))  # [act | linear] when gated
        self.wo = Dense(cfg.d_ff, cfg.d_model)
        self.act = _ACTIVATIONS[cfg.activation]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.act is F.relu and not self.gated:  # in a lower tier the hidden layer stays there: two casts fewer
            return self.wo(F.relu(self.wi.forward_in_tier(x))).to(x.dtype)
        h = self.wi(x)
        if self.gated:
            h = self.act(h[..., : self.d_ff]) * h[..., self.d_ff :]
        else:
            h = self.act(h)
        return self.wo(h)


class EncoderLayer(nn.Module):
    def __init__(self, cfg: T5Config) -> None:
        super().__init__()
        inner = cfg.num_heads * cfg.d_kv
        self.heads, self.d_kv = cfg.num_heads, cfg.d_kv
        self.norm_attn = RMSNorm(cfg.d_model, cfg.layer_norm_epsilon)
        self.qkv = Dense(cfg.d_model, 3 * inner)
        self.o = Dense(inner, cfg.d_model)
        self.norm_ff = RMSNorm(cfg.d_model, cfg.layer_norm_epsilon)
        self.ff = FeedForward(cfg)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """x [B, L, D], bias [B, H, L, L] (position bias plus padding mask).

        In a lower tier the attention runs in the tier's type, as its products do: q, k and v are the product's
        bfloat16 values already (nothing more is rounded), the bias stays float32, and the fused kernel keeps its
        scores, softmax and sums in float32; only the probabilities are rounded before they weight v, and the
        output is rounded where ``o`` would round it anyway. Half the time of float32 at 513 positions."""
        b, length, _ = x.shape
        h = self.norm_attn(x)
        # CPU only: CUDA's memory-efficient kernel wants the bias in the queries' type, which would round it
        lower = self.qkv.weight.dtype == torch.bfloat16 and x.device.type == "cpu"
        qkv = (self.qkv.forward_in_tier(h) if lower else self.qkv(h)).view(b, length, 3, self.heads, self.d_kv)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each [B, H, L, dk]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=1.0)
        x = x + self.o(out.transpose(1, 2).reshape(b, length, -1))
        return x + self.ff(self.norm_ff(x))


class DecoderLayer(nn.Module):
    def __init__(self, cfg: T5Config) -> None:
        super().__init__()
        inner = cfg.num_heads * cfg.d_kv
        self.heads, self.d_kv = cfg.num_heads, cfg.d_kv
        self.norm_self = RMSNorm(cfg.d_model, cfg.layer_norm_epsilon)
        self.qkv = Dense(cfg.d_model, 3 * inner)
        self.o = Dense(inner, cfg.d_model)
        self.norm_cross = RMSNorm(cfg.d_model, cfg.layer_norm_epsilon)
        self.cross_q = Dense(cfg.d_model, inner)
        self.cross_kv = Dense(cfg.d_model, 2 * inner)
        self.cross_o = Dense(inner, cfg.d_model)
        self.norm_ff = RMSNorm(cfg.d_model, cfg.layer_norm_epsilon)
        self.ff = FeedForward(cfg)

    def cross_keys_values(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """memory [B, L, D] -> keys, values [B, H, L, dk], once per series."""
        b, length, _ = memory.shape
        kv = self.cross_kv(memory).view(b, length, 2, self.heads, self.d_kv)
        k, v = kv.permute(2, 0, 3, 1, 4)
        return k.contiguous(), v.contiguous()

    def forward(
        self,
        x: torch.Tensor,
        cache: LayerCache,
        start: int | Slots,
        self_bias: torch.Tensor,
        cross_mask: torch.Tensor,
        used: int,
        ragged: list[RowGroup] | None = None,
        runs: list[tuple[int, int, int]] | None = None,
        own_spans: SpanGroups | None = None,
    ) -> torch.Tensor:
        """x [R, n, D]; self_bias [1|R, H, n, used]; cross_mask [B, 1, 1, L].

        ``ragged``: when the rows of a series are not R / B consecutive rows (series joined, rows left, series of
        other sample counts), the rows grouped by their series' row count (``row_groups``); None: series-major,
        equal counts.
        ``runs``: with rows at several positions, (first row, end row, position) of each run of consecutive rows at
        one position: each run attends over its own positions only, as rows standing together do (self-attention's
        cost grows with the positions attended; continuous batching keeps a few runs, far apart); self_bias is then
        the bias table [H, T, T].
        ``own_spans``: the pass's queries grouped by span (``span_groups``): every query attends over exactly its own
        positions, as a one-position step does (``_own_spans``; self_bias is then the bias table [H, T, T]).
        """
        r, n, _ = x.shape
        fused = not 1 < n <= _FEW_POSITIONS
        qkv = self.qkv(self.norm_self(x)).view(r, n, 3, self.heads, self.d_kv)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each [R, H, n, dk]
        cache.write(k, v, start)
        if own_spans is not None:
            out = _own_spans(q, cache, own_spans, self_bias)
        elif runs is None:
            out = _sdpa(q, *cache.read(used, q.dtype), self_bias, fused)
        else:
            out = torch.cat(
                [
                    _sdpa(
                        q[a:b], *cache.read(p + n, q.dtype, slice(a, b)), self_bias[None, :, p : p + n, : p + n], fused
                    )
                    for a, b, p in runs
                ]
            )  # [R, H, n, dk]
        x = x + self.o(out.transpose(1, 2).reshape(r, n, -1))

        if ragged is None:  # rows share their series' keys and values without a copy
            b = cache.cross_k.shape[0]
            q = (
                self.cross_q(self.norm_cross(x)).view(b, (r // b) * n, self.heads, self.d_kv).transpose(1, 2)
            )  # [B, H, S*n, dk]
            out = _sdpa(q, cache.cross_k, cache.cross_v, cross_mask)
        else:  # ragged rows: series of one row count attend together, their rows' queries gathered (not the keys)
            q = self.cross_q(self.norm_cross(x)).view(r, n, self.heads, self.d_kv)  # [R, n, H, dk]
            out = q.new_empty(r, n, self.heads, self.d_kv)
            cross_fused = fused or own_spans is not None  # exact passes: the fused kernel, as a one-position step's
            for rows, series, s in ragged:
                qg = q[rows].view(len(series), s * n, self.heads, self.d_kv).transpose(1, 2)  # [Bg, H, S*n, dk]
                og = _sdpa(qg, cache.cross_k[series], cache.cross_v[series], cross_mask[series], cross_fused)
                out[rows] = og.transpose(1, 2).reshape(len(rows), n, self.heads, self.d_kv)
            out = out.transpose(1, 2)  # [R, H, n, dk]
        x = x + self.cross_o(out.transpose(1, 2).reshape(r, n, -1))
        return x + self.ff(self.norm_ff(x))


ENCODE_BYTES = 24 * 2**20  # an encoder chunk's largest intermediate: under glibc's largest mmap threshold
_FEW_POSITIONS = 8  # decoder passes over 2..8 positions per row attend without the fused kernel (``_sdpa``)


@functools.cache
def products_row_invariant() -> bool:
    """Whether this process's float32 products round a row alike whatever the row count (checked once, on a
    feed-forward-like [1024 -> 256] product at 1, 5 and 64 rows): MKL's do with ``MKL_CBWR=AUTO,STRICT`` set before
    its first call, not by default (one row, and a 1024-wide input at a few rows, round unlike a bigger product)."""
    g = torch.Generator().manual_seed(0)
    w, x = torch.randn(1024, 256, generator=g), torch.randn(320, 1024, generator=g)
    full = x @ w
    return all(torch.equal(x[:m] @ w, full[:m]) for m in (1, 5, 64))


SpanGroups = list[tuple[int, torch.Tensor, torch.Tensor]]  # (span, rows [G], query index [G]) of a pass's queries


def span_groups(first: torch.Tensor, n: int) -> SpanGroups:
    """first [R] long: row r's queries at positions first[r] + 0..n-1 -> the queries grouped by the positions they
    read (span = position + 1), made once a pass (``_own_spans`` in every layer reads them)."""
    spans = first[:, None] + torch.arange(1, n + 1, device=first.device)  # [R, n]
    out = []
    for span in spans.unique().tolist():
        rows, at = (spans == span).nonzero(as_tuple=True)  # a row has one query of each span at most
        out.append((span, rows, at))
    return out


def _own_spans(q: torch.Tensor, cache: LayerCache, groups: SpanGroups, table: torch.Tensor) -> torch.Tensor:
    """q [R, H, n, dk] -> [R, H, n, dk], each query attending over exactly the positions up to its own, in one
    fused call per span, as plain decoding's one-position step attends (float32's passes over several positions:
    the fused kernel's rounding moves when masked positions follow a query's own, so a longer masked span would
    part a verify pass from the steps it stands for)."""
    out = torch.empty_like(q)
    for span, rows, at in groups:
        keys, values = cache.k[rows, :, :span], cache.v[rows, :, :span]  # [G, H, span, dk]
        bias = table[None, :, span - 1 : span, :span]  # [1, H, 1, span]: a one-position step's
        out[rows, :, at] = _sdpa(q[rows, :, at][:, :, None], keys, values, bias)[:, :, 0]
    return out


def _sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor, fused: bool = True) -> torch.Tensor:
    """T5's unscaled attention: q [.., n, dk], k, v [.., T, dk], mask broadcast to [.., n, T] -> [.., n, dk].

    ``fused``: the fused kernel; False: two products and a softmax, which a decoder pass over a few positions per
    row takes (a verify pass over k + 1 positions, a draft catching up): there the CPU's fused kernel costs
    1.4-2.2x as much (docs/speculative.md), most of what a pass over 2 positions adds to a step. One position
    per row (plain decoding) keeps the fused kernel."""
    if fused:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=1.0)
    scores = torch.matmul(q, k.transpose(-1, -2)).add_(mask)  # [.., n, T]
    return torch.matmul(scores.softmax(dim=-1), v)


@dataclass
class LayerCache:
    k: torch.Tensor  # [R, H, T, dk] self-attention keys, written at positions
    v: torch.Tensor  # [R, H, T, dk]
    cross_k: torch.Tensor  # [B, H, L, dk] shared by the rows of a series
    cross_v: torch.Tensor  # [B, H, L, dk]
    room: tuple[torch.Tensor, torch.Tensor] | None = None  # the buffers k and v are the first rows of (models.rows)
    # cross_k and its keys and values in a lower tier, for the compiled step (``leapcast.models.compiled``)
    cross_low: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    def writable(self) -> None:
        """Give k and v memory of their own while they are still the expanded zeros of ``ChronosT5.setup``."""
        self.k, self.v = own_memory(self.k), own_memory(self.v)

    def write(self, k: torch.Tensor, v: torch.Tensor, start: int | Slots) -> None:
        """k, v [R, H, n, dk] into positions start..start+n-1 of each row (``Slots``: rows at their own positions)."""
        self.writable()
        if isinstance(start, int):
            n = k.shape[2]
            self.k[:, :, start : start + n] = k
            self.v[:, :, start : start + n] = v
        else:
            rows, pos = start  # indexing puts the row and position dims first: [R, n, H, dk]
            self.k[rows, :, pos] = k.transpose(1, 2).to(self.k.dtype)
            self.v[rows, :, pos] = v.transpose(1, 2).to(self.v.dtype)

    def read(self, used: int, dtype: torch.dtype, rows: slice = slice(None)) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values [R', H, used, dk] of ``rows`` in ``dtype``, the queries' (the compiled bfloat16 tier keeps
        its caches in bfloat16, ``ChronosT5.cache_dtype``: an eager pass over them, a verify pass, reads them as
        float32)."""
        return self.k[rows, :, :used].to(dtype), self.v[rows, :, :used].to(dtype)


Slots = tuple[torch.Tensor, torch.Tensor]  # rows [R, 1] and positions [R, n]: where rows at their own positions write


def slots(start: torch.Tensor, n: int) -> Slots:
    """start [R] long -> the ``Slots`` of a pass over n positions from each row's own start, made once a pass
    (every layer's cache write reads them)."""
    return torch.arange(len(start), device=start.device)[:, None], start[:, None] + torch.arange(n, device=start.device)


class T5(nn.Module):
    def __init__(self, cfg: T5Config) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.enc_bias = nn.Embedding(cfg.relative_attention_num_buckets, cfg.num_heads)
        self.enc_layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.num_layers))
        self.enc_norm = RMSNorm(cfg.d_model, cfg.layer_norm_epsilon)
        self.dec_bias = nn.Embedding(cfg.relative_attention_num_buckets, cfg.num_heads)
        self.dec_layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.num_decoder_layers))
        self.dec_norm = RMSNorm(cfg.d_model, cfg.layer_norm_epsilon)
        self.lm_head = None if cfg.tie_word_embeddings else Dense(cfg.d_model, cfg.vocab_size)
        if self.lm_head is not None:
            self.lm_head.in_tier = False  # logits in float32 (``leapcast.models.precision``)
        self._head_packed = Packed()  # the tied head in a lower tier

    def position_bias(self, num_queries: int, num_keys: int, bidirectional: bool) -> torch.Tensor:
        """[H, Lq, Lk] bias from key_position - query_position."""
        device = self.embed.weight.device
        rel = torch.arange(num_keys, device=device)[None, :] - torch.arange(num_queries, device=device)[:, None]
        buckets = relative_position_bucket(
            rel, bidirectional, self.cfg.relative_attention_num_buckets, self.cfg.relative_attention_max_distance
        )
        table = self.enc_bias if bidirectional else self.dec_bias
        return table(buckets).permute(2, 0, 1)

    def encode(
        self,
        tokens: torch.Tensor,
        mask: torch.Tensor,
        run: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """tokens [B, L] long, mask [B, L] bool -> encoder output [B, L, D]; ``run``: what encodes a chunk
        (``_encode``, or its compiled twin: ``leapcast.models.compiled_encoder``).

        Without gradients the series go through a few at a time (``encode_chunk``): a whole batch's intermediates
        (the [B, H, L, L] attention bias, the [B, L, d_ff] hidden layer) run to hundreds of MB at batch 32 and
        context 512, above the largest size glibc serves from reused heap memory (32 MB), so each was mapped
        afresh and page-faulted in every layer (docs/engine.md). A series' output does not depend on the
        others in its chunk (float32 products round the same at any row count)."""
        run = run or self._encode
        if torch.is_grad_enabled() or tokens.device.type != "cpu":  # a GPU's allocator caches; one pass is faster
            return run(tokens, mask)
        b, length = tokens.shape
        chunk = self.encode_chunk(length)
        if chunk >= b:
            return run(tokens, mask)
        return torch.cat([run(tokens[i : i + chunk], mask[i : i + chunk]) for i in range(0, b, chunk)])

    def encode_chunk(self, length: int) -> int:
        """Series per encoder chunk at context ``length`` tokens: the largest intermediate within ``ENCODE_BYTES``."""
        cfg = self.cfg
        widest = max(cfg.num_heads * length, cfg.d_ff * (2 if cfg.gated else 1), 3 * cfg.num_heads * cfg.d_kv)
        per_series = length * widest * self.embed.weight.element_size()
        return max(1, ENCODE_BYTES // per_series)

    def _encode(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        length = tokens.shape[1]
        dtype = self.embed.weight.dtype
        pad = (~mask).to(dtype)[:, None, None, :] * torch.finfo(dtype).min  # [B, 1, 1, L]
        # contiguous: position_bias is a permuted view, and the fused attention would copy it in every layer
        bias = (self.position_bias(length, length, bidirectional=True)[None].to(dtype) + pad).contiguous()  # [B,H,L,L]
        x = self.embed(tokens)
        for layer in self.enc_layers:
            x = layer(x, bias)
        return self.enc_norm(x)

    def decoder_bias_table(self, max_steps: int) -> torch.Tensor:
        """[H, T, T] relative bias with the causal mask folded in (min where key > query)."""
        dtype = self.embed.weight.dtype
        bias = self.position_bias(max_steps, max_steps, bidirectional=False).to(dtype)
        future = torch.ones(max_steps, max_steps, dtype=torch.bool, device=bias.device).triu(1)
        return bias.masked_fill(future, torch.finfo(dtype).min)

    def head(self, x: torch.Tensor, tied_t: torch.Tensor | None = None) -> torch.Tensor:
        """decoder hidden [.., D] -> logits [.., V] float32, in float32 whatever the tier (``precision``).

        ``tied_t``: an optional [D, V] contiguous copy of the tied embedding
        (faster for decoding than the [V, D] original).
        """
        x = self.dec_norm(x)
        if self.lm_head is None:
            x = x * self.cfg.d_model**-0.5
            lower = getattr(self, "tier", torch.float32) == torch.bfloat16
            if lower and x.dtype == torch.float32 and not torch.compiler.is_compiling():
                # a lower tier gives up row-count-independent rounding anyway: oneDNN's packed float32 product,
                # 2-3x faster than ``x @ tied_t`` at decoding's row counts here
                return self._head_packed(x, self.embed.weight, None)
            return (x @ tied_t if tied_t is not None else F.linear(x, self.embed.weight)).float()
        return self.lm_head(x).float()

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor, decoder_inputs: torch.Tensor) -> torch.Tensor:
        """Teacher-forced pass for training: tokens, mask [B, L]; decoder_inputs [B, n] -> logits [B, n, V]."""
        memory = self.encode(tokens, mask)
        b, n = decoder_inputs.shape
        dtype = memory.dtype
        shape = (b, self.cfg.num_heads, n, self.cfg.d_kv)
        caches = [
            LayerCache(memory.new_zeros(shape), memory.new_zeros(shape), *layer.cross_keys_values(memory))
            for layer in cast("Iterable[DecoderLayer]", self.dec_layers)
        ]
        cross_mask = (~mask).to(dtype)[:, None, None, :] * torch.finfo(dtype).min
        bias = self.decoder_bias_table(n)[None]
        x = self.embed(decoder_inputs)
        for layer, cache in zip(self.dec_layers, caches):
            x = layer(x, cache, 0, bias, cross_mask, n)
        return self.head(x)
