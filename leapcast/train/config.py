"""Training and distillation configs: frozen dataclasses, read from JSON files that may ``extends`` another.

A config file is a JSON object of fields. ``"extends": "target-5-adjusted.json"``
(a path relative to the file; ``.json`` may be left off) starts from that
file's resolved fields, so a stage lists only what it changes; resolution is
recursive, and a cycle, a missing parent, an unknown key or a bad value is
refused with a message that names the file (and the key) responsible.
``TrainConfig`` and ``DistillConfig`` share one validation: each field is
checked against its annotated type and, where the field has one, its range.
"""

from __future__ import annotations

import difflib
import json
import math
import typing
from dataclasses import MISSING, dataclass, fields
from functools import cache
from pathlib import Path

HELD_OUT = ("m3", "tourism", "etth", "fpp3-tourism")  # zero-shot evaluation data never trained on

TRAIN_DATASETS = (
    "m1-yearly",
    "m1-quarterly",
    "m1-monthly",
    "fpp3-pbs",
    "fpp3-aus-retail",
    "fpp3-us-employment",
    "fpp3-aus-livestock",
    "fpp3-aus-production",
    "fpp3-vic-elec",
    "air-passengers",
    "sunspots",
    "nile",
    "co2",
)


class ConfigError(ValueError):
    """A config field with a bad value; ``field`` names it, so a file-reading caller can say which file set it."""

    def __init__(self, kind: str, field: str, message: str) -> None:
        super().__init__(f"{kind} config `{field}` {message}")
        self.field = field


@dataclass(frozen=True)
class TrainConfig:
    out_dir: str
    d_model: int = 128
    d_kv: int = 32
    d_ff: int = 512
    num_layers: int = 2
    num_heads: int = 4
    relative_attention_num_buckets: int = (
        32  # T5's 32 are exact only to 7 steps apart in the encoder (see grow.rebucket)
    )
    n_tokens: int = 4096
    low_limit: float = -15.0  # bin range of the mean-scaled value (Chronos: [-15, 15])
    high_limit: float = 15.0
    context_length: int = 256
    prediction_length: int = 64
    min_context: int = 8
    batch_size: int = 32
    steps: int = 2000
    lr: float = 1e-3
    warmup: int = 100
    weight_decay: float = 0.01
    label_sigma: float = 0.0  # > 0: Gaussian soft labels over neighbouring bins, sigma in bins (HL-Gauss)
    embedding_init: str = "fourier"  # "fourier": bin embeddings smooth in the bin's value; "random": T5's N(0, 1)
    position_heads: bool = True  # start two encoder heads as previous-/next-token heads (see initial.neighbour_heads)
    init_from: str | None = None  # start a fresh run from this checkpoint instead of random weights
    stack: int = 1  # with init_from: stack its layers this many times (progressive stacking, train/grow.py)
    datasets: tuple[str, ...] = TRAIN_DATASETS
    kernel_synth: int = 2000
    kernel_synth_length: int = 512
    mixup: int = 2000
    seasonal_synth: int = 0  # seasonal structural series (data.structural_synth), kernel_synth_length long
    seasonal_adjustment: bool = (
        False  # train on real series seasonally adjusted as the forecaster adjusts them (leapcast.deseason)
    )
    synthetic_fraction: float = 0.5
    trend_augmentation: float = 0.0  # share of crops given a random growth or decline (see crops.with_trend)
    max_trend: float = 0.12  # largest growth rate per step of with_trend
    min_trend_damping: float = 1.0  # with_trend's horizon damping phi ~ U(this, 1); 1: the trend goes on undamped
    save_every: int = 500
    seed: int = 0
    threads: int = 2
    family: str = "chronos-t5"  # the architecture (``family_of``); "toto" configs are TotoTrainConfig

    def __post_init__(self) -> None:
        validate(self, "train")
        if self.family != "chronos-t5":
            raise ConfigError("train", "family", f"must be 'chronos-t5' for this config, got {self.family!r}")
        if self.min_context > self.context_length:
            raise ConfigError(
                "train",
                "min_context",
                f"must be at most `context_length` ({self.context_length}), got {self.min_context}",
            )
        if self.stack != 1 and self.init_from is None:
            raise ConfigError("train", "stack", f"stacks the layers of `init_from`, which is not set; got {self.stack}")

    @classmethod
    def from_file(cls, path: str | Path, **overrides) -> TrainConfig:
        """The config in ``path`` (``extends`` resolved) with the non-None ``overrides`` applied."""
        return from_file(cls, path, overrides)


