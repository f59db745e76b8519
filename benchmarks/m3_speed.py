"""Forecasting all of M3: the time each model takes, interleaved in one process, and its ratio to the first.

Every M3 series (3,003: yearly, quarterly, monthly, other) at its official horizon, 20 sample paths, seed 0,
float32, batch 32, the model alone (no seasonal adjustment), ``Forecaster.predict`` as a user calls it. The
models run in alternation, --repeats times (A B A B), on one torch thread count; a model's time is the median
over repeats of its summed time over the four subsets. Accuracy is not scored here (zero_shot.py does).

    flock /tmp/leapcast-bench.lock python benchmarks/m3_speed.py --models house-target house-patch-target
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import date
from pathlib import Path

import torch

from leapcast import Forecaster
from leapcast.eval.backtest import official_window

RESULTS = Path(__file__).parent / "results"
SUBSETS = ("m3-yearly", "m3-quarterly", "m3-monthly", "m3-other")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--models", nargs="+", required=True, help="checkpoint folders or bundled names; the first is the base"
    )
    p.add_argument("--samples", type=int, default=20)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max-series", type=int, default=None, help="the first N series of each subset (a quick run)")
    p.add_argument("--out", type=Path, default=RESULTS / "m3_speed.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    windows = [official_window(name, args.max_series) for name in SUBSETS]
    forecasters = {m: Forecaster.from_pretrained(m, seasonal_adjustment=False) for m in args.models}
    seconds: dict[str, list[dict[str, float]]] = {m: [] for m in args.models}
    for repeat in range(args.repeats):
        for model, fc in forecasters.items():
            per = {}
            for win in windows:
                contexts = [torch.tensor(x, dtype=torch.float32) for x in win.histories]
                t0 = time.perf_counter()
                fc.predict(contexts, win.h, num_samples=args.samples, seed=0, batch_size=32, progress=False)
                per[win.name] = time.perf_counter() - t0
            seconds[model].append(per)
            print(f"repeat {repeat}  {model:40s} {sum(per.values()):7.1f}s", flush=True)
    base = statistics.median(sum(r.values()) for r in seconds[args.models[0]])
    rows = []
    for model in args.models:
        total = statistics.median(sum(r.values()) for r in seconds[model])
        subsets = {name: statistics.median(r[name] for r in seconds[model]) for name in SUBSETS}
        rows.append(dict(model=model, seconds=total, speedup=base / total, subsets=subsets))
        print(f"{model:40s} {total:7.1f}s  x{base / total:.2f} over {args.models[0]}")
    series = sum(len(w.histories) for w in windows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            dict(
                benchmark="m3_speed",
                date=str(date.today()),
                command="python " + " ".join(sys.argv),
                series=series,
                samples=args.samples,
                threads=args.threads,
                dtype="float32",
                repeats=args.repeats,
                rows=rows,
            ),
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
