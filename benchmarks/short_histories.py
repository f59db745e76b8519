"""How a patch model's sample paths behave on very short histories: the share of drawn values that sit on the clip
of drawn values (``leapcast.clip_scales``), by history length.

The first --series M3-yearly histories (test data: this chooses nothing about the model), each cut to its last n
values for n = 1..--longest, forecast h 6 with the model's default paths; per n the median over series of the
share of a series' drawn values equal to its lowest or highest draw (a clip bound when the clip binds; about
2 / (paths x h) when it does not). It sets ``leapcast.min_context``, below which a forecast warns.

    python benchmarks/short_histories.py --model house-patch-target --out benchmarks/results/short_histories.json
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from datetime import date
from pathlib import Path

import numpy as np
import torch

from leapcast import Forecaster
from leapcast.data import load

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="house-patch-target")
    parser.add_argument("--series", type=int, default=60)
    parser.add_argument("--longest", type=int, default=12)
    parser.add_argument("--h", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS / "short_histories.json")
    args = parser.parse_args()
    command = "python " + " ".join(sys.argv)
    torch.set_num_threads(args.threads)
    fc = Forecaster.from_pretrained(args.model)
    histories = [g["y"].to_numpy() for _, g in load("m3-yearly").train.groupby("unique_id", sort=True)]
    histories = histories[: args.series]
    rows = []
    for n in range(1, args.longest + 1):
        cut = [torch.tensor(y[-n:], dtype=torch.float64) for y in histories]
        with warnings.catch_warnings():  # the short-history warning is what this measures
            warnings.simplefilter("ignore")
            paths = fc.predict(cut, args.h, seed=args.seed, progress=False).numpy()  # [N, S, h]
        at_bounds = [float(np.mean((p == p.min()) | (p == p.max()))) for p in paths]
        rows.append(dict(values=n, median_share_at_bounds=float(np.median(at_bounds)), mean=float(np.mean(at_bounds))))
        print(f"{n:3d} values: median share of draws at a bound {rows[-1]['median_share_at_bounds']:.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            dict(date=str(date.today()), command=command, model=args.model, series=args.series, h=args.h, rows=rows),
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
