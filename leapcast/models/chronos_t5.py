"""Chronos-T5 behind the engine's model contract.

One step is one value token. The encoder runs once per series; decoder
position 0 reads the start token (PAD) and every later position the token
sampled before it, exactly as Hugging Face ``generate`` does for Chronos.
"""

from __future__ import annotations

import torch

from leapcast.models.base import DecoderState, Tokenized
from leapcast.models.chronos_tokenizer import ChronosTokenizer, ChronosTokenizerConfig
from leapcast.models.t5 import T5, LayerCache


class ChronosT5:
    """A Chronos-T5 checkpoint ready for the engine (see ``base.StepModel``)."""

    def __init__(self, net: T5, chronos: ChronosTokenizerConfig, name: str = "chronos-t5") -> None:
        self.net = net.eval()
        self.chronos = chronos
        self.tokenizer = ChronosTokenizer(chronos)
        self.name = name
        self.vocab_size = net.cfg.vocab_size
        self.context_length = chronos.context_length
        self.prediction_length = chronos.prediction_length
        self.start_token = net.cfg.decoder_start_token_id
        # Chronos generates with min_new_tokens = max_new_tokens, so EOS is never sampled.
        self.banned_tokens = (chronos.eos_token_id,)
        self._bias_table: torch.Tensor | None = None
        # [D, V] copy of the tied embedding for the head; decoding only, the weights stay frozen.
        self._head_t = net.embed.weight.detach().t().contiguous() if net.lm_head is None else None

    @property
    def device(self) -> torch.device:
        return self.net.embed.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.net.embed.weight.dtype

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.net.parameters())

    def tokenize(self, contexts: torch.Tensor) -> Tokenized:
        return self.tokenizer.tokenize(contexts)

    def detokenize(self, steps: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        return self.tokenizer.detokenize(steps.cpu(), scale.cpu())

    @torch.inference_mode()
    def setup(self, batch: Tokenized, rows_per_series: int, max_steps: int) -> DecoderState:
        cfg = self.net.cfg
        tokens, mask = batch.tokens.to(self.device), batch.mask.to(self.device)
        memory = self.net.encode(tokens, mask)  # [B, L, D]
        b = tokens.shape[0]
        rows = b * rows_per_series
        caches = []
        for layer in self.net.dec_layers:
            cross_k, cross_v = layer.cross_keys_values(memory)
            shape = (rows, cfg.num_heads, max_steps, cfg.d_kv)
            caches.append(
                LayerCache(
                    k=torch.zeros(shape, dtype=self.dtype, device=self.device),
                    v=torch.zeros(shape, dtype=self.dtype, device=self.device),
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
        layers = [LayerCache(k=lc.k[rows], v=lc.v[rows], cross_k=lc.cross_k[series], cross_v=lc.cross_v[series]) for lc in c.layers]
        caches = _ChronosCaches(layers=layers, cross_mask=c.cross_mask[series], bias_table=c.bias_table)
        return DecoderState(caches=caches, num_series=len(series), rows_per_series=s, max_steps=state.max_steps)

    def early_exit_state(self, state: DecoderState, num_layers: int) -> DecoderState:
        """Fresh self-attention caches for the first ``num_layers`` decoder layers,
        sharing the target state's cross-attention keys and values (no encoder rerun)."""
        c: _ChronosCaches = state.caches
        layers = [
            LayerCache(k=torch.zeros_like(lc.k), v=torch.zeros_like(lc.v), cross_k=lc.cross_k, cross_v=lc.cross_v)
            for lc in c.layers[:num_layers]
        ]
        caches = _ChronosCaches(layers=layers, cross_mask=c.cross_mask, bias_table=c.bias_table)
        return DecoderState(caches=caches, num_series=state.num_series, rows_per_series=state.rows_per_series, max_steps=state.max_steps)

    @torch.inference_mode()
    def decode(self, steps: torch.Tensor, start: int | torch.Tensor, state: DecoderState) -> torch.Tensor:
        """steps [R, n] long at positions start.. -> logits [R, n, V] float32."""
        c: _ChronosCaches = state.caches
        n = steps.shape[1]
        if isinstance(start, int):
            used = start + n
            self_bias = c.bias_table[None, :, start:used, :used]  # [1, H, n, used]
        else:
            used = int(start.max()) + n
            query_pos = start[:, None] + torch.arange(n, device=start.device)  # [R, n]
            self_bias = c.bias_table[:, query_pos, :used].transpose(0, 1)  # [R, H, n, used]
        if used > state.max_steps:
            raise ValueError(f"decoder position {used} exceeds the cache capacity max_steps={state.max_steps}")
        x = self.net.embed(steps.to(self.device))  # [R, n, D]
        for layer, cache in zip(self.net.dec_layers, c.layers):  # an early-exit state holds fewer layers
            x = layer(x, cache, start, self_bias, c.cross_mask, used)
        return self.net.head(x, self._head_t)


class _ChronosCaches:
    def __init__(self, layers: list[LayerCache], cross_mask: torch.Tensor, bias_table: torch.Tensor) -> None:
        self.layers = layers
        self.cross_mask = cross_mask  # [B, 1, 1, L]
        self.bias_table = bias_table  # [H, T, T]
