"""Pretrain a Chronos-T5-architecture model from scratch on CPU.

Chronos recipe, small: series from offline data sets (held-out ones
excluded), KernelSynth and TSMixup series; random crops of context plus
horizon; the context is mean-scaled and both parts tokenized with its scale;
cross-entropy on the horizon tokens (EOS appended, NaN labels ignored).
With ``label_sigma > 0`` the target of a bin token is a Gaussian over the
neighbouring bins (HL-Gauss, Imani & White 2018; Farebrother et al., arXiv
2403.03950): the bins are ordered, and spreading the label over neighbours
teaches that order from far fewer examples than one-hot labels do.
Checkpoints (config.json + model.safetensors + optimizer state) land in
``out_dir/checkpoint-<step>`` and ``out_dir/last``; a run resumes from ``last``.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from leapcast.models.chronos_t5 import ChronosT5
from leapcast.models.chronos_tokenizer import ChronosTokenizer, ChronosTokenizerConfig
from leapcast.models.loading import load_model
from leapcast.models.presets import save_chronos_t5
from leapcast.models.t5 import T5, T5Config, relative_position_bucket
from leapcast.seasonal import seasonally_adjusted

HELD_OUT = ("m3", "tourism", "etth", "fpp3-tourism")  # zero-shot evaluation data never trained on


@dataclass(frozen=True)
class TrainConfig:
    out_dir: str
    d_model: int = 128
    d_kv: int = 32
    d_ff: int = 512
    num_layers: int = 2
    num_heads: int = 4
    relative_attention_num_buckets: int = 32  # T5's 32 are exact only to 7 steps apart in the encoder (see grow.rebucket)
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
    position_heads: bool = True  # start two encoder heads as previous-/next-token heads (see neighbour_heads)
    init_from: str | None = None  # start a fresh run from this checkpoint instead of random weights
    stack: int = 1  # with init_from: stack its layers this many times (progressive stacking, train/grow.py)
    datasets: tuple[str, ...] = ("m1-yearly", "m1-quarterly", "m1-monthly", "fpp3-pbs", "fpp3-aus-retail", "fpp3-us-employment", "fpp3-aus-livestock", "fpp3-aus-production", "fpp3-vic-elec", "air-passengers", "sunspots", "nile", "co2")
    kernel_synth: int = 2000
    kernel_synth_length: int = 512
    mixup: int = 2000
    seasonal_synth: int = 0  # seasonal structural series (data/structural.py), kernel_synth_length long
    seasonal_adjustment: bool = False  # train on real series seasonally adjusted as the forecaster adjusts them (leapcast.seasonal)
    synthetic_fraction: float = 0.5
    trend_augmentation: float = 0.0  # share of crops given a random growth or decline (see with_trend)
    max_trend: float = 0.12  # largest growth rate per step of with_trend
    min_trend_damping: float = 1.0  # with_trend's horizon damping phi ~ U(this, 1); 1: the trend goes on undamped
    save_every: int = 500
    seed: int = 0
    threads: int = 2
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("d_model", "d_kv", "d_ff", "num_layers", "num_heads", "batch_size", "steps", "context_length", "prediction_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"train config `{name}` must be >= 1, got {getattr(self, name)}")
        held = [d for d in self.datasets if d.startswith(HELD_OUT)]
        if held:
            raise ValueError(f"train config `datasets` includes held-out evaluation data {held}; remove them (M3, Tourism and ETT stay unseen)")

    @classmethod
    def from_file(cls, path: str | Path, **overrides) -> "TrainConfig":
        return cls(**read_config(path, overrides))


def read_config(path: str | Path, overrides: dict) -> dict:
    """A JSON config with the non-None ``overrides`` applied; lists of data sets become tuples."""
    raw = json.loads(Path(path).read_text())
    raw.update({k: v for k, v in overrides.items() if v is not None})
    if "datasets" in raw:
        raw["datasets"] = tuple(raw["datasets"])
    return raw


def series_pool(cfg: TrainConfig) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(real series, synthetic series), each a list of float64 arrays."""
    from leapcast.data import kernel_synth, load, mixup_arrays, seasonal_synth

    real, raw = [], []  # raw: unadjusted, for TSMixup
    for name in cfg.datasets:
        ds = load(name)
        for _, g in ds.full().groupby("unique_id"):
            y = g["y"].to_numpy(dtype=np.float64)
            if np.isfinite(y).sum() >= cfg.min_context + 1:
                raw.append(y)
                # whole-history indices: crops come from anywhere in the series (the bundled models were trained so)
                real.append(seasonally_adjusted(y, ds.season_length, seasons=None) if cfg.seasonal_adjustment else y)
    synthetic = []
    if cfg.kernel_synth:
        ks = kernel_synth(cfg.kernel_synth, cfg.kernel_synth_length, seed=cfg.seed)
        synthetic += [g["y"].to_numpy() for _, g in ks.groupby("unique_id")]
    if cfg.seasonal_synth:
        ss = seasonal_synth(cfg.seasonal_synth, cfg.kernel_synth_length, seed=cfg.seed)
        synthetic += [g["y"].to_numpy() for _, g in ss.groupby("unique_id")]
    if cfg.mixup and raw:
        synthetic += [m.values for m in mixup_arrays(raw, cfg.mixup, (cfg.min_context + cfg.prediction_length, cfg.context_length + cfg.prediction_length), seed=cfg.seed)]
    return real, synthetic


