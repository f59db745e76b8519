"""A T5 decoder's one-position step compiled by ``torch.compile`` (inductor), for Chronos-T5.

At a few rows a step (one series' sample paths) a decoder step is a few hundred small operations around a few
dozen products, and on a CPU each operation's fixed cost adds up: with chronos-t5-small at 20 rows about a third of
a step (docs/precision.md). Inductor fuses the norms, casts, residual adds, cache writes and the self-attention of
one query into a few generated loops and, with ``max_autotune``, runs the products through its own matrix-unit
kernels where they time faster (AMX here); in the bfloat16 tier their results are bfloat16 values, as oneDNN's
eager ones are, so the self-attention caches are kept in bfloat16 (``ChronosT5.cache_dtype``: half the bytes a
step reads, nothing lost). In a lower tier the
cross-attention runs in the tier's type (its keys and values copied once per cache: half the bytes the step
reads; scores and softmax accumulate in float32 inside the kernel), as the tier's products do.

Compiled: every pass over up to ``MAX_POSITIONS`` positions per row, rows series-major with equal counts, all
decoder layers (plain decoding's steps, a draft's proposals, speculative decoding's verify passes and a draft
catching up; rows at their own positions included). Eager: longer passes, ragged rows (the server's continuous
batching) and early-exit states. The encoder compiles apart (``leapcast.models.compiled_encoder``). Each row's position is a tensor and the step reads the cache positions in use
(``SPAN``), under the causal mask of the bias table, so one dynamic-size graph serves
every step (a Python int would be specialised on: a recompile per step); rows come in as series x paths, so that
with dynamic sizes no index divides one by the other.
Inductor packs the weights as constants (``freezing``): the net's weights must not change after the first call.

The first call compiles (30 s for chronos-t5-small and 60 s for chronos-t5-base here, the encoder about 10 s
more, in every new process: freezing keeps inductor's on-disk graph cache out) and new shapes (rows, context
length, cache span) compile once more with dynamic sizes; so it pays for long jobs, not one short forecast, and is
opted into (``Forecaster.from_pretrained(..., compile=True)``, ``leapcast forecast --compile``). Float32 without it
stays the reference.
"""

from __future__ import annotations

import inspect
import threading
import warnings
from collections.abc import Iterable
from typing import Any, cast

import torch
from torch import nn
from torch._dynamo import config as dynamo_config
from torch._dynamo.exc import FailOnRecompileLimitHit, TorchDynamoException
from torch._inductor import config as inductor_config
from torch.nn import functional as F

from leapcast.models.base import graphs_built
from leapcast.models.t5 import T5, DecoderLayer, LayerCache

# Inductor settings while compiling. Set through ``torch._inductor.config.patch`` around each call whose inputs'
# signature is new (compiling happens inside such a call; ``CompiledDecoder.seen``): torch.compile's own
# ``options`` did not turn freezing on in torch 2.13. Settings an older torch lacks are left out (``_settings``).
COMPILE_OPTIONS = {
    "freezing": True,  # weights as constants: packed once for the CPU's matrix units
    "max_autotune": True,  # the products through inductor's own AMX / AVX-512 kernels where they time faster
    "max_autotune_report_choices_stats": False,  # the timings of each choice: not printed
    "autotune_num_choices_displayed": 0,
    # the generated code's checks of every intermediate's sizes, strides and alignment at run time: ~2,000 calls
    # per chronos-t5-small forecast; the graph's shapes are fixed by its inputs', which dynamo guards
    "size_asserts": False,
    "alignment_asserts": False,
}
# Every net's step shares one code object, so its compiled graphs (nets, shapes) share dynamo's limit: raised,
# and reaching it raises (then decoding goes on eagerly, with a warning) instead of running eagerly unannounced.
# Where torch.compile takes a limit of its own (``_REGION_LIMIT``) the step gets it there, and these are not patched.
DYNAMO_OPTIONS = {"recompile_limit": 64, "fail_on_recompile_limit_hit": True}
_REGION_LIMIT = "recompile_limit" in inspect.signature(torch.compile).parameters
_COMPILING = threading.Lock()  # the config patches are process-wide: one compiled call at a time
# cache positions a compiled step reads: the positions in use, rounded up to a multiple of this, and at least
# MIN_SPAN (dynamo specialises a size of 1: a second graph). Each span is a new input signature (its first call
# patches the settings), not a new graph; at 1,280 rows the self-attention reads every row's keys and values from
# memory, so positions read past the ones in use cost time (on house-target, batch 64, h 18: spans of 16 ran at
# 0.965 the speed of 4, spans of 4 at 0.96-0.98 the speed of 1; docs/precision.md)
SPAN = 1
MIN_SPAN = 2
MAX_POSITIONS = 9  # passes over up to this many positions per row compile (k + 1 for k <= 8); longer ones: eager


