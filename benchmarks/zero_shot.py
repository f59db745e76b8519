"""Zero-shot accuracy on held-out data: M3, Tourism (official test windows) and ETTh1/ETTh2.

Models: leapcast checkpoints (folders or bundled names) and statsforecast's
SeasonalNaive, AutoETS and AutoTheta, run in the same script on the same
windows. M3/Tourism: MASE (median forecast) and WQL over quantile levels
0.1..0.9, per data set, and aggregated as in the Chronos paper: geometric
mean over data sets of the ratio to SeasonalNaive. ETT: OT channel,
z-scored with the training span's statistics, non-overlapping windows of h
over the test span (12/4/4-month split), MSE and MAE of the median.

    python benchmarks/zero_shot.py --models runs/house-target/last --max-series 200   # quick
    python benchmarks/zero_shot.py --models house-target house-draft                  # full
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from leapcast import Forecaster
from leapcast.data import ett_split, ett_stats, load
from leapcast.eval import metrics as M

RESULTS = Path(__file__).parent / "results"
LEVELS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
COMPETITIONS = ["m3-yearly", "m3-quarterly", "m3-monthly", "m3-other", "tourism-yearly", "tourism-quarterly", "tourism-monthly"]


def windows(name: str, max_series: int | None):
    """(histories list, actuals [N, h], season, h) for a competition data set's official test window."""
    ds = load(name)
    ids = sorted(ds.train["unique_id"].unique())[:max_series]
    train = {k: g["y"].to_numpy(float) for k, g in ds.train.groupby("unique_id")}
    test = {k: g["y"].to_numpy(float) for k, g in ds.test.groupby("unique_id")}
    return [train[i] for i in ids], np.stack([test[i] for i in ids]), ds.season_length, ds.horizon


def leapcast_forecast(fc: Forecaster, histories, h: int, samples: int, seed: int):
    """-> median [N, h], quantiles [N, h, Q], samples [N, S, h]."""
    s = fc.predict([torch.tensor(x, dtype=torch.float32) for x in histories], h, num_samples=samples, seed=seed, progress=False).double().numpy()
    return np.median(s, axis=1), np.quantile(s, LEVELS, axis=1).transpose(1, 2, 0), s


def stats_forecast(model: str, histories, h: int, season: int):
    """statsforecast baseline -> median [N, h], quantiles [N, h, Q] (from its prediction intervals)."""
    from statsforecast import StatsForecast
    from statsforecast.models import AutoETS, AutoTheta, SeasonalNaive

    make = {"SeasonalNaive": lambda: SeasonalNaive(season_length=season), "AutoETS": lambda: AutoETS(season_length=season),
            "AutoTheta": lambda: AutoTheta(season_length=season)}[model]
    df = pd.concat([pd.DataFrame({"unique_id": i, "ds": np.arange(len(x)), "y": x}) for i, x in enumerate(histories)])
    levels = sorted({round(abs(1 - 2 * q) * 100) for q in LEVELS if q != 0.5})
    sf = StatsForecast(models=[make()], freq=1, n_jobs=1)
    out = sf.forecast(df=df, h=h, level=levels).sort_values(["unique_id", "ds"])
    col = out.columns[2]
    point = out[col].to_numpy().reshape(len(histories), h)
    qs = []
    for q in LEVELS:
        if q == 0.5:
            qs.append(point)
        else:
            lv = round(abs(1 - 2 * q) * 100)
            side = "lo" if q < 0.5 else "hi"
            qs.append(out[f"{col}-{side}-{lv}"].to_numpy().reshape(len(histories), h))
    return point, np.stack(qs, axis=-1)


def ett_windows(name: str, h: int):
    """(contexts list, actuals [W, h]) in z-scored units: non-overlapping windows over the test span."""
    ds = load(name)
    y = ds.train.sort_values("ds")["y"].to_numpy(float) if ds.test is None else ds.full().sort_values("ds")["y"].to_numpy(float)
    train_end, val_end, test_end = ett_split(name)
    stats = ett_stats(name)
    z = (y - float(stats["mean"].iloc[0])) / float(stats["std"].iloc[0])
    starts = range(val_end, test_end - h + 1, h)
    return [z[:s] for s in starts], np.stack([z[s : s + h] for s in starts])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=[])
    p.add_argument("--baselines", nargs="+", default=["SeasonalNaive", "AutoETS", "AutoTheta"])
    p.add_argument("--datasets", nargs="+", default=COMPETITIONS)
    p.add_argument("--ett", nargs="*", default=["etth1", "etth2"])
    p.add_argument("--ett-horizons", nargs="+", type=int, default=[96, 336])
    p.add_argument("--max-series", type=int, default=None)
    p.add_argument("--samples", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=RESULTS / "zero_shot.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    forecasters = {Path(m).name if Path(m).name != "last" else Path(m).parent.name: Forecaster.from_pretrained(m) for m in args.models}
    rows = []
    for name in args.datasets:
        histories, actual, season, h = windows(name, args.max_series)
        for model in list(forecasters) + args.baselines:
            t0 = time.perf_counter()
            if model in forecasters:
                point, quant, _ = leapcast_forecast(forecasters[model], histories, h, args.samples, args.seed)
            else:
                point, quant = stats_forecast(model, histories, h, season)
            rows.append(dict(dataset=name, model=model, series=len(histories), h=h, mase=M.mase(actual, point, histories, season),
                             wql=M.wql(actual, quant, LEVELS), seconds=time.perf_counter() - t0))
            print(f"{name:18s} {model:22s} MASE {rows[-1]['mase']:.3f}  WQL {rows[-1]['wql']:.3f}  ({rows[-1]['seconds']:.1f}s)", flush=True)
    for name in args.ett:
        for h in args.ett_horizons:
            contexts, actual = ett_windows(name, h)
            for model in forecasters:
                point, _, _ = leapcast_forecast(forecasters[model], contexts, h, args.samples, args.seed)
                rows.append(dict(dataset=f"{name}-h{h}", model=model, series=len(contexts), h=h, mse=M.mse(actual, point), mae=M.mae(actual, point)))
                print(f"{name}-h{h:<10d} {model:22s} MSE {rows[-1]['mse']:.3f}  MAE {rows[-1]['mae']:.3f}", flush=True)
    summary = {}
    for model in list(forecasters) + args.baselines:
        for metric in ("mase", "wql"):
            scores = {r["dataset"]: r[metric] for r in rows if r["model"] == model and metric in r}
            base = {r["dataset"]: r[metric] for r in rows if r["model"] == "SeasonalNaive" and metric in r}
            for family in ("m3", "tourism"):
                fam = {k: v for k, v in scores.items() if k.startswith(family)}
                if fam and base:
                    summary[f"{model}/{family}/{metric}"] = M.geometric_mean_relative(fam, base)
    for key, value in summary.items():
        print(f"relative {key}: {value:.3f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(dict(benchmark="zero_shot", date=str(date.today()), command="python " + " ".join(sys.argv), rows=rows, relative_to_seasonal_naive=summary), indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
