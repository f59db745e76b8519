"""The public API: ``Forecaster.from_pretrained(...).predict / predict_quantiles / forecast``."""

from __future__ import annotations

import copy
import os
import sys
import types
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from leapcast import frame
from leapcast.checks import check_device, check_flag, check_int, check_levels, cli_spelled, is_real, param
from leapcast.deseason import RECENT_SEASONS, SeasonalIndex, season_length_of, seasonal_index
from leapcast.engine.adaptive import KChooser
from leapcast.engine.proposers import make_proposer
from leapcast.engine.rollout import rollout
from leapcast.engine.sampling import SamplingConfig, stream_key
from leapcast.engine.speculative import SpecConfig, SpecStats
from leapcast.engine.streams import RowStreams, random_seed
from leapcast.inputs import as_items, as_series_list, check_horizon, left_pad, power_of_two_scale, raw_range_scale
from leapcast.models.loading import check_compilable, leapcast_options, load_model
from leapcast.models.precision import resolve_tier, tier_name
from leapcast.registry import model_name, resolve

DEFAULT_QUANTILES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


@dataclass(frozen=True)
class Prepared:
    """Univariate series ready for a decode loop (``Forecaster.prepare``), and what ``Forecaster.finish`` undoes.

    contexts: N tensors [1, T_i] float32: each series divided by ``factor``, seasonally adjusted where it is
    keys: N random-stream keys: series i draws from the stream (seed, keys[i])
    sampling: the checked sampling settings (seed None: the caller picks one, as ``predict`` does)
    h, steps: the horizon in values, and in model steps (whole patches)
    factor: [N] float64, the scale each series was divided by; indices: N seasonal indices (None: not adjusted)
    """

    contexts: list[torch.Tensor]
    keys: list[int]
    sampling: SamplingConfig
    h: int
    steps: int
    factor: np.ndarray
    indices: list[SeasonalIndex | None]


@dataclass(frozen=True)
class FramePlan:
    """A long frame ready to forecast (``Forecaster.plan_frame``) and the columns of its answer (``frame_of``).

    panel: the checked series; h: the horizon; times: their future timestamps [N * h];
    season: the season length for the seasonal adjustment; keys: N random-stream keys (stable hashes of the ids);
    name: the point column; point: 'median' or 'mean'; intervals: (column, quantile level) of the other columns.
    """

    panel: frame.Panel
    h: int
    times: object
    season: int
    keys: list[int]
    name: str
    point: str
    intervals: list[tuple[str, float]]


_PREDICT_SETTINGS = {
    "num_samples",
    "temperature",
    "top_k",
    "top_p",
    "seed",
    "batch_size",
    "progress",
    "seasonal_adjustment",
}  # what ``forecast`` passes on to ``predict``
FLOOR_SPREAD = 0.1  # a series varying by less is mostly Toto's scaler floor (sqrt(variance + 0.1) >= 0.32)
FLOAT32_RESOLUTION = 2.0**-20  # a spread below this share of the level is a few float32 steps at that level


def _outside_leapcast() -> int:
    """The ``stacklevel`` of the first caller outside leapcast, for a warning raised from here."""
    frame: types.FrameType | None = sys._getframe(1)
    level = 1
    while frame is not None and frame.f_globals.get("__name__", "").startswith("leapcast"):
        frame, level = frame.f_back, level + 1
    return level


