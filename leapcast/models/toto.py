"""Toto (Datadog, 2025) behind the engine's model contract.

One step is one patch of ``patch_size`` values for each of an item's V variates (steps are [V * P] float32,
variate-major). The head of the next step is a Student-T mixture per value, in value space.

How a forecast runs, and where it differs from the reference (``toto-ts``):

- ``prefix`` scales each series causally (the reference's ``CausalPatchStdMeanScaler``, incremental here)
  and runs every context patch but the last once per series; its keys and values are shared by all the
  series' sample rows (the reference recomputes the context for every row). Decoder position 0 of each
  row reads the context's last patch, and later positions the patch drawn before.
- Series of different lengths share a batch without changing each other's forecasts: each is left-padded
  to whole patches as the reference pads it alone, the whole patches before it are masked out of
  attention, and its rotary positions count from its own first patch (the reference attends to zero
  padding and counts positions from it).
- Rotary positions carry xPos scaling about a centre. The reference's cached decoding (``use_kv_cache=True``,
  its default) scales the context about the middle of the context and each later patch about its own half
  index; without the cache every pass uses one centre, so only relative positions count. ``xpos_centers``
  picks which to reproduce: ``"cached"`` (default) or ``"relative"``; they differ by about 1e-4 relative.
- Values the reference replaces before feeding back (inf, NaN, |x| >= float32 max / 2) become 0 here too.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from leapcast.checks import param, setting
from leapcast.models.heads import StudentTMixture
from leapcast.models.rows import (
    RowGroup,
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
from leapcast.models.sampling import SamplingConfig
from leapcast.models.toto_net import TotoConfig, TotoNet, global_bounds, patch_stats

XPOS_CENTERS = ("cached", "relative")
EXTREME = torch.finfo(torch.float32).max / 2  # the reference's ``is_extreme_value`` threshold


@dataclass(frozen=True)
class TotoOptions:
    """leapcast's settings for a Toto checkpoint (config.json ``leapcast`` block; none of them change the weights).

    context_length: the longest context read (values; longer ones keep their end). num_samples: default paths.
    horizon: the default forecast length (values). xpos_centers: see the module docstring.
    clip_scales: a house rule, not the reference's (None there): a drawn value past the context's mean
    ± clip_scales x the context's scale (``context_scale``) is clipped there, where it is fed back and where it is
    returned. Mean decoding feeding on its own output can otherwise run away exponentially at long horizons.
    The clip is a fixed function of the committed draw, so speculative decoding stays exact.
    spread: a house calibration, not the reference's (1 there): every mixture component's scale is multiplied by
    it, so sampled paths spread wider (> 1) or narrower; the mean, and so mean decoding, is unchanged. A
    target and its draft are verified against the heads they give, spread included, so speculation stays exact.
    min_context: the fewest values of history the checkpoint was trained to read (None: not stated); a series
    with fewer is still forecast, with a warning (``Forecaster``): its paths come out wide and erratic.
    """

    context_length: int = 4096
    num_samples: int = 128
    horizon: int = 64
    xpos_centers: str = "cached"
    clip_scales: float | None = None
    spread: float = 1.0
    min_context: int | None = None

    def __post_init__(self) -> None:
        for name in ("context_length", "num_samples", "horizon"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`leapcast.{name}` must be a positive integer, got {value!r}")
        m = self.min_context
        if m is not None and (isinstance(m, bool) or not isinstance(m, int) or m < 1):
            raise ValueError(f"`leapcast.min_context` must be a positive integer or null, got {m!r}")
        if self.xpos_centers not in XPOS_CENTERS:
            raise ValueError(f"`leapcast.xpos_centers` must be one of {XPOS_CENTERS}, got {self.xpos_centers!r}")
        c = self.clip_scales
        if c is not None and (isinstance(c, bool) or not isinstance(c, (int, float)) or not 0 < c < math.inf):
            raise ValueError(f"`leapcast.clip_scales` must be a positive number or null, got {c!r}")
        w = self.spread
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not 0 < w < math.inf:
            raise ValueError(
                f"`leapcast.spread` must be a positive finite number (1: the reference's scales), got {w!r}"
            )


@dataclass
class TotoState:
    """What a decode pass reads besides its inputs. B series, R rows (series-major), V variates, H heads.

    prefix_k / prefix_v: per time-wise layer [B, V, H, Lp, hd], the context's patches but the last (shared by a
    series' rows); prefix_valid [B, Lp] (False: whole patches of padding). keys / values: per time-wise layer
    [R, V, H, capacity, hd], written by decoder position. sums [R, V, capacity + 1, 3] float64: the scaler's
    running sums before each decoder position. bounds [B, V, 3] float64: the scale's clamp (low, high) and the
    context's scale. start [B, V, P]:
    the context's last patch (NaN: missing or padding). last [B] long: its patch index counted from the
    series' own first patch. row_series [R] (CPU); grouped: rows per series when every series has that many, in order.
    clip [B, V, 2] (low, high) float32: the range drawn values are clipped to (``TotoOptions.clip_scales``), None: no clip.
    """

    prefix_k: list[torch.Tensor]
    prefix_v: list[torch.Tensor]
    prefix_valid: torch.Tensor
    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    sums: torch.Tensor
    bounds: torch.Tensor
    start: torch.Tensor
    last: torch.Tensor
    row_series: torch.Tensor
    grouped: int | None
    capacity: int
    layers: int | None = None  # an early-exit state runs only the first this many layers (None: all)
    clip: torch.Tensor | None = None
    room: list[torch.Tensor] | None = None  # the buffers keys, values and sums are the first rows of (models.rows)

    @property
    def num_rows(self) -> int:
        return len(self.row_series)

    @functools.cached_property
    def row_groups(self) -> list[RowGroup]:
        """The rows by their series' row count (``models.rows.row_groups``), once per state: ragged rows attend to
        their series' context keys group by group."""
        return row_groups(self.row_series.to(self.start.device))

    @property
    def num_series(self) -> int:
        return len(self.last)


