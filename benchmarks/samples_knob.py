"""Sample paths as a knob: what more of them buy (steadier quantiles) and what they cost (time), per tier.

For each number of sample paths S and each tier: the time to forecast a batch of M3-monthly series (every
(S, tier) timed in one round-robin per repeat, so all see the same load), and the seed-to-seed standard
error of every reported quantile: the standard deviation over ``--seeds`` seeds of the quantile, divided by
the series' context scale (mean absolute value), median over series and steps. Monte Carlo error falls as
1 / sqrt(S); the table shows where it sits today.

    python benchmarks/samples_knob.py                        # house-target, 32 series, S = 20 / 100 / 256
    python benchmarks/samples_knob.py --series 8 --seeds 3 --samples 20 100 --repeats 1 --out /tmp/k.json  # quick
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch

from leapcast import Forecaster
from leapcast.data.competitions import load_competition
from leapcast.forecaster import DEFAULT_QUANTILES

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="house-target")
    parser.add_argument("--tiers", nargs="+", default=["float32", "bfloat16"])
    parser.add_argument("--samples", nargs="+", type=int, default=[20, 100, 256])
    parser.add_argument("--series", type=int, default=32)
    parser.add_argument("--h", type=int, default=18)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS / "samples_knob.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    train = load_competition("m3-monthly").train
    groups = [g["y"].to_numpy(float) for _, g in train.groupby("unique_id", sort=True)][: args.series]
    scale = np.array([np.abs(g).mean() for g in groups])[:, None, None]  # [N, 1, 1]
    levels = list(DEFAULT_QUANTILES)
    forecasters = {tier: Forecaster.from_pretrained(args.model, dtype=tier) for tier in args.tiers}
    cells = [(s, tier) for s in args.samples for tier in args.tiers]

    def forecast(s: int, tier: str, seed: int) -> torch.Tensor:
        fc = forecasters[tier]
        return fc.predict_quantiles(
            groups, args.h, quantile_levels=levels, num_samples=s, seed=seed, batch_size=len(groups), progress=False
        )[0]

    for s, tier in cells:  # untimed: one-off costs
        forecast(s, tier, 0)
    seconds: dict[tuple[int, str], list[float]] = {cell: [] for cell in cells}
    for _ in range(args.repeats):
        for cell in cells:
            start = time.perf_counter()
            forecast(*cell, 0)
            seconds[cell].append(time.perf_counter() - start)
    rows = []
    for s, tier in cells:
        q = np.stack([forecast(s, tier, seed).numpy() for seed in range(args.seeds)])  # [seeds, N, h, Q]
        se = q.std(axis=0, ddof=1) / scale  # [N, h, Q]
        row = dict(
            tier=tier,
            samples=s,
            series=len(groups),
            h=args.h,
            threads=args.threads,
            seconds=statistics.median(seconds[(s, tier)]),
            relative_se={f"q{lv:g}": float(np.median(se[..., i])) for i, lv in enumerate(levels)},
        )
        rows.append(row)
        print(json.dumps(row), flush=True)
    report = dict(date=str(date.today()), torch=torch.__version__, rows=rows, command="python " + " ".join(sys.argv))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    _plot(rows, args.out.with_suffix(".png"))
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")


def _plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for tier in sorted({r["tier"] for r in rows}):
        mine = [r for r in rows if r["tier"] == tier]
        s = [r["samples"] for r in mine]
        left.plot(s, [r["seconds"] for r in mine], marker="o", label=tier)
        right.plot(s, [r["relative_se"]["q0.9"] for r in mine], marker="o", label=f"{tier}, q0.9")
        right.plot(s, [r["relative_se"]["q0.5"] for r in mine], marker="s", linestyle="--", label=f"{tier}, q0.5")
    left.set(xlabel="sample paths", ylabel="seconds per forecast", title="cost")
    right.set(xlabel="sample paths", ylabel="seed-to-seed SE / context scale", title="what more paths buy")
    right.set_yscale("log"), right.set_xscale("log"), left.set_xscale("log")
    for ax in (left, right):
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
