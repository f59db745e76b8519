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
    python benchmarks/zero_shot.py --models house-target --dtypes float32 bfloat16 --seeds 0 1 2 \
        --datasets m3-yearly m3-quarterly m3-monthly m3-other tourism-yearly tourism-quarterly tourism-monthly \
        --baselines SeasonalNaive --ett                                                 # a tier against float32
    (``--compile bfloat16`` adds the tier with compiled decoding steps, labelled "[bfloat16 compiled]")

Leapcast models get each data set's season length (ETT: 24), so a forecaster
with seasonal adjustment on (house-target's default) uses it;
``--also-unadjusted`` adds each model's score without it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import date
from pathlib import Path

import torch

from leapcast import Forecaster
from leapcast.eval import metrics as M
from leapcast.eval.backtest import ETT_SPANS, ett_windows, official_window
from leapcast.eval.forecasts import leapcast_forecast, stats_forecast
from leapcast.forecaster import DEFAULT_QUANTILES

RESULTS = Path(__file__).parent / "results"
ETT_SEASON = 24  # hourly: one day, as leapcast.deseason.season_length_of(freq="h")
COMPETITIONS = [
    "m3-yearly",
    "m3-quarterly",
    "m3-monthly",
    "m3-other",
    "tourism-yearly",
    "tourism-quarterly",
    "tourism-monthly",
]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=[])
    p.add_argument("--baselines", nargs="*", default=["SeasonalNaive", "AutoETS", "AutoTheta"])
    p.add_argument("--datasets", nargs="*", default=COMPETITIONS, help="none: ETT only")
    p.add_argument("--ett", nargs="*", default=["etth1", "etth2"])
    p.add_argument("--ett-horizons", nargs="+", type=int, default=[96, 336, 720])
    p.add_argument(
        "--ett-span",
        default="test",
        choices=list(ETT_SPANS),
        help="validation, train+validation: for choices, never reports",
    )
    p.add_argument("--ett-stride", type=int, default=None, help="rows between ETT windows (default h: not overlapping)")
    p.add_argument("--max-series", type=int, default=None)
    p.add_argument(
        "--also-unadjusted",
        action="store_true",
        help="also score each model without seasonal adjustment, as '<name> (no adjustment)'",
    )
    p.add_argument(
        "--only-unadjusted",
        action="store_true",
        help="score each model without seasonal adjustment only (the model alone)",
    )
    p.add_argument("--samples", type=int, default=20)
    p.add_argument("--seeds", nargs="+", type=int, default=[0], help="leapcast models run once per seed")
    p.add_argument(
        "--dtypes", nargs="+", default=["float32"], help="precision tiers; labels other than float32 say theirs"
    )
    p.add_argument("--compile", nargs="*", default=[], help="also these tiers with compile=True ('[tier compiled]')")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=RESULTS / "zero_shot.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    forecasters = {}
    for m in args.models:
        base = Path(m).name if Path(m).name != "last" else Path(m).parent.name
        for dtype in args.dtypes:
            label = base if dtype == "float32" else f"{base} [{dtype}]"
            forecasters[label] = Forecaster.from_pretrained(m, dtype=dtype)
        for dtype in args.compile:
            forecasters[f"{base} [{dtype} compiled]"] = Forecaster.from_pretrained(m, dtype=dtype, compile=True)
    seasons = {  # label -> pass the season length: where the forecaster adjusts seasons (else it is refused)
        name: fc.adjusting() for name, fc in forecasters.items()
    }
    if args.also_unadjusted or args.only_unadjusted:
        for name in list(forecasters):
            forecasters[f"{name} (no adjustment)"] = forecasters[name]
            seasons[f"{name} (no adjustment)"] = False
            if args.only_unadjusted:
                del forecasters[name], seasons[name]
    runs = [(model, seed) for model in forecasters for seed in args.seeds] + [(b, None) for b in args.baselines]
    rows = []
    for name in args.datasets:
        win = official_window(name, args.max_series)
        histories, actual, season, h = win.histories, win.actuals, win.season_length, win.h
        for model, seed in runs:
            t0 = time.perf_counter()
            if model in forecasters:
                point, quant, _ = leapcast_forecast(
                    forecasters[model],
                    histories,
                    h,
                    args.samples,
                    seed,
                    season_length=season if seasons[model] else None,
                )
            else:
                point, quant = stats_forecast(model, histories, h, season)
            rows.append(
                dict(
                    dataset=name,
                    model=model,
                    seed=seed,
                    series=len(histories),
                    h=h,
                    mase=M.mase(actual, point, histories, season),
                    wql=M.wql(actual, quant, DEFAULT_QUANTILES),
                    seconds=time.perf_counter() - t0,
                )
            )
            print(
                f"{name:18s} {model:22s} seed {seed} MASE {rows[-1]['mase']:.3f}  WQL {rows[-1]['wql']:.3f}  "
                f"({rows[-1]['seconds']:.1f}s)",
                flush=True,
            )
    for name in args.ett:
        for h in args.ett_horizons:
            contexts, actual = ett_windows(name, h, args.ett_span, args.ett_stride)
            for model, seed in runs:
                if model not in forecasters:
                    continue
                point, _, _ = leapcast_forecast(
                    forecasters[model],
                    contexts,
                    h,
                    args.samples,
                    seed,
                    season_length=ETT_SEASON if seasons[model] else None,
                )
                rows.append(
                    dict(
                        dataset=f"{name}-h{h}",
                        model=model,
                        seed=seed,
                        series=len(contexts),
                        h=h,
                        mse=M.mse(actual, point),
                        mae=M.mae(actual, point),
                    )
                )
                print(f"{name}-h{h:<10d} {model:22s} MSE {rows[-1]['mse']:.3f}  MAE {rows[-1]['mae']:.3f}", flush=True)
    summary = {}
    base = {r["dataset"]: r for r in rows if r["model"] == "SeasonalNaive"}
    for model, seed in runs:
        for metric in ("mase", "wql"):
            for family in ("m3", "tourism"):
                mine = {
                    r["dataset"]: r[metric]
                    for r in rows
                    if r["model"] == model and r["seed"] == seed and metric in r and r["dataset"].startswith(family)
                }
                if mine and base:
                    ref = {name: base[name][metric] for name in mine if name in base}
                    key = f"{model}/{family}/{metric}" + ("" if seed is None else f"/seed{seed}")
                    summary[key] = M.geometric_mean_relative(mine, ref)
    for model in forecasters:  # the mean over seeds
        for metric in ("mase", "wql"):
            for family in ("m3", "tourism"):
                per_seed = [summary.get(f"{model}/{family}/{metric}/seed{seed}") for seed in args.seeds]
                if per_seed and None not in per_seed:
                    summary[f"{model}/{family}/{metric}"] = sum(per_seed) / len(per_seed)
    for key, value in summary.items():
        print(f"relative {key}: {value:.3f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            dict(
                benchmark="zero_shot",
                date=str(date.today()),
                command="python " + " ".join(sys.argv),
                rows=rows,
                relative_to_seasonal_naive=summary,
            ),
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
