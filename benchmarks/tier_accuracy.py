"""A tier's accuracy against float32, from a ``zero_shot.py --dtypes float32 <tier> --seeds ...`` report.

Per data set: MASE and WQL averaged over seeds in each tier and their relative change; then the aggregate
(geometric mean over M3's and Tourism's data sets of the ratio to SeasonalNaive, averaged over seeds) and its
change, against the rule of the precision-tier issue: within 1% on MASE and WQL.

    python benchmarks/tier_accuracy.py benchmarks/results/zero_shot_tiers.json
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("report", type=Path)
    parser.add_argument("--model", default="house-target")
    parser.add_argument("--tier", default="bfloat16")
    args = parser.parse_args()
    report = json.loads(args.report.read_text())
    low = f"{args.model} [{args.tier}]"
    lines = [
        f"From `{report['command']}` ({report['date']}); mean over seeds; change = {args.tier} / float32 - 1.",
        "",
        f"| data set | series | MASE float32 | MASE {args.tier} | change | WQL float32 | WQL {args.tier} | change |",
        "|---|---|---|---|---|---|---|---|",
    ]
    datasets = sorted({r["dataset"] for r in report["rows"] if "mase" in r and r["model"] == args.model})
    for name in datasets:
        cells = {}
        for label in (args.model, low):
            mine = [r for r in report["rows"] if r["dataset"] == name and r["model"] == label]
            cells[label] = {m: statistics.mean(r[m] for r in mine) for m in ("mase", "wql")}
        series = next(r["series"] for r in report["rows"] if r["dataset"] == name)
        row = [name, str(series)]
        for m in ("mase", "wql"):
            a, b = cells[args.model][m], cells[low][m]
            row += [f"{a:.4f}", f"{b:.4f}", f"{b / a - 1:+.2%}"]
        lines.append("| " + " | ".join(row) + " |")
    summary = report["relative_to_seasonal_naive"]
    lines += [
        "",
        "| aggregate (relative to SeasonalNaive) | float32 | " + args.tier + " | change | within 1% |",
        "|---|---|---|---|---|",
    ]
    for family in ("m3", "tourism"):
        for m in ("mase", "wql"):
            a, b = summary[f"{args.model}/{family}/{m}"], summary[f"{low}/{family}/{m}"]
            lines.append(
                f"| {family} {m.upper()} | {a:.4f} | {b:.4f} | {b / a - 1:+.2%} | {'yes' if abs(b / a - 1) <= 0.01 else 'NO'} |"
            )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
