"""Series per hour of plain decoding on M3-monthly, per tier, in one process.

Every M3-monthly history (1,428 series, 48-126 values), h 18, 20 sample paths, seed 0, the bundled house-target
(or --model): ``Forecaster.forecast`` of the long frame, as a user calls it (validation, decoding, quantiles).
The tiers run in alternation, --repeats times each (A, B, A, B), all on one torch thread count; series per hour
from the median time.

    flock /tmp/leapcast-bench.lock python benchmarks/throughput.py --tiers float32 bfloat16 --batch-sizes 32 128
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from datetime import date
from pathlib import Path

import torch

from leapcast import Forecaster
from leapcast.data import load

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="house-target")
    p.add_argument("--tiers", nargs="*", default=["float32", "bfloat16"])
    p.add_argument("--compile", nargs="*", default=[], help="also these tiers with compile=True ('TIER compiled')")
    p.add_argument("--batch-sizes", nargs="+", type=int, default=[32, 128])
    p.add_argument("--samples", type=int, default=20)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=RESULTS / "throughput.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    data = load("m3-monthly")
    frame, h = data.train, data.horizon
    n = frame["unique_id"].nunique()
    models = {tier: Forecaster.from_pretrained(args.model, dtype=tier) for tier in args.tiers}
    for tier in args.compile:
        models[f"{tier} compiled"] = Forecaster.from_pretrained(args.model, dtype=tier, compile=True)
    runs = [(tier, b) for tier in models for b in args.batch_sizes]
    first: dict[str, float] = {}
    for tier, b in runs:  # untimed: packing, allocator, the first call's lazy work, compiling
        start = time.perf_counter()
        models[tier].forecast(frame.groupby("unique_id").head(60), h=h, num_samples=args.samples, batch_size=b, seed=0)
        first[tier] = first.get(tier, 0.0) + time.perf_counter() - start
        if tier.endswith("compiled"):
            print(f"{tier} batch {b}: untimed first call (compiling) {time.perf_counter() - start:.1f} s", flush=True)
    seconds: dict[tuple[str, int], list[float]] = {run: [] for run in runs}
    for _ in range(args.repeats):
        for tier, b in runs:
            start = time.perf_counter()
            models[tier].forecast(frame, h=h, num_samples=args.samples, batch_size=b, seed=0, progress=False)
            seconds[(tier, b)].append(time.perf_counter() - start)
            print(f"{tier} batch {b}: {seconds[(tier, b)][-1]:.1f} s", flush=True)
    rows = []
    for (tier, b), times in seconds.items():
        s = statistics.median(times)
        rows.append(
            dict(
                tier=tier,
                batch_size=b,
                seconds=s,
                series_per_hour=round(3600 * n / s),
                times=times,
                untimed_first_calls_seconds=first[tier],
            )
        )
    result = dict(
        date=str(date.today()),
        command="python benchmarks/throughput.py " + " ".join(sys.argv[1:]),
        model=args.model,
        series=n,
        h=h,
        samples=args.samples,
        threads=args.threads,
        cpus=os.cpu_count(),
        rows=rows,
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print("| tier | batch_size | s for all series (median) | series per hour |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['tier']} | {r['batch_size']} | {r['seconds']:.1f} | {r['series_per_hour']:,} |")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