@dataclass(frozen=True)
class DistillConfig:
    target: str
    out_dir: str
    d_model: int = 128
    d_kv: int = 32
    d_ff: int = 512
    num_layers: int = 1
    num_heads: int = 4
    steps: int = 1000
    batch_size: int = 32
    lr: float = 1e-3
    warmup: int = 50
    on_policy: float = 0.5  # share of batches whose decoder reads the target's own sampled continuation
    datasets: tuple[str, ...] = TRAIN_DATASETS
    kernel_synth: int = 500
    mixup: int = 500
    seasonal_synth: int = 0
    seasonal_adjustment: bool = False  # real series seasonally adjusted, as the target's forecaster sees them
    trend_augmentation: float = 0.0  # share of crops given a random trend (crops.with_trend), as the target trained
    min_trend_damping: float = 1.0
    save_every: int = 250
    seed: int = 0
    threads: int = 2
    init_from: str | None = (
        None  # start from this draft (re-binned to the target's bins where they differ; its own dims, not the ones above)
    )

    def __post_init__(self) -> None:
        validate(self, "distill")

    @classmethod
    def from_file(cls, path: str | Path, **overrides) -> DistillConfig:
        """The config in ``path`` (``extends`` resolved) with the non-None ``overrides`` applied."""
        return from_file(cls, path, overrides)


@dataclass(frozen=True)
class TotoTrainConfig:
    """Pretraining a univariate Toto-architecture model (``"family": "toto"`` in the file): its shape, the crops
    (``max_patches`` patches of ``patch_size`` values, the whole crop teacher forced: every patch predicts the
    next), the loss (the reference's: ``lambda_nll`` x the mixture's negative log-likelihood + the rest x a robust
    loss of its mean, both in the causally scaled space), the optimizer and the data (as ``TrainConfig``)."""

    out_dir: str
    family: str = "toto"
    patch_size: int = 4
    embed_dim: int = 192
    num_layers: int = 4
    num_heads: int = 4
    mlp_hidden_dim: int = 512
    k_components: int = 8
    lag_heads: int = 0  # heads of the first layer started as look-ups of fixed patch lags (see toto_initial)
    context_length: int = 512  # values read at inference (config.json's leapcast block)
    clip_scales: float | None = 5.0  # inference: drawn values clipped to the context's mean +- 5 scales (TotoOptions)
    num_samples: int = 100  # inference: the paths a forecast draws unless told (TotoOptions); 20 gave too narrow bands
    spread: float = 1.0  # inference: every mixture component's scale times this (TotoOptions); the bundled pair: 1.1
    max_patches: int = 96  # crop length in patches
    short_crops: float = 0.0  # share of crops cut to a log-uniform length of 2..max_patches patches (PatchSampler)
    level_shifts: float = 0.0  # share of crops given a lasting level shift at a random point (patches.with_level_shift)
    prediction_length: int = 64  # values; the TSMixup series' horizon part, as in TrainConfig
    min_context: int = 8
    batch_size: int = 32
    steps: int = 2000
    lr: float = 1e-3
    warmup: int = 100
    weight_decay: float = 0.01
    lambda_nll: float = 0.575  # the reference's CombinedLoss
    robust_delta: float = 0.1
    init_from: str | None = None
    datasets: tuple[str, ...] = TRAIN_DATASETS
    kernel_synth: int = 2000
    kernel_synth_length: int = 512
    mixup: int = 2000
    seasonal_synth: int = 2000
    seasonal_adjustment: bool = False
    synthetic_fraction: float = 0.5
    trend_augmentation: float = 0.0
    max_trend: float = 0.12
    min_trend_damping: float = 1.0
    own_draws: float = 0.0  # share of input patches that are the model's draws (toto_pretrain.own_draws)
    save_every: int = 250
    seed: int = 0
    threads: int = 2

    def __post_init__(self) -> None:
        validate(self, "train")
        if self.family != "toto":
            raise ConfigError("train", "family", f"must be 'toto' for this config, got {self.family!r}")
        if self.context_length < 2 * self.patch_size:
            raise ConfigError(
                "train",
                "context_length",
                f"must be at least two patches ({2 * self.patch_size}), got {self.context_length}",
            )
        _check_heads(self, "train")

    @classmethod
    def from_file(cls, path: str | Path, **overrides) -> TotoTrainConfig:
        """The config in ``path`` (``extends`` resolved) with the non-None ``overrides`` applied."""
        return from_file(cls, path, overrides)