class CropSampler:
    """Random (context, horizon) crops, tokenized as Chronos trains: context [B, C], labels [B, H+1]."""

    def __init__(self, cfg: TrainConfig, real: list[np.ndarray], synthetic: list[np.ndarray]) -> None:
        self.cfg = cfg
        self.real, self.synthetic = real, synthetic
        self.rng = np.random.default_rng(cfg.seed)
        self.tokenizer = ChronosTokenizer(tokenizer_config(cfg))

    def batch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        c, h = self.cfg.context_length, self.cfg.prediction_length
        ctx = np.full((self.cfg.batch_size, c), np.nan)
        fut = np.full((self.cfg.batch_size, h), np.nan)
        for i in range(self.cfg.batch_size):
            pool = self.synthetic if (self.synthetic and (not self.real or self.rng.random() < self.cfg.synthetic_fraction)) else self.real
            y = pool[self.rng.integers(len(pool))]
            split = self.rng.integers(self.cfg.min_context, len(y)) if len(y) > self.cfg.min_context else len(y) - 1
            past, future = y[max(0, split - c) : split], y[split : split + h]
            if self.rng.random() < self.cfg.trend_augmentation:
                past, future = with_trend(past, future, self.rng, self.cfg.max_trend, self.cfg.min_trend_damping)
            ctx[i, c - len(past) :] = past
            fut[i, : len(future)] = future
        tok = self.tokenizer.tokenize(torch.from_numpy(ctx).float())
        special = self.tokenizer.config
        scaled = torch.from_numpy(fut).float() / tok.scale[:, None]  # the context's scale, as Chronos trains
        label_tokens = torch.bucketize(scaled, self.tokenizer.boundaries, right=True) + special.n_special_tokens
        label_tokens = label_tokens.clamp(0, self.cfg.n_tokens - 1)
        label_tokens[torch.isnan(scaled)] = -100  # ignored by the loss
        eos = torch.full((self.cfg.batch_size, 1), special.eos_token_id)
        return tok.tokens, tok.mask, torch.cat([label_tokens, eos], dim=1)


