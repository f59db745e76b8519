"""Markdown tables from benchmarks/results/speculative*.json (for README).

python benchmarks/speculative_table.py benchmarks/results/speculative-random-b1.json ...
"""

import json
import sys


def measured(rows: list[dict]) -> str:
    out = [
        "| batch | proposer | k | speedup | acceptance a | mean accepted length | draft cost c | bound (verify = 1 step) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        k = f"{r['k']} adaptive" if r["adaptive"] else str(r["k"])
        out.append(
            f"| {r['batch']} | {r['proposer']} | {k} | x{r['speedup']:.2f} | {r['acceptance']:.2f} | {r['mean_accepted_length']:.2f} | {r['cost_ratio']:.2f} | x{r['bound']:.2f} |"
        )
    return "\n".join(out)


def projected(rows: list[dict]) -> str:
    out = [
        "| batch | draft -> target | assumed a | c | best k | verify cost v(k) | projected speedup |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r['batch']} | {r['draft']} -> {r['target']} | {r['acceptance']:.1f} | {r['cost_ratio']:.3f} | {r['best_k']} | {r['verify_cost'][str(r['best_k'])]:.2f} | x{r['projected_speedup']:.2f} |"
        )
    return "\n".join(out)


if __name__ == "__main__":
    for path in sys.argv[1:]:
        report = json.loads(open(path).read())
        print(f"`{report['command']}`\n")
        print(
            projected(report["rows"]) if report["benchmark"] == "speculative-projection" else measured(report["rows"])
        )
        print()
