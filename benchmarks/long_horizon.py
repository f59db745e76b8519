"""Seconds per forecast as the horizon grows (docs/limits.md): one series, the checkpoint's samples.

python benchmarks/long_horizon.py --model house-target --horizons 64 1000 10000
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from leapcast.forecaster import Forecaster


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="house-target")
    p.add_argument("--horizons", type=int, nargs="+", default=[64, 1000, 10000])
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    fc = Forecaster.from_pretrained(args.model)
    history = 100 + 10 * np.sin(np.arange(120) / 2)  # 120 values, period ~12.6
    print(
        f"| h | seconds | finite | ({args.model}, 1 series of 120 values, default samples, {args.threads} threads, float32)"
    )
    print("|---|---|---|")
    for h in args.horizons:
        started = time.perf_counter()
        out = fc.predict(history, h, seed=0)
        print(f"| {h} | {time.perf_counter() - started:.1f} | {bool(torch.isfinite(out).all())} |", flush=True)


if __name__ == "__main__":
    main()