def with_trend(past: np.ndarray, future: np.ndarray, rng: np.random.Generator, max_rate: float,
               min_damping: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """A crop with a steady growth (or decline) laid over its context, going on (damped) into the horizon.

    Mean scaling divides by the context's mean |y|, so a context that grew
    10% a step ends near 5 (52 steps) or 10 (100 steps) times its scale; real
    training series rarely get there, and a model that never saw it pulls its
    forecast back toward the mean. The rate per step is log-uniform in
    [max_rate / 40, max_rate], growing four times in five. In the horizon the
    rate shrinks by phi ~ U(min_damping, 1) a step (damped trend: trends that
    go on for ever are rarer than trends that fade). Positive crops are
    multiplied by exp(trend), others get trend * mean|y| added. The horizon
    stops where the trend has grown e^2 past the last context value, so the
    labels stay inside the bins.
    """
    rate = float(np.exp(rng.uniform(np.log(max_rate / 40), np.log(max_rate)))) * (1.0 if rng.random() < 0.8 else -1.0)
    phi = rng.uniform(min_damping, 1.0) if min_damping < 1.0 else 1.0
    ahead = rate * np.cumsum(phi ** np.arange(1, len(future) + 1))  # the trend at horizon step j: rate * sum_{k<=j+1} phi^k
    keep = max(1, int(np.sum(np.abs(ahead) <= 2.0)))
    trend = np.concatenate([rate * np.arange(-len(past) + 1, 1, dtype=np.float64), ahead[:keep]])
    crop = np.concatenate([past, future[:keep]])
    if not np.isfinite(crop).any():
        return past, future
    if np.nanmin(crop) > 0:
        crop = crop * np.exp(trend)
    else:
        crop = crop + np.nanmean(np.abs(crop)) * trend
    return crop[: len(past)], crop[len(past) :]


def tokenizer_config(cfg: TrainConfig) -> ChronosTokenizerConfig:
    return ChronosTokenizerConfig(n_tokens=cfg.n_tokens, low_limit=cfg.low_limit, high_limit=cfg.high_limit,
                                  context_length=cfg.context_length, prediction_length=cfg.prediction_length)


def build_model(cfg: TrainConfig) -> ChronosT5:
    from leapcast.models.presets import random_chronos_t5

    if cfg.embedding_init not in ("fourier", "random"):
        raise ValueError(f"train config `embedding_init` must be 'fourier' or 'random', got {cfg.embedding_init!r}")
    t5 = T5Config(vocab_size=cfg.n_tokens, d_model=cfg.d_model, d_kv=cfg.d_kv, d_ff=cfg.d_ff, num_layers=cfg.num_layers, num_decoder_layers=cfg.num_layers, num_heads=cfg.num_heads,
                  relative_attention_num_buckets=cfg.relative_attention_num_buckets)
    chronos = tokenizer_config(cfg)
    model = random_chronos_t5(t5, chronos, seed=cfg.seed, name=Path(cfg.out_dir).name)
    return starting_point(model, cfg.embedding_init == "fourier", cfg.position_heads, cfg.seed)


def starting_point(model: ChronosT5, fourier: bool = True, position_heads: bool = True, seed: int = 0) -> ChronosT5:
    """Apply the initialisations that let a small CPU budget learn (in place; returns the model)."""
    if fourier:
        with torch.no_grad():
            special = model.chronos.n_special_tokens
            model.net.embed.weight[special:] = fourier_bin_embeddings(model.tokenizer.centers, model.net.cfg.d_model, seed)
    if position_heads:
        neighbour_heads(model.net)
    return model


def neighbour_heads(net: T5, strength: float = 8.0) -> None:
    """Start encoder head 0 attending to the previous token and head 1 to the next one.

    Mean scaling puts every context's average at 1, so a decoder that attends
    evenly over the encoder learns nothing about where the series is now; it
    must find the last observations, and T5 has only relative positions to
    find them with. With a previous-token head the EOS token carries the last
    value, and with a next-token head the last values know they sit next to
    EOS: from the first step the decoder has content to find the end of the
    context by. Training is free to change both (relative-bias init only).
    """
    cfg = net.cfg
    if cfg.num_heads < 2:
        return
    rel = torch.tensor([-1, 1])
    buckets = relative_position_bucket(rel, True, cfg.relative_attention_num_buckets, cfg.relative_attention_max_distance)
    with torch.no_grad():
        net.enc_bias.weight[:, :2] = 0.0
        net.enc_bias.weight[buckets[0], 0] = strength
        net.enc_bias.weight[buckets[1], 1] = strength


def fourier_bin_embeddings(centers: torch.Tensor, dim: int, seed: int) -> torch.Tensor:
    """[len(centers) + 1, dim] embeddings of the bin tokens, smooth in the bin's value, entries of variance 1.

    Random Fourier features, frequencies log-uniform over 0.5..100 per unit of
    mean-scaled value: neighbouring bins start similar and far bins nearly
    orthogonal, so the order of the bins is there from the first step rather
    than learned from scratch (an initialisation only; the architecture is T5's).
    The first bin token (below every boundary, never produced) reuses the first centre.
    """
    g = torch.Generator().manual_seed(seed + 7)
    freq = torch.exp(torch.empty(dim).uniform_(math.log(0.5), math.log(100.0), generator=g))
    phase = torch.empty(dim).uniform_(0, 2 * math.pi, generator=g)
    values = torch.cat([centers[:1], centers]).float()
    return math.sqrt(2.0) * torch.cos(values[:, None] * freq + phase)


def initial_model(cfg: TrainConfig) -> ChronosT5:
    """Random weights, or ``init_from`` grown ``stack`` times, re-binned to the config's
    ``n_tokens``/``low_limit``/``high_limit`` and re-bucketed to its ``relative_attention_num_buckets``
    where they differ (its other architecture fields are ignored)."""
    if cfg.init_from is None:
        return build_model(cfg)
    from leapcast.train.grow import rebin, rebucket, stack_layers

    grown = stack_layers(load_model(cfg.init_from), cfg.stack)
    return rebucket(rebin(grown, cfg.n_tokens, cfg.low_limit, cfg.high_limit), cfg.relative_attention_num_buckets)


def loss_on(net: T5, tokens: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor, sigma: float = 0.0, first_bin: int = 2) -> torch.Tensor:
    """Cross-entropy of the horizon tokens, teacher forced: decoder inputs = [start, labels[:-1]].

    sigma > 0: bin tokens (>= first_bin) get Gaussian soft targets of that width in bins.
    """
    inputs = torch.cat([torch.zeros_like(labels[:, :1]), labels[:, :-1].clamp(min=0)], dim=1)
    logits = net(tokens, mask, inputs)  # [B, H+1, V]
    if sigma <= 0:
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)
    return soft_label_loss(logits, labels, sigma, first_bin)


