"""leapcast's plain engine against chronos-forecasting's ChronosPipeline, same checkpoint.

Random-weight checkpoints of the official chronos-t5 configurations (speed does
not depend on the weights). For each size and batch, the two run interleaved
in one process (A, B, A, B, ...), and the median of the repeats is reported.
Greedy outputs (top_k=1) are checked to be identical first.

    python benchmarks/engine_vs_reference.py                      # tiny + small, batch 1 and 32
    python benchmarks/engine_vs_reference.py --sizes tiny --batches 1 --repeats 2   # quick
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from datetime import date
from pathlib import Path

import torch

from leapcast import Forecaster
from leapcast.eval.forecasts import official_pipeline
from leapcast.eval.timing import interleaved
from leapcast.models.presets import CHRONOS_T5_SIZES, chronos_t5_config, random_chronos_t5, save_chronos_t5

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["tiny", "small"], choices=list(CHRONOS_T5_SIZES))
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 32])
    parser.add_argument("--horizon", type=int, default=64)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--context", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS / "engine_vs_reference.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            folder = save_chronos_t5(random_chronos_t5(chronos_t5_config(size), seed=0, name=size), Path(tmp) / size)
            ours, ref = Forecaster.from_pretrained(folder), official_pipeline(folder)
            n_params = ours.model.num_parameters()
            for batch in args.batches:
                ctx = torch.randn(batch, args.context, generator=torch.Generator().manual_seed(batch)).cumsum(-1)
                greedy_same = torch.equal(
                    ours.predict(ctx[:2], args.horizon, num_samples=2, top_k=1),
                    ref.predict(ctx[:2], args.horizon, num_samples=2, top_k=1),
                )
                kw = dict(num_samples=args.samples)
                timing = interleaved(
                    lambda: ref.predict(ctx, args.horizon, **kw),
                    lambda: ours.predict(ctx, args.horizon, batch_size=batch, progress=False, **kw),
                    args.repeats,
                )
                row = dict(
                    size=size,
                    params=n_params,
                    batch=batch,
                    horizon=args.horizon,
                    samples=args.samples,
                    context=args.context,
                    threads=args.threads,
                    repeats=args.repeats,
                    leapcast_s=timing.other_median,
                    official_s=timing.base_median,
                    speedup=timing.speedup,
                    greedy_identical=greedy_same,
                )
                rows.append(row)
                print(
                    f"chronos-t5-{size:5s} batch {batch:3d}: leapcast {row['leapcast_s']:.3f}s  official "
                    f"{row['official_s']:.3f}s  speedup x{row['speedup']:.2f}  greedy identical: {greedy_same}",
                    flush=True,
                )
    report = dict(
        benchmark="engine_vs_reference",
        date=str(date.today()),
        torch=torch.__version__,
        machine=f"{platform.machine()} {platform.processor() or ''}".strip(),
        rows=rows,
        command="python " + " ".join(sys.argv),
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    md = [
        "| model (random weights) | params | batch | h | samples | threads | leapcast s | official s | speedup | greedy identical |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        md.append(
            f"| chronos-t5-{r['size']} | {r['params'] / 1e6:.1f}M | {r['batch']} | {r['horizon']} | {r['samples']} | "
            f"{r['threads']} | {r['leapcast_s']:.3f} | {r['official_s']:.3f} | **x{r['speedup']:.2f}** | {r['greedy_identical']} |"
        )
    args.out.with_suffix(".md").write_text("\n".join(md) + "\n")
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
