"""Where a model's MASE is won or lost, by how long the histories are.

A diagnostic, not a choice: the official test window of each --datasets set, the model alone (no seasonal
adjustment, its default sample paths, float32), beside statsforecast's SeasonalNaive and AutoETS. Series are
grouped by history length (--edges); per group: the series count, each forecaster's MASE (mean over the group's
series of MAE / the in-sample seasonal-naive MAE, as zero_shot.py scores) and the median over the group of its
mean signed error in those scales (negative: forecasts below the actuals).

    python benchmarks/by_length.py --model house-patch-target --datasets tourism-yearly tourism-quarterly
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from pathlib import Path

import numpy as np
import torch

from leapcast import Forecaster
from leapcast.eval import metrics as M
from leapcast.eval.backtest import official_window
from leapcast.eval.forecasts import leapcast_forecast, stats_forecast

RESULTS = Path(__file__).parent / "results"
BASELINES = ("SeasonalNaive", "AutoETS")


def groups(lengths: np.ndarray, edges: list[int]) -> list[tuple[str, np.ndarray]]:
    """lengths [N] -> (label, mask [N]) per half-open range between consecutive edges, empty ranges left out."""
    bounds = [0, *edges, np.inf]
    out = []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        mask = (lengths >= lo) & (lengths < hi)
        if mask.any():
            out.append((f"{lo}-{int(hi) - 1}" if np.isfinite(hi) else f"{lo}+", mask))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="house-patch-target")
    p.add_argument("--datasets", nargs="+", default=["tourism-yearly", "tourism-quarterly", "tourism-monthly"])
    p.add_argument("--edges", nargs="+", type=int, default=[20, 30, 60, 120], help="history lengths between groups")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=RESULTS / "by_length.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    fc = Forecaster.from_pretrained(args.model, seasonal_adjustment=False)
    samples = fc.sampling_config().num_samples
    rows = []
    for name in args.datasets:
        win = official_window(name)
        points = {args.model: leapcast_forecast(fc, win.histories, win.h, samples, args.seed)[0]}
        for baseline in BASELINES:
            points[baseline] = stats_forecast(baseline, win.histories, win.h, win.season_length)[0]
        scale = M.seasonal_scale(win.histories, win.season_length)[:, None]  # [N, 1]
        scale = np.where(scale > 0, scale, np.nan)  # a zero scale leaves its series out, as zero_shot.py does
        lengths = np.array([len(x) for x in win.histories])
        for label, mask in [("all", np.ones(len(lengths), bool)), *groups(lengths, args.edges)]:
            row = dict(dataset=name, lengths=label, series=int(mask.sum()))
            for who, point in points.items():
                err = (point - win.actuals) / scale  # [N, h] in each series' scale
                row[f"{who}/mase"] = float(np.nanmean(np.abs(err).mean(1)[mask]))
                row[f"{who}/bias"] = float(np.nanmedian(err.mean(1)[mask]))
            rows.append(row)
            print(
                f"{name:18s} {label:>7s} {row['series']:4d} series  "
                + "  ".join(f"{w} {row[f'{w}/mase']:.3f} ({row[f'{w}/bias']:+.2f})" for w in points),
                flush=True,
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = dict(benchmark="by_length", date=str(date.today()), command="python " + " ".join(sys.argv), rows=rows)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
