"""Chronos-T5 behind the engine's model contract.

One step is one value token. The encoder runs once per series; decoder
position 0 reads the start token (PAD) and every later position the token
sampled before it, exactly as Hugging Face ``generate`` does for Chronos.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

import torch

from leapcast.models.base import DecoderState, Tokenized
from leapcast.models.chronos_tokenizer import ChronosTokenizer, ChronosTokenizerConfig
from leapcast.models.heads import Categorical
from leapcast.models.rows import (
    append_rows,
    overlapping,
    pad_left,
    pad_right,
    row_groups,
    series_of,
    take_rows,
    zeros_view,
)
from leapcast.models.rows import grouped as _grouped
from leapcast.models.t5 import T5, DecoderLayer, LayerCache, Slots, products_row_invariant, slots, span_groups

if TYPE_CHECKING:
    from leapcast.models.compiled import CompiledDecoder
    from leapcast.models.compiled_encoder import CompiledEncoder

# position 0 decoded once per series and shared by its rows in the compiled tier (``ChronosT5._compiled_pass``)
SHARE_FIRST = True
# Fields that must agree for draft tokens to mean the same values as the target's.
TOKENIZER_FIELDS = (
    "n_tokens",
    "n_special_tokens",
    "pad_token_id",
    "eos_token_id",
    "use_eos_token",
    "low_limit",
    "high_limit",
    "context_length",
)


class ChronosT5:
    """A Chronos-T5 checkpoint ready for the engine (see ``base.StepModel``)."""

    head_kind = "categorical"
    rescalable = True  # mean scaling: the tokens of 2**k * y are those of y
    multivariate = False
    min_context = None  # bins scaled by the mean absolute value: no floor

    def __init__(self, net: T5, chronos: ChronosTokenizerConfig, name: str = "chronos-t5") -> None:
        self.net = net.eval()
        self.chronos = chronos
        self.tokenizer = ChronosTokenizer(chronos)
        self.name = name
        self.vocab_size = net.cfg.vocab_size
        self.context_length = chronos.context_length
        self.prediction_length = chronos.prediction_length
        self.start_token = net.cfg.decoder_start_token_id
        self.patch_size = 1
        self.default_horizon = chronos.prediction_length
        self.num_decoder_layers = net.cfg.num_decoder_layers
        # Chronos generates with min_new_tokens = max_new_tokens, so EOS is never sampled.
        self.banned_tokens = (chronos.eos_token_id,)
        self._bias_table: torch.Tensor | None = None
        # [D, V] copy of the tied embedding for the head; decoding only, the weights stay frozen.
        self._head_t = net.embed.weight.detach().t().contiguous() if net.lm_head is None else None
        self._compiled: CompiledDecoder | None = None  # ``compile``
        self._encoder: CompiledEncoder | None = None

    def compile(self) -> None:
        """Decoder passes and the encoder through ``torch.compile`` from the next forecast on
        (``leapcast.models.compiled``, ``leapcast.models.compiled_encoder``)."""
        if self._compiled is None:
            from leapcast.models.compiled import CompiledDecoder  # torch's compiler loads only when asked for
            from leapcast.models.compiled_encoder import CompiledEncoder

            self._compiled = CompiledDecoder(self.net)
            self._encoder = CompiledEncoder(self.net)

    @property
    def compiled(self) -> bool:
        return self._compiled is not None and self._compiled.failed is None

    @property
    def device(self) -> torch.device:
        return self.net.embed.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.net.embed.weight.dtype

    # set on a draft by ``DraftModelProposer`` (for good: a model object is a draft or a target, not both): a draft's
    # passes need not match its own steps bit for bit
    proposes = False

    @property
    def exact_passes(self) -> bool:
        """Whether a pass over several positions gives the one-position steps' logits bit for bit, each query
        attending over exactly its own positions (greedy speculative decoding then repeats plain decoding): a target
        in the reference tiers (float32, float64) where the products round a row alike in any row count
        (``products_row_invariant``: MKL with ``MKL_CBWR=AUTO,STRICT``). Elsewhere the products part the pass from
        the steps in the last bits anyway, and the pass keeps the cheaper shared attention (docs/precision.md)."""
        return (
            not self.proposes
            and getattr(self.net, "tier", torch.float32) in (torch.float32, torch.float64)
            and self.device.type == "cpu"  # the probe checks the CPU's products
            and products_row_invariant()
        )

    @property
    def cache_dtype(self) -> torch.dtype:
        """The self-attention caches' type: the tier's when decoding steps are compiled in a lower tier (the step
        reads every cached position of every row: half the bytes; the eager tier rounds keys and values to it
        already), float32 otherwise (``LayerCache.read`` gives eager passes float32)."""
        if self._compiled is not None and self._compiled.tier != torch.float32:
            return self._compiled.tier
        return self.dtype

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.net.parameters())

    def default_sampling(self) -> dict:
        c = self.chronos
        return {"num_samples": c.num_samples, "temperature": c.temperature, "top_k": c.top_k, "top_p": c.top_p}

    def check_sampling(self, sampling) -> None:
        """Every setting applies to a categorical head."""

    def check_draft(self, draft: ChronosT5) -> None:
        theirs = getattr(draft, "chronos", None)
        if not isinstance(theirs, ChronosTokenizerConfig):
            raise ValueError(f"draft {draft.name!r} is not a Chronos-T5 model; a draft must share the target's steps")
        for field in TOKENIZER_FIELDS:
            a, b = getattr(theirs, field), getattr(self.chronos, field)
            if a != b:
                raise ValueError(
                    f"draft {draft.name!r} and target {self.name!r} tokenize differently: `{field}` is {a!r} "
                    f"in the draft and {b!r} in the target; a draft must share the target's vocabulary, bins and scaling"
                )
        if draft.start_token != self.start_token:
            raise ValueError("draft and target use different decoder start tokens")

    def describe(self) -> dict[str, str]:
        cfg, ch = self.net.cfg, self.chronos
        return {
            "family": "chronos-t5",
            "parameters": f"{self.num_parameters():,}",
            "d_model / d_ff / d_kv": f"{cfg.d_model} / {cfg.d_ff} / {cfg.d_kv}",
            "layers (encoder + decoder)": f"{cfg.num_layers} + {cfg.num_decoder_layers}",
            "heads": str(cfg.num_heads),
            "feed-forward": cfg.feed_forward_proj,
            "vocabulary": str(cfg.vocab_size),
            "context / prediction length": f"{ch.context_length} / {ch.prediction_length}",
            "default sampling": f"{ch.num_samples} samples, temperature {ch.temperature}, top-k {ch.top_k}, top-p {ch.top_p}",
        }

    def row_cache_bytes(self, positions: int, variates: int = 1) -> int:
        """Self-attention keys and values of every decoder layer (the cross-attention caches are per series)."""
        cfg = self.net.cfg
        item = torch.finfo(self.cache_dtype).bits // 8
        return variates * positions * 2 * cfg.num_decoder_layers * cfg.num_heads * cfg.d_kv * item

    def context_steps(self, batch: Tokenized | ChronosState) -> tuple[torch.Tensor, torch.Tensor]:
        if self.chronos.use_eos_token:  # the appended EOS is not a step
            return batch.tokens[:, :-1], batch.mask[:, :-1]
        return batch.tokens, batch.mask

    def layer_costs(self) -> tuple[float, float]:
        cfg = self.net.cfg
        layer = self.net.dec_layers[0]  # cross-attention K/V are computed once per series, not per step
        per_layer = sum(p.numel() for p in layer.parameters()) - 2 * cfg.d_model * cfg.num_heads * cfg.d_kv
        return float(per_layer), float(self.net.embed.weight.numel())

    def tokenize(self, contexts: torch.Tensor) -> Tokenized:
        return self.tokenizer.tokenize(contexts)

    def detokenize(self, steps: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        return self.tokenizer.detokenize(steps.cpu(), scale.cpu())

    # --- the engine's contract: prefix, step, values, extend, select, merge --------------------------

    @torch.inference_mode()
    def prefix(self, contexts: torch.Tensor, rows_per_series: int, capacity: int) -> ChronosState:
        """contexts [B, T] float32 (NaN: missing) -> the state of B series x ``rows_per_series`` rows
        (series-major): the encoder pass once per series, self-attention caches of ``capacity`` positions."""
        batch = self.tokenize(contexts)
        state = self.setup(batch, rows_per_series, capacity)
        row_series = torch.arange(batch.tokens.shape[0]).repeat_interleave(rows_per_series)
        return ChronosState(state.caches, batch.tokens, batch.mask, batch.scale, row_series, rows_per_series, capacity)

    def start_inputs(self, state: ChronosState) -> torch.Tensor:
        """The input at decoder position 0 of every row: the start token, [R] long."""
        return torch.full((state.num_rows,), self.start_token, dtype=torch.long, device=self.device)

    def step(self, state: ChronosState, inputs: torch.Tensor, positions: int | torch.Tensor) -> Categorical:
        """inputs [R, n] long (the step before each position) at ``positions`` (int, or [R] long) + 0..n-1
        -> the head of the next step at each, [R, n] over the vocabulary."""
        logits = self.decode(inputs, positions, state)  # a fresh tensor: the banned steps are masked in it, in place,
        with torch.inference_mode():  # not in a copy at every draw (0.6 ms a step at 1,280 rows x 2,048 steps)
            for token in self.banned_tokens:  # a plain index: no index tensor built at every step
                logits[..., token] = -float("inf")
        return Categorical(logits)

    def values(self, state: ChronosState, steps: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """steps [R', n] long of the state's rows ``rows`` [R'] -> values [R', n] float32 (bin centres x scale)."""
        scale = state.scale[state.row_series[rows.cpu()]]  # [R']
        return self.tokenizer.detokenize(steps.cpu()[:, None], scale.cpu())[:, 0]

    def extend(self, contexts: torch.Tensor, samples: torch.Tensor) -> torch.Tensor:
        """The rollout rule of chronos-forecasting: contexts [B, T] grow by the per-series (lower) median
        of the window's samples [B, S, n] -> [B, T + n]."""
        return torch.cat([contexts, samples.median(dim=1).values], dim=-1)

    @torch.inference_mode()
    def select(self, state: ChronosState, rows: torch.Tensor) -> ChronosState:
        """Keep ``rows`` [R'] (in that order; consumes ``state``); series left with no row are dropped, the others
        numbered in the order of their first row. Rows in ``fill_order`` move in place (``take_rows``)."""
        rows = rows.cpu()  # the state's row map and context tokens stay on the CPU
        series, row_series = series_of(state.row_series[rows])
        c: _ChronosCaches = state.caches
        rows_d, series_d = rows.to(self.device), series.to(self.device)
        layers = []
        for lc in c.layers:
            kb, vb = lc.room or (None, None)
            k, kb = take_rows(lc.k, rows_d, kb)
            v, vb = take_rows(lc.v, rows_d, vb)
            room = None if kb is None or vb is None else (kb, vb)
            # series move as their rows do; an early-exit draft shares these caches and selects the same rows,
            # which moves nothing twice (take_rows reads only rows it never writes)
            cross_k, _ = take_rows(lc.cross_k, series_d)
            cross_v, _ = take_rows(lc.cross_v, series_d)
            layers.append(LayerCache(k, v, cross_k, cross_v, room))
        grouped = _grouped(row_series)
        caches = _ChronosCaches(
            layers, c.cross_mask[series_d], c.bias_table, None if grouped else row_series.to(self.device)
        )
        return ChronosState(
            caches, state.tokens[series], state.mask[series], state.scale[series], row_series, grouped, state.capacity
        )

    @torch.inference_mode()
    def merge(self, a: ChronosState, b: ChronosState) -> ChronosState:
        """The rows of ``a`` then those of ``b`` in one state (series joining a running batch; consumes ``a``:
        ``b``'s rows are written into the room after ``a``'s, ``append_rows``)."""
        capacity = max(a.capacity, b.capacity)
        length = max(a.tokens.shape[1], b.tokens.shape[1])
        ca, cb = a.caches, b.caches
        layers = []
        for la, lb in zip(ca.layers, cb.layers):
            kb, vb = la.room or (None, None)
            room_t = max(capacity, la.k.shape[2], lb.k.shape[2])  # compiled steps' caches have a spare position
            k, kb = append_rows(pad_right(la.k, room_t, 2), pad_right(lb.k, room_t, 2), kb)
            v, vb = append_rows(pad_right(la.v, room_t, 2), pad_right(lb.v, room_t, 2), vb)
            layers.append(
                LayerCache(
                    k=k,
                    v=v,
                    cross_k=torch.cat([pad_left(la.cross_k, length, 2), pad_left(lb.cross_k, length, 2)]),
                    cross_v=torch.cat([pad_left(la.cross_v, length, 2), pad_left(lb.cross_v, length, 2)]),
                    room=(kb, vb),
                )
            )
        masked = torch.finfo(self.dtype).min
        cross_mask = torch.cat([pad_left(ca.cross_mask, length, 3, masked), pad_left(cb.cross_mask, length, 3, masked)])
        tokens = torch.cat(
            [
                pad_left(a.tokens, length, 1, self.chronos.pad_token_id),
                pad_left(b.tokens, length, 1, self.chronos.pad_token_id),
            ]
        )
        mask = torch.cat([pad_left(a.mask, length, 1, False), pad_left(b.mask, length, 1, False)])
        row_series = torch.cat([a.row_series, b.row_series + a.num_series])
        grouped = _grouped(row_series)
        if self._bias_table is None or self._bias_table.shape[-1] < capacity:  # set by prefix, before any merge
            self._bias_table = self.net.decoder_bias_table(capacity)
        caches = _ChronosCaches(layers, cross_mask, self._bias_table, None if grouped else row_series.to(self.device))
        return ChronosState(caches, tokens, mask, torch.cat([a.scale, b.scale]), row_series, grouped, capacity)

    # --- the engine's working parts (also used by training and the tests) ---------------------------

    @torch.inference_mode()
    def setup(self, batch: Tokenized, rows_per_series: int, max_steps: int) -> DecoderState:
        cfg = self.net.cfg
        tokens, mask = batch.tokens.to(self.device), batch.mask.to(self.device)
        memory = self.net.encode(tokens, mask, run=self._encoder)  # [B, L, D]
        b = tokens.shape[0]
        rows = b * rows_per_series
        caches = []
        for layer in cast("Iterable[DecoderLayer]", self.net.dec_layers):
            cross_k, cross_v = layer.cross_keys_values(memory)
            # a compiled step reads a span of positions that then never covers the whole cache (``SPAN``)
            shape = (rows, cfg.num_heads, max_steps + (self._compiled is not None), cfg.d_kv)
            caches.append(
                LayerCache(  # expanded zeros until the first write (``LayerCache.write``) or a merge copies them
                    k=zeros_view(shape, self.cache_dtype, self.device),
                    v=zeros_view(shape, self.cache_dtype, self.device),
                    cross_k=cross_k,
                    cross_v=cross_v,
                )
            )
        cross_mask = (~mask).to(self.dtype)[:, None, None, :] * torch.finfo(self.dtype).min  # [B, 1, 1, L]
        if self._bias_table is None or self._bias_table.shape[-1] < max_steps:
            self._bias_table = self.net.decoder_bias_table(max(max_steps, 128))
        state = _ChronosCaches(layers=caches, cross_mask=cross_mask, bias_table=self._bias_table)
        return DecoderState(caches=state, num_series=b, rows_per_series=rows_per_series, max_steps=max_steps)

    def select_series(self, state: DecoderState, series: torch.Tensor) -> DecoderState:
        """Keep only ``series`` [B'] (indices into the state's series) and their rows."""
        c: _ChronosCaches = state.caches
        s = state.rows_per_series
        rows = (series[:, None] * s + torch.arange(s)).reshape(-1).to(self.device)
        series = series.to(self.device)
        layers = [
            LayerCache(k=lc.k[rows], v=lc.v[rows], cross_k=lc.cross_k[series], cross_v=lc.cross_v[series])
            for lc in c.layers
        ]
        caches = _ChronosCaches(layers=layers, cross_mask=c.cross_mask[series], bias_table=c.bias_table)
        return DecoderState(caches=caches, num_series=len(series), rows_per_series=s, max_steps=state.max_steps)

    def early_exit_state(self, state: ChronosState, num_layers: int) -> ChronosState:
        """Fresh self-attention caches for the first ``num_layers`` decoder layers,
        sharing the target state's cross-attention keys and values (no encoder rerun)."""
        c: _ChronosCaches = state.caches
        layers = [
            LayerCache(
                k=lc.k if overlapping(lc.k) else torch.zeros_like(lc.k),  # expanded zeros stay
                v=lc.v if overlapping(lc.v) else torch.zeros_like(lc.v),
                cross_k=lc.cross_k,
                cross_v=lc.cross_v,
            )
            for lc in c.layers[:num_layers]
        ]
        caches = _ChronosCaches(
            layers=layers, cross_mask=c.cross_mask, bias_table=c.bias_table, row_series=c.row_series
        )
        return ChronosState(
            caches, state.tokens, state.mask, state.scale, state.row_series, state.grouped, state.capacity
        )

    def _compiled_pass(
        self, steps: torch.Tensor, start: int | torch.Tensor, positions: torch.Tensor, used: int, state
    ) -> torch.Tensor | None:
        """The compiled step's logits [R, n, V] (None: decode eagerly). At position 0 every row of a series reads
        the start token after nothing, so the rows of a series compute the same keys, values and logits: two rows a
        series run, on caches of their own, and their position-0 keys and values and logits go to every row (a
        tenth of position 0's work at 20 paths). Two, not one: the fused attention rounds a single query unlike
        several, and the compiled products give a row the same values at any row count
        (``tests/models/test_compiled.py``), so the logits are the ones every row would have computed."""
        c: _ChronosCaches = state.caches
        assert self._compiled is not None
        s = state.grouped
        if not SHARE_FIRST or not _first_position_shared(steps, start, s):
            return self._compiled(steps, positions, used, c.layers, c.bias_table, c.cross_mask)
        pairs = steps.view(-1, s)[:, :2].reshape(-1, 1)  # [2B, 1]: two rows a series
        _, heads, _, d_kv = c.layers[0].k.shape
        # 3 positions, as any cache of a compiled step has a spare one past the span it reads (2)
        shape, kind = (len(pairs), heads, 3, d_kv), c.layers[0].k.dtype
        firsts = [
            LayerCache(
                torch.zeros(shape, dtype=kind, device=self.device),
                torch.zeros(shape, dtype=kind, device=self.device),
                lc.cross_k,
                lc.cross_v,
                cross_low=lc.cross_low,
            )
            for lc in c.layers
        ]
        logits = self._compiled(pairs, positions[: len(pairs)], used, firsts, c.bias_table, c.cross_mask)
        if logits is None:
            return None
        for lc, first in zip(c.layers, firsts):
            lc.writable()
            lc.cross_low = first.cross_low  # the cross-attention's keys and values in the tier: made once a cache
            for cache, shared in ((lc.k, first.k), (lc.v, first.v)):  # [R, H, T, dk], [2B, H, 3, dk]
                cache[:, :, 0].unflatten(0, (-1, s))[:] = shared[::2, None, :, 0]
        return logits[::2].repeat_interleave(s, dim=0)

    @torch.inference_mode()
    def decode(self, steps: torch.Tensor, start: int | torch.Tensor, state) -> torch.Tensor:
        """steps [R, n] long at positions start.. -> logits [R, n, V] float32."""
        c: _ChronosCaches = state.caches
        n = steps.shape[1]
        # a few positions per row, series-major rows, every layer (not an early-exit state): the compiled pass
        if (
            self._compiled is not None
            and self._compiled.takes(n)
            and c.groups is None
            and len(c.layers) == self.num_decoder_layers
        ):
            if isinstance(start, int):
                positions, used = torch.full((len(steps),), start, dtype=torch.long, device=self.device), start + n
            else:
                positions = start.to(self.device, copy=True)  # [R] long, made here as the int path's: one guard set
                used = int(positions.max()) + n
            if used <= state.max_steps:  # else the eager path below refuses it by name
                logits = self._compiled_pass(steps.to(self.device), start, positions, used, state)
                if logits is not None:
                    return logits
        runs, own = None, None
        at: int | Slots
        # float32: a query reading past its own position (masked) rounds unlike the one-position step it stands for,
        # so a target's verify pass reads each query's own positions exactly (an early-exit state's are the draft's)
        exact = self.exact_passes and len(c.layers) == self.num_decoder_layers
        if isinstance(start, int):
            at, used = start, start + n
            if exact and n > 1:
                own = span_groups(torch.full((len(steps),), start, device=self.device), n)
        else:
            start = start.to(self.device)
            runs = _position_runs(start)
            if runs is not None and len(runs) == 1:  # every row at one position after all
                return self.decode(steps, runs[0][2], state)
            at, used = slots(start, n), int(start.max()) + n
            if exact and (n > 1 or runs is None):  # one position in a few runs reads each run's own already
                own, runs = span_groups(start, n), None
        if own is not None or runs is not None:
            self_bias = c.bias_table  # [H, T, T], sliced per span or per run
        elif isinstance(at, int):
            self_bias = c.bias_table[None, :, at:used, :used]  # [1, H, n, used]
        else:  # rows apart, one masked attention over all
            self_bias = c.bias_table[:, at[1], :used].transpose(0, 1)  # [R, H, n, used]
        if used > state.max_steps:
            raise ValueError(f"decoder position {used} exceeds the cache capacity max_steps={state.max_steps}")
        x = self.net.embed(steps.to(self.device))  # [R, n, D]
        for layer, cache in zip(self.net.dec_layers, c.layers):  # an early-exit state holds fewer layers
            x = layer(x, cache, at, self_bias, c.cross_mask, used, c.groups, runs, own)
        return self.net.head(x, self._head_t)


def _first_position_shared(steps: torch.Tensor, start: int | torch.Tensor, rows_per_series: int | None) -> bool:
    """Whether a pass is position 0 alone, every row of a series with the same step (the start token): its rows
    then compute the same values, once per series being enough."""
    if not isinstance(start, int) or start != 0 or steps.shape[1] != 1 or not rows_per_series or rows_per_series < 2:
        return False
    by_series = steps.view(-1, rows_per_series)
    return bool((by_series == by_series[:, :1]).all())


def _position_runs(start: torch.Tensor, most: int = 8) -> list[tuple[int, int, int]] | None:
    """start [R] -> (first row, end row, position) of each run of consecutive rows at one position, or None when
    there are more than ``most`` runs (rows apart after speculative passes: one masked attention is cheaper)."""
    positions, counts = torch.unique_consecutive(start, return_counts=True)
    if len(positions) > most:
        return None
    ends = counts.cumsum(0).tolist()
    return [(end - count, end, pos) for end, count, pos in zip(ends, counts.tolist(), positions.tolist())]


class _ChronosCaches:
    def __init__(
        self,
        layers: list[LayerCache],
        cross_mask: torch.Tensor,
        bias_table: torch.Tensor,
        row_series: torch.Tensor | None = None,
    ) -> None:
        self.layers = layers
        self.cross_mask = cross_mask  # [B, 1, 1, L]
        self.bias_table = bias_table  # [H, T, T]
        self.row_series = row_series  # [R] on the model's device when rows are ragged; None: series-major, equal counts
        self.groups = None if row_series is None else row_groups(row_series)  # the ragged rows by row count


@dataclass
class ChronosState:
    """The engine's state of a batch of rows.

    caches: KV buffers (self-attention per row, cross-attention per series); tokens, mask [B, L]
    and scale [B] of the tokenized contexts; row_series [R] (CPU) the series of each row;
    grouped: rows per series when rows are series-major with equal counts (the fast
    cross-attention), else None; capacity: decoder positions per row.
    """

    caches: _ChronosCaches
    tokens: torch.Tensor
    mask: torch.Tensor
    scale: torch.Tensor
    row_series: torch.Tensor
    grouped: int | None
    capacity: int

    @property
    def num_rows(self) -> int:
        return len(self.row_series)

    @property
    def num_series(self) -> int:
        return self.tokens.shape[0]

    @property
    def max_steps(self) -> int:
        return self.capacity

    @property
    def rows_per_series(self) -> int | None:
        return self.grouped