class DecoderStep(nn.Module):
    """n decoder positions per row over every layer, the caches written in place, -> logits [R, n, V] float32."""

    def __init__(self, net: T5) -> None:
        super().__init__()
        self.net = net

    def forward(
        self,
        steps: torch.Tensor,
        positions: torch.Tensor,
        bias_table: torch.Tensor,
        keys: list[torch.Tensor],
        values: list[torch.Tensor],
        cross_keys: list[torch.Tensor],
        cross_values: list[torch.Tensor],
        cross_mask: torch.Tensor,
    ) -> torch.Tensor:
        """steps [B, S, n] long (B series x S rows, series-major: R = B x S rows), row r at positions
        ``positions[r]`` + 0..n-1 (``positions`` [R] long); bias_table [H, T', T'] (the causal mask folded in,
        T' >= T); keys, values [R, H, T, dk] per layer (each row's first T cache positions); cross_keys,
        cross_values [B, H, L, dk] in the tier's type; cross_mask [B, 1, 1, L]."""
        net = self.net
        b, span = cross_keys[0].shape[0], keys[0].shape[2]
        s, n = steps.shape[1:]
        r = b * s  # rows as series x paths: with dynamic sizes, R / B stays a division in every index otherwise
        x = net.embed(steps.reshape(r, n))  # [R, n, D]
        rows = torch.arange(r, device=x.device)[:, None]  # [R, 1]
        at = positions[:, None] + torch.arange(n, device=x.device)  # [R, n]
        self_bias = bias_table[:, at, :span].transpose(0, 1)  # [R, H, n, T]
        for i, layer in enumerate(cast("Iterable[DecoderLayer]", net.dec_layers)):
            heads, d_kv = layer.heads, layer.d_kv
            q, k, v = layer.qkv(layer.norm_self(x)).view(r, n, 3, heads, d_kv).unbind(2)  # each [R, n, H, dk]
            keys[i][rows, :, at] = k.to(keys[i].dtype)  # indexing puts the row and position dims first
            values[i][rows, :, at] = v.to(values[i].dtype)
            out = _attention(q, keys[i], values[i], self_bias)  # [R, n, H, dk]
            x = x + layer.o(out.reshape(r, n, -1))
            q = layer.cross_q(layer.norm_cross(x)).view(b, s * n, heads, d_kv).transpose(1, 2)  # [B, H, S*n, dk]
            ck, cv = cross_keys[i], cross_values[i]
            mask = cross_mask.clamp(min=torch.finfo(ck.dtype).min).to(ck.dtype)  # float32's min is -inf in bfloat16
            out = F.scaled_dot_product_attention(q.to(ck.dtype), ck, cv, attn_mask=mask, scale=1.0).to(x.dtype)
            x = x + layer.cross_o(out.transpose(1, 2).reshape(r, n, -1))
            x = x + layer.ff(layer.norm_ff(x))
        return net.head(x)  # float32 in every tier, as eager decoding (docs/precision.md)