@dataclass(frozen=True)
class TotoDistillConfig:
    """Distilling a draft for a Toto target (``leapcast distill`` with a Toto target): the draft's shape (its patches
    and scaler are the target's), the number of the target's draws per position it learns from, and the data and
    optimizer as ``TotoTrainConfig`` has them."""

    target: str
    out_dir: str
    embed_dim: int = 96
    num_layers: int = 1
    num_heads: int = 2
    mlp_hidden_dim: int = 256
    k_components: int = 4
    lag_heads: int = 2
    draws: int = 8  # the target's draws per position (and value) the draft's log-likelihood is taken over
    max_patches: int = 96
    prediction_length: int = 64
    context_length: int = 512
    min_context: int = 8
    batch_size: int = 32
    steps: int = 1000
    lr: float = 1e-3
    warmup: int = 50
    weight_decay: float = 0.01
    init_from: str | None = None
    datasets: tuple[str, ...] = TRAIN_DATASETS
    kernel_synth: int = 1000
    kernel_synth_length: int = 512
    mixup: int = 1000
    seasonal_synth: int = 1000
    seasonal_adjustment: bool = False
    synthetic_fraction: float = 0.5
    trend_augmentation: float = 0.0
    max_trend: float = 0.12
    min_trend_damping: float = 1.0
    save_every: int = 250
    seed: int = 0
    threads: int = 2

    def __post_init__(self) -> None:
        validate(self, "distill")
        _check_heads(self, "distill")

    @classmethod
    def from_file(cls, path: str | Path, **overrides) -> TotoDistillConfig:
        """The config in ``path`` (``extends`` resolved) with the non-None ``overrides`` applied."""
        return from_file(cls, path, overrides)


def target_family(folder: str | Path) -> str:
    """The family of the checkpoint folder a draft is distilled for: "toto" or "chronos-t5"."""
    from leapcast.models.toto_presets import is_toto_config

    config = json.loads((Path(folder) / "config.json").read_text())
    return "toto" if is_toto_config(config) else "chronos-t5"