def soft_label_loss(logits: torch.Tensor, labels: torch.Tensor, sigma: float, first_bin: int) -> torch.Tensor:
    """Mean cross-entropy against Gaussian-smoothed targets; logits [B, T, V], labels [B, T] (-100 ignored)."""
    vocab = logits.shape[-1]
    valid = labels >= 0
    logp = F.log_softmax(logits.float(), dim=-1)  # [B, T, V]
    width = max(1, math.ceil(3 * sigma))
    offsets = torch.arange(-width, width + 1)  # [W]
    centre = labels.clamp(min=0)[..., None]
    idx = centre + offsets  # [B, T, W]
    is_bin = (centre >= first_bin)
    inside = (idx >= first_bin) & (idx < vocab) & is_bin
    weight = torch.exp(-0.5 * (offsets / sigma) ** 2) * inside
    weight = torch.where(is_bin, weight, (offsets == 0).to(weight.dtype).expand_as(weight))  # special tokens: one-hot
    weight = weight / weight.sum(-1, keepdim=True)
    picked = logp.gather(-1, idx.clamp(0, vocab - 1))  # [B, T, W]
    return -(weight * picked).sum(-1)[valid].mean()


def train(cfg: TrainConfig, progress: bool = True) -> Path:
    """Run (or resume) pretraining; returns the folder of the last checkpoint."""
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "train_config.json").write_text(json.dumps(asdict(cfg), indent=2) + "\n")
    last = out / "last"
    model = load_model(last) if (last / "config.json").is_file() else initial_model(cfg)
    net = model.net.train()
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    step, log = 0, []
    if (last / "trainer_state.pt").is_file():
        state = torch.load(last / "trainer_state.pt", weights_only=True)
        opt.load_state_dict(state["optimizer"])
        step, log = int(state["step"]), json.loads((last / "log.json").read_text())
    real, synthetic = series_pool(cfg)
    sampler = CropSampler(cfg, real, synthetic)
    sampler.rng = np.random.default_rng([cfg.seed, step])  # a resumed run draws fresh crops
    schedule = lambda s: min(1.0, (s + 1) / cfg.warmup) * 0.5 * (1 + math.cos(math.pi * min(s, cfg.steps) / cfg.steps))
    bar = tqdm(total=cfg.steps, initial=step, desc="pretrain", disable=not progress)
    started = time.perf_counter()
    while step < cfg.steps:
        for group in opt.param_groups:
            group["lr"] = cfg.lr * schedule(step)
        loss = loss_on(net, *sampler.batch(), sigma=cfg.label_sigma, first_bin=sampler.tokenizer.config.n_special_tokens)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        step += 1
        log.append({"step": step, "loss": loss.item(), "lr": opt.param_groups[0]["lr"]})
        bar.set_postfix(loss=f"{log[-1]['loss']:.3f}")
        bar.update(1)
        if step % cfg.save_every == 0 or step == cfg.steps:
            _save(model, opt, step, log, out, time.perf_counter() - started, pipeline_options(cfg))
    bar.close()
    return last


def pipeline_options(cfg) -> dict:
    """What a forecaster must do around a model trained with ``cfg`` (config.json's ``leapcast`` block)."""
    return {"seasonal_adjustment": True} if cfg.seasonal_adjustment else {}


def _save(model: ChronosT5, opt, step: int, log: list, out: Path, seconds: float, options: dict) -> None:
    net = model.net.eval()
    for folder in (out / f"checkpoint-{step}", out / "last"):
        save_chronos_t5(model, folder, options)
        torch.save({"optimizer": opt.state_dict(), "step": step}, folder / "trainer_state.pt")
        (folder / "log.json").write_text(json.dumps(log) + "\n")
    (out / "last" / "wall_seconds.txt").write_text(f"{seconds:.0f}\n")
    net.train()