class CompiledDecoder:
    """The compiled step of one net, with eager decoding as the fallback where compiling fails."""

    def __init__(self, net: T5) -> None:
        self.step, self.settings = compile_region(DecoderStep(net), COMPILE_OPTIONS)
        self.tier = getattr(net, "tier", torch.float32)
        self.failed: str | None = None
        self.calls = 0  # steps decoded through the compiled graph
        # input signatures (``_signature``) a call has run with: dynamo reads the settings only when it compiles,
        # which a signature seen before does not make it do, so those calls skip patching them; None: patch every
        # call (a call skipping them compiled all the same: a guard the signature does not cover)
        self.seen: set[tuple] | None = set() if _REGION_LIMIT else None

    def __call__(
        self,
        steps: torch.Tensor,
        positions: torch.Tensor,
        used: int,
        layers: list[LayerCache],
        bias_table: torch.Tensor,
        cross_mask: torch.Tensor,
    ) -> torch.Tensor | None:
        """Logits [R, n, V] of steps [R, n], row r at positions ``positions[r]`` + 0..n-1 (``positions`` [R] long,
        every one below ``used``), or None: decode eagerly (compiling failed).

        The step sees the caches' first ``used`` positions rounded up to a multiple of ``SPAN``, at least
        ``MIN_SPAN`` of them (the positions past a row's own are masked, so the logits do not depend on it; one
        dynamic-size graph for every span)."""
        if self.failed is not None:
            return None
        for cache in layers:  # the step writes into them in place
            cache.writable()
        capacity = layers[0].k.shape[2]
        # short of the whole cache where it can be (``ChronosT5.setup`` leaves a spare position): a span that is
        # the whole cache has other strides, and dynamo would compile another graph for it
        span = min(max(-(-used // SPAN) * SPAN, MIN_SPAN), capacity - 1 if used < capacity else capacity)
        lows = [self._cross_in_tier(c) for c in layers]
        args = (
            steps.view(layers[0].cross_k.shape[0], -1, steps.shape[1]),
            positions,
            bias_table,
            [c.k[:, :, :span] for c in layers],
            [c.v[:, :, :span] for c in layers],
            [low[1] for low in lows],
            [low[2] for low in lows],
            cross_mask,
        )
        key = _signature(args)
        try:
            with _COMPILING:
                if self.seen is not None and key in self.seen:  # run with before: no config patch (50-170 us)
                    graphs = graphs_built()
                    logits = self.step(*args)
                    if graphs_built() != graphs:  # a guard the signature misses: patch every call from here on
                        self.seen = None
                else:
                    with inductor_config.patch(self.settings[0]), dynamo_config.patch(self.settings[1]):
                        logits = self.step(*args)
                    if self.seen is not None:
                        self.seen.add(key)
        except (TorchDynamoException, FailOnRecompileLimitHit) as err:  # no C++ compiler, inductor failing, ...
            self.failed = compile_failed(err, "decoding")
            return None
        self.calls += 1
        return logits

    def takes(self, n: int) -> bool:
        """Whether a pass over ``n`` positions per row runs compiled: plain steps, draft proposals, verify passes."""
        return n <= MAX_POSITIONS

    def _cross_in_tier(self, cache: LayerCache) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(cross_k, keys, values) for the compiled step: in a lower tier a copy of the cross-attention's keys and
        values in its type, made once per cache (the eager path keeps float32 ones)."""
        if self.tier == torch.float32 or cache.cross_k.dtype == self.tier:
            return cache.cross_k, cache.cross_k, cache.cross_v
        if cache.cross_low is None or cache.cross_low[0] is not cache.cross_k:
            cache.cross_low = (cache.cross_k, cache.cross_k.to(self.tier), cache.cross_v.to(self.tier))
        return cache.cross_low


def _attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """T5's unscaled attention, n queries per row: q [R, n, H, dk], k, v [R, H, T, dk], bias [R, H, n, T] ->
    [R, n, H, dk].

    As products and sums that inductor fuses into two reductions and a softmax: the CPU's fused kernel handles
    each (row, head) apart, a couple of microseconds each (300 us a layer at 20 rows x 8 heads, 65 positions).
    One query (plain steps) keeps its own form: the same loops without the query dimension."""
    if q.shape[1] == 1:
        scores = (q[:, 0, :, None] * k).sum(-1) + bias[:, :, 0]  # [R, H, T]
        return (scores.softmax(dim=-1)[..., None] * v).sum(-2)[:, None]
    scores = (q.transpose(1, 2)[:, :, :, None] * k[:, :, None]).sum(-1) + bias  # [R, H, n, T]
    out = (scores.softmax(dim=-1)[..., None] * v[:, :, None]).sum(-2)  # [R, H, n, dk]
    return out.transpose(1, 2)


def compile_region(module: nn.Module, options: dict, **kwargs) -> tuple[Any, tuple[dict, dict]]:
    """``module`` through torch.compile as one graph, its module guards cut to one (``_guard_options``) and, where
    torch.compile takes one, a limit of its own on recompiles that raises when hit (else a compile outside the
    settings' patch could run it eagerly unannounced) -> (the compiled module, the inductor and dynamo settings every
    call that may compile runs under)."""
    # inductor's GEMM templates read a storage's size the deprecated way while compiling (torch 2.13)
    warnings.filterwarnings("ignore", message="TypedStorage is deprecated", module="torch._inductor")
    region = {"recompile_limit": DYNAMO_OPTIONS["recompile_limit"]} if _REGION_LIMIT else {}
    compile_: Any = torch.compile  # its typed overloads lack recompile_limit
    step = compile_(module, fullgraph=True, options=_guard_options(), **region, **kwargs)
    dynamo = {} if _REGION_LIMIT else _settings(dynamo_config, DYNAMO_OPTIONS)
    return step, (_settings(inductor_config, options), dynamo)


def compile_failed(err: Exception, what: str) -> str:
    """The first line of a failed compile's error, warned about once: ``what`` ("decoding", ...) runs eagerly from
    here on."""
    failed = f"{type(err).__name__}: {err}".splitlines()[0][:300]
    warnings.warn(f"compile=True: torch.compile failed ({failed}); {what} eagerly", RuntimeWarning, stacklevel=5)
    return failed


def _guard_options() -> dict:
    """Guards on the net's modules and weights cut to one: they are frozen (their constants are in the graph), and
    checking a few hundred of them took 0.3 ms of every chronos-t5-base step. The one kept is a parameter's
    identity: every net's step shares one code object, and without it a second net of the same shapes would run the
    first net's graph, weights and all. The tensors passed in stay guarded."""
    if not hasattr(torch.compiler, "skip_guard_on_all_nn_modules_unsafe"):  # torch < 2.8: no guard filters
        return {}
    return {"guard_filter_fn": _one_module_guard}


def _one_module_guard(entries: list) -> list[bool]:
    """Keep every guard but those on the net's modules, and of those the first on a parameter's identity; all of
    them where there is none (a torch that guards modules otherwise)."""
    on_module = [entry.orig_guard.source.is_unspecialized_nn_module() for entry in entries]
    identity = next((i for i, e in enumerate(entries) if on_module[i] and e.guard_type == "ID_MATCH"), None)
    if identity is None:
        return [True] * len(entries)
    return [not module or i == identity for i, module in enumerate(on_module)]


def _signature(args: tuple) -> tuple:
    """What dynamo's guards read, of the step's arguments (tensors, and lists of one tensor per layer) and of the
    process: every tensor's size, strides, offset, type, device, grad and inference flags (a list's first only:
    every layer's caches are built alike; a list's length), and the global state dynamo guards on (threads, grad
    and inference mode, autocast, the default type, deterministic algorithms)."""
    out: list = [
        torch.get_num_threads(),
        torch.is_grad_enabled(),
        torch.is_inference_mode_enabled(),
        torch.is_autocast_enabled("cpu"),
        torch.get_default_dtype(),
        torch.are_deterministic_algorithms_enabled(),
    ]
    for a in args:
        if isinstance(a, list):
            out.append(len(a))
            a = a[0]
        out.append((a.shape, a.stride(), a.storage_offset(), a.dtype, a.device, a.requires_grad, a.is_inference()))
    return tuple(out)


def _settings(config, wanted: dict) -> dict:
    """The settings of ``wanted`` this torch's ``config`` module has (older releases lack some)."""
    return {name: value for name, value in wanted.items() if hasattr(config, name)}
