"""leapcast's precision tiers against chronos-forecasting's ChronosPipeline in float32 and bfloat16.

Random-weight checkpoints of the official chronos-t5 configurations (and, optionally, the bundled house-target):
speed does not depend on the weights. For each model and batch, every contender runs once per repeat in one
round-robin (official float32, official bfloat16, leapcast in each tier), so all see the same background load;
the table gives the median over repeats of official-float32 time / contender time. The official pipeline in
bfloat16 is its model cast whole (``ChronosPipeline.from_pretrained(..., dtype=torch.bfloat16)``).

    python benchmarks/tiers_vs_reference.py                                      # small and base, batch 1 and 32
    python benchmarks/tiers_vs_reference.py --sizes tiny --batches 1 --repeats 2 --out /tmp/t.json   # quick
    python benchmarks/tiers_vs_reference.py --sizes small --batches 1 --compile bfloat16 --out FILE   # and compiled
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import torch

from leapcast import Forecaster
from leapcast.eval.forecasts import official_pipeline
from leapcast.models.presets import CHRONOS_T5_SIZES, chronos_t5_config, random_chronos_t5, save_chronos_t5
from leapcast.registry import resolve

RESULTS = Path(__file__).parent / "results"


def contenders(folder: Path, tiers: list[str], batch: int, official: bool, compiled: list[str]) -> dict:
    """label -> a callable(ctx, h, samples) that forecasts."""
    out = {}
    if official:
        for dtype in (torch.float32, torch.bfloat16):
            pipe = official_pipeline(folder, dtype=dtype)
            out[f"official {str(dtype)[6:]}"] = lambda ctx, h, s, pipe=pipe: pipe.predict(ctx, h, num_samples=s)
    for tier, compile in [(t, False) for t in tiers] + [(t, True) for t in compiled]:
        fc = Forecaster.from_pretrained(folder, dtype=tier, compile=compile)
        out[f"leapcast {fc.tier}{' compiled' if compile else ''}"] = lambda ctx, h, s, fc=fc: fc.predict(
            ctx, h, num_samples=s, batch_size=batch, progress=False, seed=0
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["small", "base"], choices=list(CHRONOS_T5_SIZES))
    parser.add_argument("--house-target", action="store_true", help="also the bundled house-target (trained)")
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 32])
    parser.add_argument("--tiers", nargs="+", default=["float32", "bfloat16"])
    parser.add_argument("--horizon", type=int, default=64)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--context", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-official", action="store_true", help="leapcast's tiers only (ratios to the first)")
    parser.add_argument(
        "--compile", nargs="*", default=[], help="also these tiers with compile=True (first call timed apart)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "tiers_vs_reference.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        models = [
            (
                f"chronos-t5-{size}",
                save_chronos_t5(random_chronos_t5(chronos_t5_config(size), seed=0), Path(tmp) / size),
            )
            for size in args.sizes
        ]
        if args.house_target:
            models.append(("house-target", resolve("house-target")))
        for name, folder in models:
            for batch in args.batches:
                runs = contenders(folder, args.tiers, batch, not args.no_official, args.compile)
                ctx = torch.randn(batch, args.context, generator=torch.Generator().manual_seed(batch)).cumsum(-1)
                first: dict[str, float] = {}
                for label, fn in runs.items():  # untimed: one-off costs (allocator, packing, lazy imports, compiling)
                    start = time.perf_counter()
                    if not label.endswith("compiled"):
                        fn(ctx[:1], 2, 2)
                        continue
                    fn(ctx, args.horizon, args.samples)  # compiled for the timed calls' shapes
                    first[label] = time.perf_counter() - start
                    print(f"{name:18s} batch {batch:3d} {label:18s} first call (compiling) {first[label]:.1f}s")
                seconds: dict[str, list[float]] = {label: [] for label in runs}
                for _ in range(args.repeats):
                    for label, fn in runs.items():
                        start = time.perf_counter()
                        fn(ctx, args.horizon, args.samples)
                        seconds[label].append(time.perf_counter() - start)
                base = seconds[next(iter(runs))]
                for label, times in seconds.items():
                    row = dict(
                        model=name,
                        contender=label,
                        batch=batch,
                        horizon=args.horizon,
                        samples=args.samples,
                        context=args.context,
                        threads=args.threads,
                        repeats=args.repeats,
                        seconds=statistics.median(times),
                        first_call_seconds=first.get(label),
                        speedup=statistics.median(b / t for b, t in zip(base, times)),
                    )
                    rows.append(row)
                    print(f"{name:18s} batch {batch:3d} {label:18s} {row['seconds']:8.3f}s  x{row['speedup']:.2f}")
    report = dict(
        benchmark="tiers_vs_reference",
        date=str(date.today()),
        torch=torch.__version__,
        machine=f"{platform.machine()} {platform.processor() or ''}".strip(),
        rows=rows,
        command="python " + " ".join(sys.argv),
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    md = [
        f"`{report['command']}` ({report['date']}, torch {report['torch']}; speedup: median over repeats of "
        "the first contender's time / this one's, all interleaved)",
        "",
        "| model | batch | h | samples | threads | contender | s | speedup | first call s (compiling) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        first = "" if r.get("first_call_seconds") is None else f"{r['first_call_seconds']:.1f}"
        md.append(
            f"| {r['model']} | {r['batch']} | {r['horizon']} | {r['samples']} | {r['threads']} | {r['contender']} | "
            f"{r['seconds']:.3f} | x{r['speedup']:.2f} | {first} |"
        )
    args.out.with_suffix(".md").write_text("\n".join(md) + "\n")
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