def _check_heads(cfg: TotoTrainConfig | TotoDistillConfig, kind: str) -> None:
    if cfg.embed_dim % cfg.num_heads or (cfg.embed_dim // cfg.num_heads) % 2:
        raise ConfigError(
            kind, "embed_dim", f"must split into `num_heads` {cfg.num_heads} heads of even size, got {cfg.embed_dim}"
        )
    if cfg.lag_heads > cfg.num_heads:
        raise ConfigError(kind, "lag_heads", f"must be at most `num_heads` {cfg.num_heads}, got {cfg.lag_heads}")


def family_of(path: str | Path) -> str:
    """The model family a training config file trains (its ``family`` key, ``extends`` resolved): "chronos-t5" or "toto"."""
    raw, _ = resolve(path, {f.name for f in fields(TrainConfig)} | {f.name for f in fields(TotoTrainConfig)})
    family = raw.get("family", "chronos-t5")
    if family not in ("chronos-t5", "toto"):
        raise ValueError(f"{path}: `family` must be 'chronos-t5' or 'toto', got {family!r}")
    return family


def pipeline_options(cfg: TrainConfig | DistillConfig) -> dict:
    """What a forecaster must do around a model trained with ``cfg`` (config.json's ``leapcast`` block)."""
    return {"seasonal_adjustment": True} if cfg.seasonal_adjustment else {}


# Ranges by field name, shared by both configs: (test, what the value must be).
_AT_LEAST_1 = (lambda v: v >= 1, "must be >= 1")
_AT_LEAST_0 = (lambda v: v >= 0, "must be >= 0")
_SHARE = (lambda v: 0 <= v <= 1, "must be in [0, 1]")
_POSITIVE = (lambda v: v > 0, "must be > 0")
_FINITE_POSITIVE = (lambda v: 0 < v < float("inf"), "must be a finite number > 0")
RANGES = {
    **{
        name: _AT_LEAST_1
        for name in (
            "d_model",
            "d_kv",
            "d_ff",
            "num_layers",
            "num_heads",
            "relative_attention_num_buckets",
            "n_tokens",
            "context_length",
            "prediction_length",
            "min_context",
            "batch_size",
            "steps",
            "warmup",
            "stack",
            "kernel_synth_length",
            "save_every",
            "threads",
            "patch_size",
            "embed_dim",
            "mlp_hidden_dim",
            "k_components",
            "max_patches",
            "draws",
            "num_samples",
        )
    },
    **{name: _AT_LEAST_0 for name in ("kernel_synth", "mixup", "seasonal_synth", "seed", "weight_decay", "lag_heads")},
    **{
        name: _SHARE
        for name in (
            "on_policy",
            "synthetic_fraction",
            "trend_augmentation",
            "min_trend_damping",
            "lambda_nll",
            "own_draws",
            "short_crops",
            "level_shifts",
        )
    },
    "robust_delta": _POSITIVE,
    "clip_scales": _FINITE_POSITIVE,
    "spread": _FINITE_POSITIVE,
    "lr": _FINITE_POSITIVE,
    "label_sigma": (lambda v: 0 <= v <= 1000, "must be in [0, 1000] (bins)"),
    "relative_attention_num_buckets": (lambda v: v >= 2, "must be >= 2"),
    "n_tokens": (lambda v: v >= 8, "must be >= 8 (special tokens and a few bins)"),
    "max_trend": _POSITIVE,
    "embedding_init": (lambda v: v in ("fourier", "random"), "must be 'fourier' or 'random'"),
    "target": (lambda v: v != "", "must name a checkpoint folder"),
    "out_dir": (lambda v: v != "", "must name a folder"),
}


def validate(cfg, kind: str) -> None:
    """Check every field of ``cfg`` against its type and range; ``datasets`` becomes a tuple and may not hold held-out data."""
    if isinstance(cfg.datasets, list):
        object.__setattr__(cfg, "datasets", tuple(cfg.datasets))
    for name, hint in _hints(type(cfg)).items():
        value = getattr(cfg, name)
        if not _is_a(value, hint):
            raise ConfigError(kind, name, f"must be {_describe(hint)}, got {value!r}")
        check = RANGES.get(name)
        if check is not None and value is not None and not check[0](value):
            raise ConfigError(kind, name, f"{check[1]}, got {value!r}")
    for name in ("low_limit", "high_limit"):
        value = getattr(cfg, name, 0.0)
        if not math.isfinite(value) or abs(value) > 1e6:
            raise ConfigError(kind, name, f"must be a finite number within +-1e6 (scaled values), got {value!r}")
    synthetic = sum(getattr(cfg, name, 0) for name in ("kernel_synth", "mixup", "seasonal_synth"))
    if not cfg.datasets and synthetic == 0:
        raise ConfigError(
            kind, "datasets", "is empty and no synthetic series are asked for: there is nothing to train on"
        )
    if hasattr(cfg, "low_limit") and cfg.low_limit >= cfg.high_limit:
        raise ConfigError(kind, "low_limit", f"must be below `high_limit` ({cfg.high_limit}), got {cfg.low_limit}")
    # the data loader reads names case-insensitively, so the held-out check must too
    held = [d for d in cfg.datasets if d.strip().lower().startswith(HELD_OUT)]
    if held:
        raise ConfigError(
            kind, "datasets", f"includes held-out evaluation data {held}; remove them (M3, Tourism and ETT stay unseen)"
        )
    from leapcast.data.catalog import list_datasets

    known = set(list_datasets())
    unknown = [d for d in cfg.datasets if d.strip().lower() not in known]
    if unknown:
        allowed = sorted(k for k in known if not k.startswith(HELD_OUT))
        raise ConfigError(kind, "datasets", f"has unknown data sets {unknown}; choose from {allowed}")


@cache
def _hints(cls: type) -> dict[str, object]:
    return typing.get_type_hints(cls)


def _is_a(value: object, hint: object) -> bool:
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if hint == (str | None):
        return value is None or isinstance(value, str)
    if hint == (float | None):
        return value is None or _is_a(value, float)
    if hint == tuple[str, ...]:
        return isinstance(value, tuple) and all(isinstance(v, str) for v in value)
    raise TypeError(f"no check for config fields of type {hint}")  # a new field type needs a line above


def _describe(hint: object) -> str:
    return {
        bool: "true or false",
        int: "an integer",
        float: "a number",
        str: "a string",
        str | None: "a string or null",
        float | None: "a number or null",
        tuple[str, ...]: "a list of data set names",
    }[hint]


def from_file(cls, path: str | Path, overrides: dict):
    """``cls`` from the config file ``path`` with the non-None ``overrides`` applied; a bad value names the file that set it."""
    known = {f.name for f in fields(cls)}
    raw, origin = resolve(path, known)
    for key, value in overrides.items():
        if value is not None:
            if key not in known:
                raise TypeError(f"{cls.__name__} has no field `{key}`")
            raw[key] = value
            origin.pop(key, None)
    kind = "distill" if cls in (DistillConfig, TotoDistillConfig) else "train"
    missing = [f.name for f in fields(cls) if f.name not in raw and f.default is MISSING]
    if missing:
        raise ValueError(f"{path}: {kind} config needs `{missing[0]}` (set it in the file or pass it)")
    try:
        return cls(**raw)
    except ConfigError as err:
        if err.field not in origin:  # an override: the caller's value, not the file's
            raise
        raise ValueError(f"{origin[err.field]}: {err}") from None


def resolve(path: str | Path, known: set[str], _chain: tuple[Path, ...] = ()) -> tuple[dict, dict[str, Path]]:
    """The fields of the config file ``path`` with its ``extends`` chain applied (a child's keys win),
    and for each field the file that set it. Refuses a missing file, a cycle, bad JSON and keys not in ``known``."""
    path = Path(path)
    if path.is_dir():
        raise FileNotFoundError(
            f"config file {path} is a folder; name the JSON config file (e.g. one of leapcast/train/configs)"
        )
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    here = path.resolve()
    if here in _chain:
        cycle = " -> ".join(p.name for p in (*_chain[_chain.index(here) :], here))
        raise ValueError(f"{path}: `extends` makes a cycle ({cycle})")
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: a config is a JSON object of fields, got {type(raw).__name__}")
    unknown = sorted(set(raw) - known - {"extends"})
    if unknown:
        near = difflib.get_close_matches(unknown[0], known, n=1)
        hint = (
            f"did you mean `{near[0]}`?"
            if near
            else f"a config sets some of {', '.join(sorted(known))} (and `extends`)"
        )
        raise ValueError(f"{path}: unknown key `{unknown[0]}`; {hint}")
    if "extends" not in raw:
        return raw, {key: path for key in raw}
    parent_name = raw.pop("extends")
    own = {key: path for key in raw}
    if not isinstance(parent_name, str) or not parent_name:
        raise ValueError(f"{path}: `extends` must name a config file (relative to {path.parent}), got {parent_name!r}")
    parent = path.parent / (parent_name if parent_name.endswith(".json") else parent_name + ".json")
    if not parent.is_file():
        raise FileNotFoundError(f"{path}: `extends` names {parent_name!r}, but {parent} does not exist")
    base, origin = resolve(parent, known, (*_chain, here))
    return {**base, **raw}, {**origin, **own}
