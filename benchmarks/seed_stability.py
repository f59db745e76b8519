"""Seed stability: how much one series' forecast error moves from one seed to the next.

M3-monthly's official window (1,428 series, h 18), the model alone (no seasonal adjustment), float32. For each
--samples value, --seeds seeds; per series, MASE of the median forecast under each seed, and its spread
max / min over the seeds (series with a zero MASE under some seed are left out). Reported: the median spread over
series, the mean MASE, and the seconds one forecast of the data set takes at that sample count.

    python benchmarks/seed_stability.py --models house-target house-patch-target --samples 20 50 100
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
from leapcast.eval import metrics as M
from leapcast.eval.backtest import official_window
from leapcast.eval.forecasts import leapcast_forecast

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", required=True)
    p.add_argument("--dataset", default="m3-monthly")
    p.add_argument("--samples", nargs="+", type=int, default=[20, 50, 100])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max-series", type=int, default=None)
    p.add_argument("--out", type=Path, default=RESULTS / "seed_stability.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    win = official_window(args.dataset, args.max_series)
    scale = M.seasonal_scale(win.histories, win.season_length)  # [N]
    rows = []
    for model in args.models:
        fc = Forecaster.from_pretrained(model, seasonal_adjustment=False)
        for samples in args.samples:
            per_seed, seconds = [], []
            for seed in args.seeds:
                t0 = time.perf_counter()
                point, _, _ = leapcast_forecast(fc, win.histories, win.h, samples, seed)
                seconds.append(time.perf_counter() - t0)
                per_seed.append(np.mean(np.abs(win.actuals - point), axis=1) / scale)  # [N]
            mase = np.stack(per_seed)  # [seeds, N]
            usable = (scale > 0) & (mase.min(axis=0) > 0)
            spread = mase[:, usable].max(axis=0) / mase[:, usable].min(axis=0)
            rows.append(
                dict(
                    model=model,
                    samples=samples,
                    median_spread=float(np.median(spread)),
                    mase=float(mase[:, usable].mean()),
                    seconds=statistics.median(seconds),
                    series=int(usable.sum()),
                )
            )
            r = rows[-1]
            print(
                f"{model:36s} samples {samples:4d}  median spread {r['median_spread']:.3f}  MASE {r['mase']:.3f}  "
                f"{r['seconds']:.1f}s per forecast",
                flush=True,
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            dict(
                benchmark="seed_stability",
                date=str(date.today()),
                command="python " + " ".join(sys.argv),
                dataset=args.dataset,
                seeds=args.seeds,
                rows=rows,
            ),
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