def _padding(missing: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
    """missing [R, V, n, P] (the context patch's NaN), last [R] -> which of them are padding in front of the series:
    only a series of one patch (``last`` 0) has any, the values before its first observed one in any variate."""
    p = missing.shape[-1]
    seen = (~missing).any(dim=1, keepdim=True)  # [R, 1, n, P]
    first = torch.where(seen.any(dim=-1, keepdim=True), seen.float().argmax(dim=-1, keepdim=True), p)  # [R, 1, n, 1]
    front = torch.arange(p, device=missing.device) < first  # [R, 1, n, P]
    return missing & front & (last == 0).view(-1, 1, 1, 1)


class Toto:
    """A Toto checkpoint ready for the engine (see ``base.StepModel``)."""

    head_kind = "continuous"
    rescalable = False  # the scaler's floor (minimum_scale 0.1) is absolute: values are read as given
    multivariate = True

    def __init__(self, net: TotoNet, options: TotoOptions = TotoOptions(), name: str = "toto") -> None:
        self.net = net.eval()
        self.cfg: TotoConfig = net.cfg
        self.options = options
        self.name = name
        self.patch_size = self.cfg.patch_size
        self.context_length = options.context_length
        self.prediction_length = -(
            -10_000 // self.patch_size
        )  # steps: one window covers any horizon, as in the reference
        self.default_horizon = options.horizon
        self._time = [i for i, layer in enumerate(net.layers) if not layer.spacewise]
        self._prefix_layers = (self._time[-1] + 1) if self._time else 0  # later layers never feed a cached key

    @property
    def min_context(self) -> int | None:
        return self.options.min_context

    @property
    def device(self) -> torch.device:
        return self.net.embed.weight.device

    @property
    def dtype(self) -> torch.dtype:
        """The activations' type (float32; float64 in checks); linear maps may run in a lower tier."""
        return self.net.xpos.dtype  # a buffer: lowering never touches it

    @property
    def _work(self) -> torch.dtype:
        """The type values, statistics and heads are computed in: float32 (float64 for a float64 net)."""
        return torch.promote_types(self.dtype, torch.float32)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.net.parameters())

    # --- what the forecaster and the CLI ask ---------------------------------------------------------------

    def row_cache_bytes(self, positions: int, variates: int = 1) -> int:
        """Bytes one row's decoder state takes with room for ``positions`` decoder positions: keys and values of
        every time-wise layer and the scaler's sums. Toto decodes a whole horizon in one window, so this grows with
        h (a forecaster keeps a batch's rows within the memory it finds)."""
        c = self.cfg
        item = torch.finfo(self.dtype).bits // 8
        per_position = 2 * len(self._time) * c.num_heads * c.head_dim * item + 3 * 8  # keys, values; float64 sums
        return variates * positions * per_position

    def default_sampling(self) -> dict:
        return {"num_samples": self.options.num_samples, "temperature": 1.0, "top_k": 0, "top_p": 1.0}

    def check_sampling(self, sampling: SamplingConfig) -> None:
        """Toto's heads are continuous: only the number of paths, the seed and greedy (``top_k=1``: the mean path) apply."""
        if sampling.temperature != 1.0:
            raise ValueError(
                f"{param('temperature')} {sampling.temperature!r} does not apply to {self.name!r}: Toto draws values "
                f"from its Student-T mixtures; leave it unset ({setting('top_k', 1)} gives the mean path)"
            )
        if sampling.top_p != 1.0 or sampling.top_k not in (0, 1):
            knob = "top_p" if sampling.top_p != 1.0 else "top_k"
            raise ValueError(
                f"{param(knob)} {getattr(sampling, knob)!r} does not apply to {self.name!r}: Toto's heads are "
                f"continuous; use {setting('top_k', 1)} for the mean path, or leave it unset to sample"
            )

    def context_scale(self, state: TotoState) -> torch.Tensor:
        """[R, V * P]: each row's context scale (its variate's standard deviation over the context, as the
        scaler's global clamp computes it), what a tolerance on mean patches is measured in."""
        scale = state.bounds[state.row_series.to(self.device), :, 2].float()  # [R, V]
        return scale.repeat_interleave(self.patch_size, dim=1)

    def check_draft(self, draft) -> None:
        """A draft must cut and scale patches as this model does, over the same context (the scaler's global clamp
        reads the whole context): the same patch size, scaler settings and context length."""
        theirs = getattr(draft, "cfg", None)
        if not isinstance(theirs, TotoConfig):
            raise ValueError(f"draft {draft.name!r} is not a Toto model; a draft must share the target's patches")
        for field in ("patch_size", "stabilize_with_global", "scale_factor_exponent"):
            a, b = getattr(theirs, field), getattr(self.cfg, field)
            if a != b:
                raise ValueError(
                    f"draft {draft.name!r} and target {self.name!r} differ in `{field}`: {a!r} in the draft, {b!r} in "
                    "the target; a draft must cut and scale patches as the target does"
                )
        if draft.context_length != self.context_length:
            raise ValueError(
                f"draft {draft.name!r} reads {draft.context_length} context values and target {self.name!r} "
                f"{self.context_length}; set the same `leapcast.context_length`, so that both scale from the same prefix"
            )

    # --- early exit: the first layers propose ---------------------------------------------------------------

    @property
    def num_decoder_layers(self) -> int:
        return self.cfg.num_layers

    def early_exit_state(self, state: TotoState, num_layers: int) -> TotoState:
        """A state running the first ``num_layers`` layers and the head: it shares the context's keys and values
        (the same for those layers), with its own row caches and scaler sums."""
        time = sum(1 for i in self._time if i < num_layers)
        return dataclasses.replace(
            state,
            keys=[k if overlapping(k) else torch.zeros_like(k) for k in state.keys[:time]],  # expanded zeros stay
            values=[v if overlapping(v) else torch.zeros_like(v) for v in state.values[:time]],
            sums=state.sums.clone(),
            layers=num_layers,
            room=None,
        )

    def layer_costs(self) -> tuple[float, float]:
        """(multiply-adds of one layer per value patch, of the folded head): an exit's cost ratio."""
        c = self.cfg
        layer = 4 * c.embed_dim * c.embed_dim + 3 * c.embed_dim * c.mlp_hidden_dim
        return float(layer), float(c.embed_dim * c.patch_size * 4 * c.k_components)

    def describe(self) -> dict[str, str]:
        c = self.cfg
        space = "none" if c.spacewise_every_n_layers == -1 else f"every {c.spacewise_every_n_layers} layers"
        return {
            "family": "toto",
            "parameters": f"{self.num_parameters():,}",
            "patch / embedding / MLP": f"{c.patch_size} / {c.embed_dim} / {c.mlp_hidden_dim}",
            "layers / heads": f"{c.num_layers} / {c.num_heads}",
            "space-wise attention": space
            + ("" if c.spacewise_every_n_layers == -1 else " (first)" if c.spacewise_first else " (last)"),
            "head": f"mixture of {c.k_components} Student-T per value",
            "scaler": "causal patch std-mean"
            + (f", clamped to 1e±{c.scale_factor_exponent:g} of the context's" if c.stabilize_with_global else ""),
            "context / default horizon": f"{self.context_length} / {self.default_horizon} values",
            "default sampling": f"{self.options.num_samples} paths",
            "xPos centres": self.options.xpos_centers,
            "clip of drawn values": "none (the reference's rule)"
            if self.options.clip_scales is None
            else f"the context's mean ± {self.options.clip_scales:g} scales",
            "spread of the mixture's scales": f"x{self.options.spread:g}",
        }

    def context_steps(self, state):
        raise ValueError(f"the seasonal proposer reads token steps; {self.name!r} (Toto) decodes patches of values")

    # --- the engine's contract ---------------------------------------------------------------------------

    @torch.inference_mode()
    def prefix(self, contexts: torch.Tensor, rows_per_series: int, capacity: int) -> TotoState:
        """contexts [B, T] or [B, V, T] float32, NaN where missing (leading NaN: left padding) -> the state of
        B series x ``rows_per_series`` rows (series-major) with room for ``capacity`` decoder positions."""
        cfg, p, dev = self.cfg, self.patch_size, self.device
        x = contexts.double().cpu()
        if x.dim() == 2:
            x = x[:, None]  # [B, 1, T]
        b, v, t = x.shape
        observed = ~torch.isnan(x)  # [B, V, T]
        seen = observed.any(dim=1)  # [B, T]
        first = torch.where(seen.any(dim=1), seen.float().argmax(dim=1), torch.full((b,), t))  # first observed column
        length = (t - first).clamp(max=self.context_length).clamp(min=1)  # [B] values read
        patches = -(-length // p)  # [B] L0: the series' own patches
        width = int(patches.max()) * p
        if t < width:
            x, observed = F.pad(x, (width - t, 0), value=math.nan), F.pad(observed, (width - t, 0), value=False)
        x, observed = x[..., -width:], observed[..., -width:]
        inside = torch.arange(width) >= (width - length)[:, None]  # [B, width]: within the series' read length
        weights = (observed & inside[:, None]).double()  # [B, V, width]
        x64 = torch.where(weights > 0, x.double(), 0.0)
        bounds = global_bounds(x64, weights, cfg)  # [B, V, 3]
        zeros = torch.zeros((b, v, 3), dtype=torch.float64)
        loc, scale, after = patch_stats(x64, weights, zeros, bounds, p)  # [B, V, Lmax], [B, V, Lmax], [B, V, Lmax, 3]
        work = self._work
        xw = x64.to(work).unflatten(-1, (-1, p))  # [B, V, Lmax, P]
        scaled = (xw - loc.to(work)[..., None]) / scale.to(work)[..., None]
        # a missing value inside the series reads as its patch's mean (0 once scaled), not as a value of 0, which the
        # model takes for a drop to zero; padding in front stays 0, as the reference feeds it
        holes = (inside[:, None] & ~observed).unflatten(-1, (-1, p))  # [B, V, Lmax, P]
        scaled = torch.where(holes, 0.0, scaled)
        lmax = width // p
        lp = lmax - 1
        pad = lmax - patches  # [B] whole patches of padding in front
        last = patches - 1
        valid = torch.arange(lp) >= pad[:, None]  # [B, Lp]
        prefix_k, prefix_v = self._run_prefix(
            scaled[:, :, :lp].to(dev, self.dtype), valid.to(dev), pad.to(dev), last.to(dev)
        )
        row_series = torch.arange(b).repeat_interleave(rows_per_series)
        sums = torch.zeros((b * rows_per_series, v, capacity + 1, 3), dtype=torch.float64, device=dev)
        sums[:, :, 0] = (after[:, :, lp - 1] if lp > 0 else zeros)[row_series].to(dev)
        start = torch.where(weights[..., -p:] > 0, x[..., -p:], math.nan).to(self._work)  # [B, V, P]
        keys, values = self._row_caches(b * rows_per_series, v, capacity)
        clip = None
        if self.options.clip_scales is not None:
            mean = (x64 * weights).sum(-1) / weights.sum(-1).clamp(min=1)  # [B, V]
            reach = self.options.clip_scales * bounds[..., 2]
            clip = torch.stack([mean - reach, mean + reach], dim=-1).to(dev, self._work)  # [B, V, 2]
        return TotoState(
            prefix_k,
            prefix_v,
            valid.to(dev),
            keys,
            values,
            sums,
            bounds.to(dev),
            start.to(dev),
            last.to(dev),
            row_series,
            rows_per_series,
            capacity,
            clip=clip,
        )

    def start_inputs(self, state: TotoState) -> torch.Tensor:
        """The context's last patch for every row: [R, V * P] (NaN where missing)."""
        return state.start[state.row_series.to(self.device)].flatten(1)

    @torch.inference_mode()
    def step(self, state: TotoState, inputs: torch.Tensor, positions: int | torch.Tensor) -> StudentTMixture:
        """inputs [R, n, V * P] (the patch before each position) at decoder ``positions`` (int, or [R] long) + 0..n-1
        -> the head of the next patch at each, [R, n] with [V * P] values."""
        r, n, _ = inputs.shape
        v, p, dev = state.start.shape[1], self.patch_size, self.device
        self._writable(state)
        pos = torch.as_tensor(positions, device=dev).expand(r) if isinstance(positions, int) else positions.to(dev)
        at = pos[:, None] + torch.arange(n, device=dev)  # [R, n] decoder positions
        if int(at.max()) >= state.capacity:
            raise ValueError(f"decoder position {int(at.max())} exceeds the cache capacity {state.capacity}")
        x = inputs.to(dev, self._work).view(r, n, v, p).transpose(1, 2)  # [R, V, n, P]
        context = (at == 0)[:, None, :, None]  # position 0 reads the context: NaN there is missing
        missing = torch.isnan(x) & context
        drawn_bad = ~torch.isfinite(x) | (x.abs() >= EXTREME)
        weights = (~missing).double()
        x = torch.where(missing | drawn_bad, 0.0, x)
        rows = state.row_series.to(dev)
        if state.clip is not None:  # drawn patches only: the context's own last patch stays as it is
            clip = state.clip[rows][:, :, None, None]  # [R, V, 1, 1, 2]
            x = torch.where(context, x, x.clamp(clip[..., 0], clip[..., 1]))
        before = state.sums.gather(2, pos.view(r, 1, 1, 1).expand(r, v, 1, 3)).squeeze(2)  # [R, V, 3]
        loc, scale, after = patch_stats(x.double().flatten(2), weights.flatten(2), before, state.bounds[rows], p)
        loc, scale = loc.to(self._work), scale.to(self._work)  # the reference rounds its statistics to the data's type
        state.sums.scatter_(2, (at + 1).view(r, 1, n, 1).expand(r, v, n, 3), after)
        if bool(missing.any()):  # the context's last patch: a missing value inside the series reads as the mean
            x = torch.where(missing & ~_padding(missing, state.last[rows]), loc[..., None], x)
        h = self.net.embed(((x - loc[..., None]) / scale[..., None]).to(self.dtype))  # [R, V, n, D]
        index = (state.last[rows][:, None] + at).to(self._work)  # [R, n] the patches' own indices
        rope = self.net.rope(
            index[:, None, None], self._centers(index, state.last[rows][:, None])[:, None, None]
        )  # [R, 1, 1, n, hd]
        for i, layer in enumerate(self.net.blocks(state.layers)):
            if layer.spacewise:
                h = layer.across_variates(h)
            else:
                h = self._cached_timewise(layer, self._time.index(i), h, state, pos, at, rope)
        logits, loc_v, scale_v, df = self.net.mixture(h, loc, scale)  # [R, V, n, P, C] each

        def flat(t: torch.Tensor) -> torch.Tensor:
            return t.transpose(1, 2).reshape(r, n, v * p, -1)  # [R, n, V * P, C]

        return self.spread_out(StudentTMixture(flat(logits), flat(loc_v), flat(scale_v), flat(df)))

    def spread_out(self, head: StudentTMixture) -> StudentTMixture:
        """The network's head as this model decodes from it: every component's scale times ``options.spread``."""
        if self.options.spread == 1:
            return head
        return dataclasses.replace(head, scale=head.scale * self.options.spread)

    def values(self, state: TotoState, steps: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """steps [R', n, V * P] -> values [R', V * n * P] float32 (variate-major), with the reference's replacement of extremes."""
        r, n, _ = steps.shape
        v = state.start.shape[1]
        x = steps.float().cpu()
        x = torch.where(~torch.isfinite(x) | (x.abs() >= EXTREME), 0.0, x)
        if state.clip is not None:
            clip = state.clip[state.row_series[rows.cpu()].to(state.clip.device)].float().cpu()  # [R', V, 2]
            clip = clip.repeat_interleave(self.patch_size, dim=1)[:, None]  # [R', 1, V * P, 2]
            x = x.clamp(clip[..., 0], clip[..., 1])  # [R', n, V * P]
        return x.view(r, n, v, self.patch_size).transpose(1, 2).reshape(r, -1)

    def extend(self, contexts: torch.Tensor, samples: torch.Tensor) -> torch.Tensor:
        """Roll out by the mean path (Toto's one window covers any horizon leapcast runs, so this is a fallback):
        contexts [B, T] or [B, V, T], samples [B, S, V * m] -> [B, (V,) T + m]."""
        mean = samples.mean(dim=1)
        if contexts.dim() == 2:
            return torch.cat([contexts, mean], dim=-1)
        return torch.cat([contexts, mean.view(contexts.shape[0], contexts.shape[1], -1)], dim=-1)

    @torch.inference_mode()
    def select(self, state: TotoState, rows: torch.Tensor) -> TotoState:
        """Keep ``rows`` [R'] (in that order; consumes ``state``); series left with no row are dropped, the others
        numbered in the order of their first row. Rows in ``fill_order`` move in place (``take_rows``)."""
        rows = rows.cpu()
        series, row_series = series_of(state.row_series[rows])
        rd, sd = rows.to(self.device), series.to(self.device)
        per_row = [*state.keys, *state.values, state.sums]
        buffers: list[torch.Tensor | None] = list(state.room) if state.room else [None] * len(per_row)
        taken = [take_rows(x, rd, buf) for x, buf in zip(per_row, buffers)]
        n = len(state.keys)
        room = [buf for _, buf in taken if buf is not None]
        # the context's keys move as their series do: only series that change place (an early-exit draft shares
        # these tensors and selects the same rows, which moves nothing twice: take_rows reads only rows it never writes)
        return TotoState(
            [take_rows(k, sd)[0] for k in state.prefix_k],
            [take_rows(v, sd)[0] for v in state.prefix_v],
            state.prefix_valid[sd],
            [x for x, _ in taken[:n]],
            [x for x, _ in taken[n : 2 * n]],
            taken[-1][0],
            state.bounds[sd],
            state.start[sd],
            state.last[sd],
            row_series,
            _grouped(row_series),
            state.capacity,
            state.layers,
            None if state.clip is None else state.clip[sd],
            room if len(room) == len(taken) else None,
        )

    @torch.inference_mode()
    def merge(self, a: TotoState, b: TotoState) -> TotoState:
        """The rows of ``a`` then those of ``b`` in one state (series joining a running batch; consumes ``a``:
        ``b``'s rows are written into the room after ``a``'s, ``append_rows``)."""
        if a.start.shape[1] != b.start.shape[1]:
            raise ValueError(
                f"items with {a.start.shape[1]} and {b.start.shape[1]} variates cannot decode in one batch"
            )
        lp = max(a.prefix_valid.shape[1], b.prefix_valid.shape[1])
        cap = max(a.capacity, b.capacity)

        row_series = torch.cat([a.row_series, b.row_series + a.num_series])
        n = len(a.keys)
        pairs = [
            (pad_right(x, cap, 3), pad_right(y, cap, 3)) for x, y in zip([*a.keys, *a.values], [*b.keys, *b.values])
        ]
        pairs.append((pad_right(a.sums, cap + 1, 2), pad_right(b.sums, cap + 1, 2)))
        buffers: list[torch.Tensor | None] = list(a.room) if a.room else [None] * len(pairs)
        joined = [append_rows(x, y, buf) for (x, y), buf in zip(pairs, buffers)]
        return TotoState(
            [torch.cat([pad_left(x, lp, 3), pad_left(y, lp, 3)]) for x, y in zip(a.prefix_k, b.prefix_k)],
            [torch.cat([pad_left(x, lp, 3), pad_left(y, lp, 3)]) for x, y in zip(a.prefix_v, b.prefix_v)],
            torch.cat([pad_left(a.prefix_valid, lp, 1, False), pad_left(b.prefix_valid, lp, 1, False)]),
            [x for x, _ in joined[:n]],
            [x for x, _ in joined[n : 2 * n]],
            joined[-1][0],
            torch.cat([a.bounds, b.bounds]),
            torch.cat([a.start, b.start]),
            torch.cat([a.last, b.last]),
            row_series,
            _grouped(row_series),
            cap,
            layers=a.layers,
            clip=None if a.clip is None or b.clip is None else torch.cat([a.clip, b.clip]),
            room=[buf for _, buf in joined],
        )

    # --- the forward pass, in pieces ----------------------------------------------------------------------

    def _centers(self, index: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
        """xPos centres of patches at ``index`` [..., n] for series whose context ends at patch ``last`` [..., 1]."""
        if self.options.xpos_centers == "relative":
            return torch.zeros_like(index)
        context = torch.div(last.to(index.dtype), 2, rounding_mode="floor")
        return torch.where(index <= last, context, torch.div(index, 2, rounding_mode="floor"))

    def _row_caches(self, rows: int, v: int, capacity: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Expanded zeros (``models.rows.zeros_view``): nothing is decoded at a join; ``_writable`` gives them memory."""
        c = self.cfg
        shape = (rows, v, c.num_heads, capacity, c.head_dim)
        make = [zeros_view(shape, self.dtype, self.device) for _ in range(2 * len(self._time))]
        return make[0::2], make[1::2]

    @staticmethod
    def _writable(state: TotoState) -> None:
        """Row caches still the expanded zeros of ``_row_caches`` get memory of their own, in place, before a pass
        writes into them."""
        if state.keys and overlapping(state.keys[0]):
            state.keys = [k.contiguous() for k in state.keys]
            state.values = [v.contiguous() for v in state.values]

    def _run_prefix(self, scaled: torch.Tensor, valid: torch.Tensor, pad: torch.Tensor, last: torch.Tensor):
        """scaled [B, V, Lp, P] context patches but the last; valid [B, Lp]; pad, last [B] -> per time-wise
        layer the keys and values [B, V, H, Lp, hd]."""
        b, v, lp, _ = scaled.shape
        c = self.cfg
        shape = (b, v, c.num_heads, lp, c.head_dim)
        if lp == 0:
            empty = [torch.zeros(shape, dtype=self.dtype, device=self.device) for _ in self._time]
            return empty, [e.clone() for e in empty]
        h = self.net.embed(scaled)  # [B, V, Lp, D]
        j = torch.arange(lp, device=self.device)
        index = (j - pad[:, None]).clamp(min=0).to(self._work)  # [B, Lp] own patch indices (padding: 0, masked anyway)
        rope = self.net.rope(
            index[:, None, None], self._centers(index, last[:, None])[:, None, None]
        )  # [B, 1, 1, Lp, hd]
        allowed = (j[None, :, None] >= j[None, None, :]) & (
            valid[:, None, :] | torch.eye(lp, dtype=torch.bool, device=self.device)
        )
        mask = allowed[:, None, None]  # [B, 1, 1, Lp, Lp]: causal, no padding (a padding query sees itself)
        keys, values = [], []
        for i, layer in enumerate(self.net.blocks(self._prefix_layers)):
            if layer.spacewise:
                h = layer.across_variates(h)
                continue
            q, k, val = layer.attention_inputs(h)  # [B, V, H, Lp, hd]
            q, k = self.net.rotate(q, rope, keys=False), self.net.rotate(k, rope, keys=True)
            keys.append(k.contiguous())
            values.append(val.contiguous())
            if i == self._time[-1]:
                break  # nothing after the last time-wise layer feeds a cached key
            att = F.scaled_dot_product_attention(q, k, val, attn_mask=mask)  # [B, V, H, Lp, hd]
            h = layer.feed_forward(h + layer.out(att.transpose(-3, -2).flatten(-2)))
        return keys, values

    def _cached_timewise(
        self,
        layer,
        cache: int,
        h: torch.Tensor,
        state: TotoState,
        pos: torch.Tensor,
        at: torch.Tensor,
        rope: tuple[torch.Tensor, ...],
    ) -> torch.Tensor:
        """h [R, V, n, D] at decoder positions ``at`` [R, n]: causal attention over the series' shared context
        keys and the row's own keys up to each position (one softmax over both), writing the new keys first."""
        r, v, n, _ = h.shape
        q, k, val = layer.attention_inputs(h)  # [R, V, H, n, hd]
        q, k = self.net.rotate(q, rope, keys=False), self.net.rotate(k, rope, keys=True)
        ks, vs = state.keys[cache], state.values[cache]  # [R, V, H, cap, hd]
        used = int(at.max()) + 1
        if bool((pos == pos[0]).all()):
            p0 = int(pos[0])
            ks[:, :, :, p0 : p0 + n], vs[:, :, :, p0 : p0 + n] = k, val
        else:
            rows = torch.arange(r, device=h.device)[:, None]
            ks.transpose(2, 3)[rows, :, at] = k.permute(0, 3, 1, 2, 4)  # [R, n, V, H, hd] into [R, cap, V, H, hd]
            vs.transpose(2, 3)[rows, :, at] = val.permute(0, 3, 1, 2, 4)
        scale = self.cfg.head_dim**-0.5
        own = (q @ ks[..., :used, :].transpose(-1, -2)).to(self._work) * scale  # [R, V, H, n, used]
        later = torch.arange(used, device=h.device)[None, None, :] > at[:, :, None]  # [R, n, used]
        own = own.masked_fill(later[:, None, None], -math.inf)
        shared = self._shared_scores(q, state, state.prefix_k[cache], scale)  # [R, V, H, n, Lp] or None
        if shared is None:
            out = own.softmax(dim=-1).to(q.dtype) @ vs[..., :used, :]
        else:
            att = torch.cat([shared, own], dim=-1).softmax(dim=-1).to(q.dtype)
            lp = shared.shape[-1]
            out = self._shared_values(att[..., :lp], state, state.prefix_v[cache]) + att[..., lp:] @ vs[..., :used, :]
        return layer.feed_forward(h + layer.out(out.transpose(-3, -2).flatten(-2)))  # [R, V, n, D]

    def _shared_scores(self, q: torch.Tensor, state: TotoState, pk: torch.Tensor, scale: float) -> torch.Tensor | None:
        """q [R, V, H, n, hd] against the series' context keys pk [B, V, H, Lp, hd] -> [R, V, H, n, Lp] (padding: -inf)."""
        lp = pk.shape[3]
        if lp == 0:
            return None
        r, v, hh, n, hd = q.shape
        s = state.grouped
        if s is not None:  # rows of a series are consecutive: one product per series, no copy of its keys
            scores = _per_series(q, pk.transpose(-1, -2), s)
            valid = state.prefix_valid.repeat_interleave(s, dim=0)
        else:  # ragged rows: series of one row count together, their rows' queries gathered (not the keys)
            scores = q.new_empty(r, v, hh, n, lp)
            for rows, series, sg in state.row_groups:
                scores[rows] = _per_series(q[rows], pk[series].transpose(-1, -2), sg)
            valid = state.prefix_valid[state.row_series.to(q.device)]
        return (scores.to(self._work) * scale).masked_fill(~valid[:, None, None, None, :], -math.inf)

    def _shared_values(self, att: torch.Tensor, state: TotoState, pv: torch.Tensor) -> torch.Tensor:
        """att [R, V, H, n, Lp] over the context values pv [B, V, H, Lp, hd] -> [R, V, H, n, hd]."""
        r, v, hh, n, lp = att.shape
        s = state.grouped
        if s is not None:
            return _per_series(att, pv, s)
        out = att.new_empty(r, v, hh, n, pv.shape[-1])
        for rows, series, sg in state.row_groups:
            out[rows] = _per_series(att[rows], pv[series], sg)
        return out


def _per_series(x: torch.Tensor, other: torch.Tensor, s: int) -> torch.Tensor:
    """x [B * s, V, H, n, a] (s rows per series, series-major) times the series' own other [B, V, H, a, b] ->
    [B * s, V, H, n, b]: one product per series over its s * n rows."""
    _, v, hh, n, a = x.shape
    xg = x.view(-1, s, v, hh, n, a).permute(0, 2, 3, 1, 4, 5).reshape(-1, v, hh, s * n, a)
    out = xg @ other  # [B, V, H, s * n, b]
    return out.view(-1, v, hh, s, n, out.shape[-1]).permute(0, 3, 1, 2, 4, 5).reshape(-1, v, hh, n, out.shape[-1])