def available_memory(device: torch.device | str = "cpu") -> float:
    """Bytes of memory free for new work on ``device``: a GPU's free memory, else Linux's MemAvailable, else free
    physical pages, else 8 GiB assumed."""
    device = torch.device(device)
    if device.type == "cuda":
        return float(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return float(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 8.0 * 2**30


class Forecaster:
    """Probabilistic forecasts from an autoregressive time-series model.

    >>> fc = Forecaster.from_pretrained("path/to/chronos-t5-checkpoint")
    >>> samples = fc.predict(torch.randn(100), prediction_length=12)   # [1, 20, 12]
    """

    def __init__(
        self,
        model,
        name: str | None = None,
        proposer=None,
        spec: SpecConfig | None = None,
        seasonal_adjustment: bool = False,
        adjustment_seasons: int | None = RECENT_SEASONS,
    ) -> None:
        check_spec(spec, drafted=proposer is not None)
        if spec is not None and spec.max_residual_tries is not None and model.head_kind == "categorical":
            raise ValueError(
                f"{param('max_residual_tries')} {spec.max_residual_tries!r} applies to patch models' continuous heads; "
                f"{name or model.name!r} draws tokens, whose residuals are drawn exactly in one try, so leave it unset"
            )
        self.model = model
        self.name = name or model.name
        self.proposer = proposer
        self.spec = spec or SpecConfig()
        self.seasonal_adjustment = check_flag(seasonal_adjustment, "seasonal_adjustment")
        self.adjustment_seasons = check_int(
            adjustment_seasons, "adjustment_seasons", none=True, must="a positive integer or None (the whole history)"
        )
        self.last_stats: SpecStats | None = None
        self.tier = "float32"  # the precision tier of the linear maps (from_pretrained sets it)
        self._choosers: dict[
            tuple[str, str, int, int, int], KChooser
        ] = {}  # adaptive k, per (tier, proposer, k, batch rows, horizon): learned across calls

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path | None = None,
        draft: str | Path | None = None,
        spec: SpecConfig | None = None,
        device: str | torch.device = "cpu",
        dtype: str | torch.dtype | None = None,
        seasonal_adjustment: bool | None = None,
        adjustment_seasons: int | None = RECENT_SEASONS,
        compile: bool = False,
    ) -> Forecaster:
        """Load a checkpoint folder (config.json + model.safetensors) or a bundled model by name
        (None: the default bundled model, house-patch-target, where the build ships it).

        ``draft`` turns on speculative decoding (same forecasts, less time): a
        checkpoint folder or bundled name with the same tokenizer,
        ``"early-exit:M"`` (the target's first M decoder layers; ``"early-exit"``
        calibrates M on the first batch it decodes and keeps it), or
        ``"seasonal"`` / ``"seasonal:S"`` (the same phase one season back).
        ``spec`` sets the proposal length k.

        ``dtype``: the precision tier the linear maps run in (target and draft alike): ``"float32"`` (None, the
        default: the reference), ``"bfloat16"`` (float32 activations, bfloat16 products; docs/precision.md) or
        ``"auto"`` (bfloat16 where the CPU has bfloat16 matrix instructions, float32 elsewhere).

        ``compile``: decoding steps and verify passes run through ``torch.compile`` (Chronos-T5 models, target and
        draft): up to 2.1x faster forecasts at a few rows a step, after a first call that compiles for tens of seconds
        (``leapcast.models.compiled``, docs/precision.md). Outputs move within the tier's rounding.

        ``seasonal_adjustment``: adjust seasonal histories before the model sees
        them (``leapcast.deseason``) whenever a season length is known; None takes
        the checkpoint's choice (config.json ``leapcast.seasonal_adjustment``: on
        for house-target, off where absent, as in official checkpoints).
        ``adjustment_seasons``: the seasonal indices average the last this many
        seasons (None: the whole history; ``leapcast.deseason``).
        """
        check_spec(spec, drafted=draft is not None)  # before loading anything
        device = check_device(device)
        dtype = resolve_tier(dtype, device)
        folder = resolve(path)
        if check_flag(compile, "compile"):
            check_compilable(folder, model_name(path, folder))  # named as the user named it
        model = load_model(folder, device=device, dtype=dtype, compile=compile)
        proposer = None
        if draft is not None:

            def load_draft(name: str):
                return load_model(resolve(name, "draft"), device=device, dtype=dtype, compile=compile)

            settings = spec or SpecConfig()
            proposer = make_proposer(
                str(draft),
                model,
                k=settings.k,
                load_draft=load_draft,
                tolerance=settings.tolerance,
                stop_below=settings.stop_below,
            )
        if seasonal_adjustment is None:
            seasonal_adjustment = leapcast_options(folder).get("seasonal_adjustment", False)
        name = model_name(path, folder)  # a hub id: its own name; a folder: its name ("." -> the folder it means)
        forecaster = cls(
            model,
            name=name,
            proposer=proposer,
            spec=spec,
            seasonal_adjustment=seasonal_adjustment,
            adjustment_seasons=adjustment_seasons,
        )
        forecaster.tier = tier_name(dtype)
        return forecaster

    def sampling_config(self, num_samples=None, temperature=None, top_k=None, top_p=None, seed=None) -> SamplingConfig:
        """The checkpoint's own defaults, overridden by whatever is not None."""
        given = {"num_samples": num_samples, "temperature": temperature, "top_k": top_k, "top_p": top_p}
        settings = {name: value for name, value in given.items() if value is not None}
        sampling = SamplingConfig(**{**self.model.default_sampling(), **settings}, seed=seed)
        self.model.check_sampling(sampling)
        return sampling

    def predict(
        self,
        inputs,
        prediction_length: int | None = None,
        *,
        num_samples: int | None = None,
        temperature: float | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        batch_size: int = 32,
        progress: bool | None = None,
        season_length: int | Sequence[int] | None = None,
        seasonal_adjustment: bool | None = None,
        series_keys: Sequence[int] | None = None,
    ) -> torch.Tensor:
        """Sample forecast paths.

        inputs: a 1-D tensor/array [T], a list of 1-D series of any lengths, or
        a 2-D tensor/array [N, T] left-padded with NaN (see ``leapcast.inputs``).
        Unset sampling arguments take the checkpoint's defaults (Chronos: 20
        samples, temperature 1, top-k 50, top-p 1); ``top_k=1`` is greedy.
        ``seed`` fixes every series' paths, whatever its batch mates (with a draft
        and adaptive k, which follows the clock, only their distribution): series
        i draws from a stream keyed by (seed, ``series_keys[i]``), by default its
        position i in ``inputs`` (``forecast`` keys streams by series id instead).
        ``season_length`` (one int, or one per series; None: unknown) lets the
        seasonal adjustment work when it is on (``seasonal_adjustment``, None:
        this forecaster's setting): a seasonal history is adjusted, the model
        forecasts it, and the paths get the season back (``leapcast.deseason``).

        Returns samples [N, S, h] float64, h = prediction_length in values (default: the
        model's own default horizon; longer horizons than its window roll out window by window).
        Each series is scaled by a power of two in float64 before the float32
        model and back after, so magnitudes up to 1e305 forecast correctly
        (``leapcast.inputs``; models that must read values as given, like Toto, read them so
        between 2**-100 and 2**100).
        A 3-D ``inputs`` [N, V, T] holds N items of V variates each, for models that read
        variates together (Toto): samples [N, V, S, h].
        With a draft, the speculative counts and timings land in ``self.last_stats``.
        """
        return self._predict(
            inputs,
            prediction_length,
            num_samples=num_samples,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            seed=seed,
            batch_size=batch_size,
            progress=progress,
            season_length=season_length,
            seasonal_adjustment=seasonal_adjustment,
            series_keys=series_keys,
        )

    def _predict(
        self,
        inputs,
        prediction_length: int | None = None,
        *,
        num_samples: int | None = None,
        temperature: float | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        batch_size: int = 32,
        progress: bool | None = None,
        season_length: int | Sequence[int] | None = None,
        seasonal_adjustment: bool | None = None,
        series_keys: Sequence[int] | None = None,
        names: list | None = None,
    ) -> torch.Tensor:
        """``predict``; ``names``: the series' names in warnings (None: their positions)."""
        h, steps, sampling = self._settings(prediction_length, num_samples, temperature, top_k, top_p, seed)
        items = as_items(inputs)
        if items is not None:
            if seasonal_adjustment is not None and check_flag(seasonal_adjustment, "seasonal_adjustment"):
                raise ValueError(
                    "`seasonal_adjustment` applies to univariate series; it does not run on [N, V, T] inputs"
                )
            return self._predict_items(items, h, steps, sampling, batch_size, progress, season_length, series_keys)
        check_int(batch_size, "batch_size")
        prepared = self._prepare_series(
            inputs, h, steps, sampling, season_length, seasonal_adjustment, series_keys, names
        )
        out = self._decode(prepared.contexts, prepared.keys, h, steps, sampling, batch_size, progress)  # [N, S, h]
        return self.finish(prepared, out)

    def prepare(
        self,
        inputs,
        prediction_length: int | None = None,
        *,
        num_samples: int | None = None,
        temperature: float | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        season_length: int | Sequence[int] | None = None,
        seasonal_adjustment: bool | None = None,
        series_keys: Sequence[int] | None = None,
    ) -> Prepared:
        """What ``predict`` does before its decode loop, for callers that run the loop themselves (the server's
        scheduler): univariate ``inputs`` checked, scaled and seasonally adjusted as ``predict`` does, with their
        sampling settings and random-stream keys. Decode ``prepared.contexts`` with ``leapcast.engine`` (streams
        ``RowStreams.for_series(seed, [key], S)`` per series), cut the samples to ``h`` values in float64 and pass
        them to ``finish``: the result is ``predict``'s. Arguments as in ``predict``."""
        h, steps, sampling = self._settings(prediction_length, num_samples, temperature, top_k, top_p, seed)
        if as_items(inputs) is not None:
            raise ValueError(
                "`inputs` of shape [N, V, T] are forecast by `predict` only; `prepare` takes univariate series"
            )
        return self._prepare_series(inputs, h, steps, sampling, season_length, seasonal_adjustment, series_keys)

    def finish(self, prepared: Prepared, samples: torch.Tensor) -> torch.Tensor:
        """samples [N, S, h] float64 decoded from ``prepared.contexts`` -> the forecasts ``predict`` returns
        [N, S, h] float64: the season restored and the scale multiplied back (in place). A forecast past float64
        is refused."""
        h = prepared.h
        for i, ix in enumerate(prepared.indices):
            if ix is not None:
                samples[i] = torch.from_numpy(ix.restore(samples[i].numpy()))
        samples *= torch.from_numpy(prepared.factor)[:, None, None]
        bad = ~torch.isfinite(samples).all(dim=(1, 2))
        if bad.any():  # a rollout that grew past float64: refused, never returned as inf
            raise ValueError(
                f"the forecasts of {int(bad.sum())} series (first: position {int(bad.nonzero()[0])} of `inputs`) "
                f"overflow float64 at horizon {h}; forecast a shorter horizon or rescale the series"
            )
        return samples

    def _settings(
        self, prediction_length, num_samples, temperature, top_k, top_p, seed
    ) -> tuple[int, int, SamplingConfig]:
        """The horizon in values and in steps (whole patches, cut to h after), and the sampling settings, checked."""
        h = self.model.default_horizon if prediction_length is None else check_horizon(prediction_length)
        steps = -(-h // self.model.patch_size)
        sampling = self.sampling_config(num_samples, temperature, top_k, top_p, seed)
        if self.spec.tolerance is not None and self.proposer is not None and not sampling.greedy:
            raise ValueError(
                f"{param('tolerance')} {self.spec.tolerance!r} applies to mean decoding ({param('top_k')} 1); sampled "
                "forecasts are verified exactly, so leave it unset"
            )
        if self.spec.tolerance is not None and self.proposer is not None and self.model.head_kind == "categorical":
            raise ValueError(
                f"{param('tolerance')} {self.spec.tolerance!r} applies to patch models' mean decoding; {self.name!r} "
                "draws tokens, whose speculative decoding is always exact, so leave it unset"
            )
        return h, steps, sampling

    def _prepare_series(
        self,
        inputs,
        h: int,
        steps: int,
        sampling: SamplingConfig,
        season_length,
        seasonal_adjustment,
        series_keys,
        names: list | None = None,
    ) -> Prepared:
        series = as_series_list(inputs, names)
        window = self.model.context_length
        i = _unobserved_in_reach(series, window)
        if i is not None:  # the model reads only the last `window` values: it would forecast from nothing
            raise ValueError(
                f"series {i} of `inputs` has no observed value in its last {window} values, all this model reads "
                f"(its context_length); fill them, or cut the series to end at its last observed stretch"
            )
        keys = _check_keys(series_keys, len(series))
        self._warn_short(series, names)
        # [N] float64, exact; from what the model reads: an older peak must not set the scale of a window of zeros
        factor = (power_of_two_scale if self.model.rescalable else raw_range_scale)([x[-window:] for x in series])
        series = [x / f for x, f in zip(series, factor)]
        self._warn_unread([x[-window:] for x in series], names)  # what the model reads
        adjust = self.adjusting(seasonal_adjustment)
        if season_length is not None and not adjust:
            raise ValueError(season_unused(self.name, seasonal_adjustment))
        indices = _seasonal_indices(series, season_length, adjust, self.adjustment_seasons)
        series = [x if ix is None else ix.adjust(x) for x, ix in zip(series, indices)]
        contexts = [left_pad([x[-window:]]) for x in series]  # what the model reads (older values may not fit float32)
        return Prepared(contexts, keys, sampling, h, steps, factor, indices)

    def _warn_short(self, series: list[np.ndarray], names: list | None) -> None:
        """A warning (once a call) for series shorter than the checkpoint's ``min_context``; ``names``: the series'
        names (None: their positions)."""
        least = getattr(self.model, "min_context", None)  # a family without it: no floor
        if least is None:
            return
        short = [i for i, x in enumerate(series) if int((~np.isnan(x)).sum()) < least]  # observed values
        if short:
            warnings.warn(
                f"{len(short)} series have fewer than {least} observed values of history, the fewest {self.name!r} "
                f"forecasts soundly from (e.g. series {short[0] if names is None else names[short[0]]!r}); their "
                "paths come out wide and erratic, many at the clip of drawn values (docs/limits.md)",
                stacklevel=_outside_leapcast(),  # the caller's line, not leapcast's
            )

    def _warn_unread(self, series: list[np.ndarray], names: list | None) -> None:
        """Warnings (once a call each) for what a model that reads values as given (``rescalable`` False: Toto's
        scaler has an absolute floor, as the reference's) cannot see in ``series`` (what it reads, float64): a
        variation small against the floor or against float32's resolution at the series' level, and missing values
        at the end, which it reads as a flat stretch (its intervals then do not widen for them)."""
        if self.model.rescalable:
            return
        name = (lambda i: int(i)) if names is None else (lambda i: names[int(i)])
        spread = np.array([np.nanstd(x) if np.isfinite(x).any() else 0.0 for x in series])
        level = np.array([np.nanmax(np.abs(x)) if np.isfinite(x).any() else 0.0 for x in series])
        flat = np.flatnonzero((spread > 0) & (spread < FLOOR_SPREAD))
        if len(flat):
            i = flat[0]
            warnings.warn(
                f"{len(flat)} series vary by less than {FLOOR_SPREAD} (standard deviation), which {self.name!r}'s "
                f"scaler floor (as the reference's) overwhelms, so their forecasts carry the floor's spread, not "
                f"theirs (e.g. series {name(i)!r}: {spread[i]:.3g}); multiply them by a power of ten first "
                "(docs/toto.md, Magnitudes)",
                stacklevel=_outside_leapcast(),
            )
        fine = np.flatnonzero((spread > 0) & (spread >= FLOOR_SPREAD) & (spread < level * FLOAT32_RESOLUTION))
        if len(fine):
            i = fine[0]
            warnings.warn(
                f"{len(fine)} series vary by less than float32 resolves at their level (e.g. series {name(i)!r}: "
                f"standard deviation {spread[i]:.3g} at |values| up to {level[i]:.3g}), and {self.name!r} reads "
                "values as given in float32: subtract their level first, and add it back to the forecast",
                stacklevel=_outside_leapcast(),
            )
        patch = getattr(self.model, "patch_size", 1)
        trailing = [int(np.argmax(~np.isnan(x[::-1]))) for x in series]  # missing values at each series' end
        late = [i for i, k in enumerate(trailing) if k >= patch]
        if late:
            i = late[0]
            warnings.warn(
                f"{len(late)} series end in {patch} or more missing values (e.g. series {name(i)!r}: "
                f"{trailing[i]}), which {self.name!r} reads as a flat stretch: their intervals come out too narrow; "
                "drop the missing values at the end and forecast that many more steps",
                stacklevel=_outside_leapcast(),
            )

    def adjusting(self, seasonal_adjustment: bool | None = None) -> bool:
        """Whether a call with this ``seasonal_adjustment`` (None: this forecaster's setting) adjusts seasons."""
        if seasonal_adjustment is None:
            return self.seasonal_adjustment
        return check_flag(seasonal_adjustment, "seasonal_adjustment")

    def _chooser_key(self, rows: int, h: int) -> tuple[str, str, int, int, int]:
        """Adaptive k's chooser for batches of ``rows`` rows and horizon ``h``: one per tier, proposer and k too (a
        chooser's candidates are those of the k it was made for)."""
        return self.tier, self.proposer.name if self.proposer is not None else "", self.spec.k, rows, h

    def _decode(
        self,
        contexts: list[torch.Tensor],
        keys: list[int],
        h: int,
        steps: int,
        sampling: SamplingConfig,
        batch_size: int,
        progress: bool | None,
    ) -> torch.Tensor:
        """contexts: one [1, (V,) T_i] float32 per series or item (left-padded with NaN) -> samples [N, S, V * h] float64,
        ``batch_size`` at a time, each row's paths from its stream (seed, key)."""
        if sampling.greedy and sampling.num_samples > 1:  # greedy (mean) decoding: every path is the same one
            one = self._decode(contexts, keys, h, steps, replace(sampling, num_samples=1), batch_size, progress)
            return one.expand(-1, sampling.num_samples, -1).clone()  # [N, S, V * h]
        seed = random_seed() if sampling.seed is None else sampling.seed
        v = contexts[0].shape[1] if contexts[0].dim() == 3 else 1
        out = torch.empty(len(contexts), sampling.num_samples, v * h, dtype=torch.float64)
        # each call its own copy of the proposer: it holds the state of this call's rows (a draft's caches), so calls
        # from several threads do not share it, and it is let go when the call ends
        proposer = copy.copy(self.proposer)
        total = SpecStats(k=self.spec.k, accepted_per_position=[0] * self.spec.k)
        chooser = None
        if self.spec.adaptive and proposer is not None:  # what one call learns carries to the next of the same shape
            key = self._chooser_key(min(batch_size, len(contexts)) * sampling.num_samples, h)
            chooser = self._choosers.setdefault(key, KChooser(self.spec.k))
        batch_size = self._fitting_batch(batch_size, len(contexts), steps, v, sampling.num_samples)
        starts = range(0, len(contexts), batch_size)
        bar = tqdm(starts, desc=f"{self.name}: forecasting", unit="batch", disable=_no_bar(progress, len(starts)))
        for start in bar:
            chunk = slice(start, start + batch_size)
            streams = RowStreams.for_series(seed, keys[chunk], sampling.num_samples, device=self.model.device)
            batch = _stack_left(contexts[chunk])  # [B, (V,) T_max]
            samples, stats = rollout(self.model, batch, steps, sampling, streams, proposer, self.spec, chooser)
            b = samples.shape[0]
            out[chunk] = (
                samples.view(b, sampling.num_samples, v, -1)[..., :h].reshape(b, sampling.num_samples, -1).double()
            )
            if stats is not None:
                total.merge(stats)
        if proposer is not None:
            total.proposer = proposer.name
        self.last_stats = total if proposer is not None else None
        return out

    def _fitting_batch(self, batch_size: int, series: int, steps: int, variates: int, rows_per_series: int) -> int:
        """``batch_size``, or fewer series where their decoder state for ``steps`` steps would not fit in half the
        memory this machine has free (Toto's caches grow with the horizon: h 10,000 at 100 paths is about 1.5 GB a
        series). Series decode alike in any batch (their random streams are their own), so only the memory changes."""
        positions = min(steps, self.model.prediction_length) + self.spec.k + 1  # one window's (rollout)
        per_series = self.model.row_cache_bytes(positions, variates) * rows_per_series
        free = available_memory(self.model.device)
        fits = max(1, int(0.5 * free // max(per_series, 1)))
        if fits < min(batch_size, series):
            warnings.warn(
                f"{self.name!r} needs about {per_series / 2**30:.2g} GiB a series for this horizon and "
                f"{rows_per_series} paths; decoding {fits} series at a time instead of {min(batch_size, series)}, to "
                f"stay within half the {free / 2**30:.3g} GiB free on {self.model.device} (each series' forecast is "
                "that of this batch size: docs/limits.md)",
                stacklevel=_outside_leapcast(),
            )
            return fits
        return batch_size

    def _predict_items(
        self,
        items: np.ndarray,
        h: int,
        steps: int,
        sampling: SamplingConfig,
        batch_size: int,
        progress: bool | None,
        season_length,
        series_keys,
    ) -> torch.Tensor:
        """items [N, V, T] float64 (checked) -> samples [N, V, S, h] float64: each item's variates forecast together."""
        n, v, _ = items.shape
        if not self.model.multivariate:
            raise ValueError(
                f"`inputs` must be 1-D [T] or 2-D [N, T] for {self.name!r}, which forecasts one variate at a "
                f"time ([N, V, T] is for multivariate models such as Toto), got an array of shape {items.shape}"
            )
        if season_length is not None:
            raise ValueError(
                "`season_length` applies to univariate series; the seasonal adjustment does not run on [N, V, T] inputs"
            )
        keys = _check_keys(series_keys, n)
        check_int(batch_size, "batch_size")
        window = self.model.context_length
        flat = [x[-window:] for item in items for x in item]  # N * V variates, as the model reads them
        i = _unobserved_in_reach(flat, window)
        if i is not None:  # as a series alone is refused: the model would forecast that variate from nothing
            raise ValueError(
                f"item {i // v}, variate {i % v} of `inputs` has no observed value in its last {window} values, all "
                "this model reads (its context_length); fill them, or drop the variate"
            )
        labels = [f"item {i // v}, variate {i % v}" for i in range(n * v)]
        self._warn_short(flat, labels)
        factor = (power_of_two_scale if self.model.rescalable else raw_range_scale)(flat).reshape(n, v)  # each alone
        self._warn_unread([x / f for x, f in zip(flat, factor.reshape(-1))], labels)
        scaled = items[:, :, -window:] / factor[:, :, None]  # what the model reads (older values may not fit float32)
        contexts = []
        for item in scaled:
            observed = ~np.isnan(item).all(axis=0)
            first = int(np.argmax(observed))
            contexts.append(torch.from_numpy(item[None, :, first:].astype(np.float32)))  # [1, V, T_i]
        out = self._decode(contexts, keys, h, steps, sampling, batch_size, progress)  # [N, S, V * h]
        out = out.view(n, sampling.num_samples, v, h).permute(0, 2, 1, 3) * torch.from_numpy(factor)[:, :, None, None]
        bad = ~torch.isfinite(out).all(dim=(1, 2, 3))
        if bad.any():
            raise ValueError(
                f"the forecasts of {int(bad.sum())} items (first: item {int(bad.nonzero()[0])}) overflow "
                f"float64 at horizon {h}; forecast a shorter horizon or rescale the series"
            )
        return out.contiguous()

    def predict_quantiles(
        self,
        inputs,
        prediction_length: int | None = None,
        quantile_levels: Sequence[float] = DEFAULT_QUANTILES,
        **predict_kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Quantiles and mean of the sampled paths (as chronos-forecasting).

        Returns (quantiles [N, h, Q], mean [N, h]); for items of V variates (a multivariate model's [N, V, T]
        input) (quantiles [N, V, h, Q], mean [N, V, h]). Keyword arguments go to ``predict``.
        """
        levels = check_levels(quantile_levels)
        samples = self.predict(inputs, prediction_length, **predict_kwargs).movedim(-2, -1)  # [N, (V,) h, S]
        quantiles = torch.quantile(samples, torch.tensor(levels, dtype=samples.dtype), dim=-1)  # [Q, N, (V,) h]
        return quantiles.movedim(0, -1), samples.mean(dim=-1)

    def forecast(
        self,
        df: pd.DataFrame,
        h: int,
        *,
        quantiles: Sequence[float] | None = None,
        level: Sequence[float] | None = None,
        point: str = "median",
        id_col: str = "unique_id",
        time_col: str = "ds",
        target_col: str = "y",
        freq=None,
        alias: str | None = None,
        season_length: int | Mapping | None = None,
        **predict_kwargs,
    ) -> pd.DataFrame:
        """Forecast every series of a long frame (statsforecast / TimeGPT layout).

        Returns a long frame: ``id_col``, ``time_col`` (future timestamps, or
        integer steps), ``<alias>`` (the ``point`` forecast: sample median by
        default, or mean), and ``<alias>-lo-80`` / ``-hi-80`` per ``level`` or
        ``<alias>-q-10`` per quantile. ``freq`` as in ``leapcast.frame.to_panel``.
        ``season_length``: for the seasonal adjustment, one int or a dict {id: season}; default: the frequency's
        usual season (``leapcast.deseason.season_length_of``: 12 monthly, 4 quarterly, 24 hourly, ...).
        """
        unknown = sorted(set(predict_kwargs) - _PREDICT_SETTINGS)
        if unknown:  # else Python names the private method they are passed to
            raise TypeError(
                f"`forecast` got unexpected arguments {unknown}; it takes {', '.join(sorted(_PREDICT_SETTINGS))} "
                "besides its own (see help(Forecaster.forecast))"
            )
        for name, col in (("id_col", id_col), ("time_col", time_col), ("target_col", target_col)):
            if isinstance(col, (list, set, dict, tuple)):  # a column name is one label (a str, an int, ...)
                raise TypeError(
                    f"`{name}` must be one column name, got {col!r}"
                    + (
                        "; a frame forecasts one target column: pass several variates to `predict` as [N, V, T]"
                        if name == "target_col"
                        else ""
                    )
                )
        adjust = self.adjusting(predict_kwargs.get("seasonal_adjustment"))
        if season_length is not None and not adjust:  # before reading the frame, as predict would refuse it
            raise ValueError(season_unused(self.name, predict_kwargs.get("seasonal_adjustment")))
        plan = self.plan_frame(
            df,
            h,
            quantiles=quantiles,
            level=level,
            point=point,
            id_col=id_col,
            time_col=time_col,
            target_col=target_col,
            freq=freq,
            alias=alias,
            season_length=season_length,
        )
        season = plan.season if adjust else None  # the frequency's usual season, used only when adjusting
        samples = self._predict(
            plan.panel.contexts,
            plan.h,
            season_length=season,
            series_keys=plan.keys,
            names=plan.panel.ids,
            **predict_kwargs,
        )  # [N, S, h]
        return self.frame_of(plan, samples)

    def plan_frame(
        self,
        df: pd.DataFrame,
        h: int,
        *,
        quantiles: Sequence[float] | None = None,
        level: Sequence[float] | None = None,
        point: str = "median",
        id_col: str = "unique_id",
        time_col: str = "ds",
        target_col: str = "y",
        freq=None,
        alias: str | None = None,
        season_length: int | Mapping | None = None,
    ) -> FramePlan:
        """What ``forecast`` does before it predicts, for callers that decode themselves (the server): the frame
        checked into series, their future timestamps, season length and random-stream keys, and the answer's
        columns. ``predict`` (or ``prepare`` ... ``finish``) ``plan.panel.contexts`` with ``season_length=plan.season``
        where the forecaster adjusts seasons (``adjusting()``; else None) and ``series_keys=plan.keys``, then
        ``frame_of(plan, samples)`` is ``forecast``'s frame. Arguments as there."""
        h = check_horizon(h, "h")
        if quantiles is not None and level is not None:
            raise ValueError(f"pass either {param('quantiles')} or {param('level')}, not both")
        if point not in ("median", "mean"):
            raise ValueError(f"{param('point')} must be 'median' or 'mean', got {point!r}")
        name = alias or self.name
        intervals = _interval_columns(name, quantiles, level)
        for column in (name, *(label for label, _ in intervals)):
            if column in (id_col, time_col):  # found before any forecasting, naming what the caller can change
                raise ValueError(
                    f"the forecast column {column!r} would clash with {param('id_col')} / {param('time_col')} "
                    f"({id_col!r}, {time_col!r}); pass another {param('alias')}, or rename the frame's columns"
                )
        panel = frame.to_panel(df, id_col=id_col, time_col=time_col, target_col=target_col, freq=freq)
        window = self.model.context_length
        i = _unobserved_in_reach(panel.contexts, window)
        if i is not None:  # as _prepare_series refuses it, here by the series' id
            raise ValueError(
                f"series {panel.ids[i]!r} has no observed {target_col!r} in its last {window} steps, all the model "
                "reads (its context_length); fill them, or drop the series"
            )
        times = frame.future_times(panel, h)  # a horizon past the calendar is refused before any forecasting
        season = season_length_of(panel.freq) if season_length is None else _season_per_id(season_length, panel.ids)
        keys = [stream_key(i) for i in panel.ids]  # a series' paths follow its id, not its place in the frame
        return FramePlan(panel, h, times, season, keys, name, point, intervals)

    def frame_of(self, plan: FramePlan, samples: torch.Tensor) -> pd.DataFrame:
        """samples [N, S, h] float64 (``predict``'s, of ``plan.panel``'s series) -> ``forecast``'s long frame."""
        # the median as np.median (mean of the two middle samples when S is even), so it equals `-q-50`
        point = torch.quantile(samples, 0.5, dim=1) if plan.point == "median" else samples.mean(dim=1)
        columns = {plan.name: point.numpy()}
        for label, q in plan.intervals:
            columns[label] = torch.quantile(samples, q, dim=1).numpy()
        return frame.future_frame(plan.panel, plan.h, columns, plan.times)


def season_unused(name: str, asked: bool | None, option: str = "season_length", settable: bool = True) -> str:
    """Why ``option`` (a season length, the seasons the indices average) is refused where the seasonal adjustment is
    off for model ``name``: it would do nothing. ``asked``: the call's own ``seasonal_adjustment`` (False: it
    turned the adjustment off); ``settable``: whether the caller may turn it on (a server's client may not)."""
    if asked is False:
        why = f"for {name!r} (`--no-seasonal-adjustment`)" if cli_spelled() else "for this call"
    else:
        why = f"for {name!r} (its checkpoint's default)"
    if not settable:
        fix = f"leave {param(option)} out"
    elif cli_spelled():
        fix = "add `--seasonal-adjustment` or leave it out"
    else:
        fix = f"pass {param('seasonal_adjustment')}=True, or leave {param(option)} out"
    return f"{param(option)} sets the seasonal adjustment, which is off {why}; {fix}"


def check_spec(spec, drafted: bool) -> None:
    """``spec`` is a SpecConfig, and one that asks for anything but the defaults comes with a draft."""
    if spec is not None and not isinstance(spec, SpecConfig):
        raise TypeError(
            f"{param('spec')} must be a leapcast.engine.speculative.SpecConfig, got {type(spec).__name__} {spec!r}"
        )
    if not drafted and spec is not None and spec != SpecConfig():
        raise ValueError(
            f"{param('spec')} {spec!r} sets speculative decoding, which runs only with a draft; pass "
            f"{param('draft')} (a checkpoint, 'early-exit:M' or 'seasonal'), or leave {param('spec')} out"
        )


def _unobserved_in_reach(series: Sequence[np.ndarray], window: int) -> int | None:
    """The index of the first series whose last ``window`` values are all missing, or None."""
    return next((i for i, x in enumerate(series) if np.isnan(x[-window:]).all()), None)


def _stack_left(contexts: list[torch.Tensor]) -> torch.Tensor:
    """[1, (V,) T_i] each -> [B, (V,) T_max] float32, left-padded with NaN."""
    width = max(c.shape[-1] for c in contexts)
    return torch.cat([torch.nn.functional.pad(c, (width - c.shape[-1], 0), value=float("nan")) for c in contexts])


def _season_per_id(season_length, ids: list):
    """A frame's ``season_length``: one int for every series, or a mapping {id: season} -> the int, or one per
    series in the panel's (sorted id) order. A list is refused: which series each entry meant would be a guess."""
    if isinstance(season_length, Mapping):
        missing = [i for i in ids if i not in season_length]
        if missing:
            raise ValueError(
                f"{param('season_length')} has no entry for the series {missing[:5]!r}; give every id one, or pass "
                "one int for all"
            )
        return [season_length[i] for i in ids]
    if isinstance(season_length, (Sequence, np.ndarray)) and not isinstance(season_length, str):
        raise ValueError(
            f"{param('season_length')} {season_length!r}: a frame's series are matched by id, not by order; pass one "
            "int, or a dict {id: season}"
        )
    return season_length


def _seasonal_indices(
    series: list[np.ndarray], season_length, adjust: bool, recent: int | None
) -> list[SeasonalIndex | None]:
    """One SeasonalIndex (or None: not adjusted) per series, ``season_length`` checked."""
    if season_length is None:
        return [None] * len(series)
    if isinstance(season_length, (int, np.integer, bool)):
        seasons = [season_length] * len(series)
    elif isinstance(season_length, (Sequence, np.ndarray)) and not isinstance(season_length, str):
        seasons = list(season_length)
        if len(seasons) != len(series):
            raise ValueError(
                f"`season_length` has {len(seasons)} entries for {len(series)} series; pass one int or one per series"
            )
    else:
        raise ValueError(f"`season_length` must be an int or one int per series, got {season_length!r}")
    checked = [check_int(m, "season_length", must="a positive integer (1: no season)") for m in seasons]
    return [seasonal_index(x, m, recent) if adjust else None for x, m in zip(series, checked)]


def _check_keys(keys, n: int) -> list[int]:
    """Random-stream keys, one per series: positions by default."""
    if keys is None:
        return list(range(n))
    keys = list(keys)
    if len(keys) != n:
        raise ValueError(f"`series_keys` has {len(keys)} entries for {n} series; pass one per series")
    for key in keys:
        check_int(key, "series_keys", low=0, high=2**64, must="integers in [0, 2**64)")
    return [int(key) for key in keys]


def _interval_columns(name: str, quantiles, level) -> list[tuple[str, float]]:
    """(column name, quantile level) of each interval column; two values that name one column are refused (a frame
    would keep only the second)."""
    cols = _named_levels(name, quantiles, level)
    names = [col for col, _ in cols]
    twice = next((col for i, col in enumerate(names) if col in names[:i]), None)
    if twice is not None:
        option = "quantiles" if quantiles is not None else "level"
        given = quantiles if quantiles is not None else level
        raise ValueError(f"{param(option)} {list(given)!r} gives the column {twice!r} twice; pass distinct values")
    return cols


def _named_levels(name: str, quantiles, level) -> list[tuple[str, float]]:
    if quantiles is not None:
        return [(f"{name}-q-{_pct(q)}", q) for q in check_levels(quantiles, "quantiles")]
    if level is None:
        return []
    if isinstance(level, (str, bytes)) or not isinstance(level, (Sequence, np.ndarray)):
        raise ValueError(f"`level` must be a list of numbers in (0, 100), e.g. [80, 95], got {level!r}")
    cols = []
    for lv in level:
        if not is_real(lv) or not 0 < float(lv) < 100:
            raise ValueError(f"{param('level')} values must be numbers in (0, 100), got {lv!r}")
        lv = float(lv)
        cols.append((f"{name}-lo-{_pct(lv / 100)}", 0.5 - lv / 200))
        cols.append((f"{name}-hi-{_pct(lv / 100)}", 0.5 + lv / 200))
    return cols


def _pct(q: float) -> str:
    value = q * 100
    return str(int(round(value))) if abs(value - round(value)) < 1e-9 else f"{value:g}"


def _no_bar(progress: bool | None, batches: int) -> bool | None:
    if progress is None:
        return None if batches > 1 else True  # None: tqdm shows it only on a terminal
    return not check_flag(progress, "progress")
