"""What speculative decoding costs on Toto (random weights: costs only, acceptance means nothing here).

v(k): the time of one target pass over k + 1 patches per row over the time of a plain pass (one patch),
at batch 1 and 16 series x 20 paths. c: the time of one draft step over one target step, for a narrower,
shallower draft with the target's patches (toto-small's shape with patch 64 for base) and for early exits
(the target's first m layers).
Timings are medians of interleaved repeats in one process (every k and draft timed in each round).
With acceptance a per patch, a pass gains (1 - a^(k+1)) / (1 - a) patches for the cost v(k) + k c.

    python benchmarks/toto_verify_cost.py                 # small and base, batch 1 and 16
    python benchmarks/toto_verify_cost.py --sizes small --repeats 3   # quick
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from datetime import date
from pathlib import Path

import torch

from leapcast.models.toto_net import TotoConfig
from leapcast.models.toto_presets import TOTO_SIZES, random_toto, toto_config

RESULTS = Path(__file__).parent / "results"
KS = (1, 2, 3, 4, 6, 8)
EXITS = {"small": (1, 2, 3), "base": (2, 4, 6)}
# a narrower, shallower draft with the target's patches: small's shape for base, a quarter of small for small
DRAFTS = {
    "base": dict(embed_dim=256, num_layers=4, num_heads=4, mlp_hidden_dim=1024, spacewise_every_n_layers=4),
    "small": dict(embed_dim=64, num_layers=2, num_heads=2, mlp_hidden_dim=256, spacewise_every_n_layers=2),
}


def step_seconds(model, state, rows: int, n: int, position: int) -> float:
    inputs = torch.randn(rows, n, state.start.shape[1] * model.patch_size)
    started = time.perf_counter()
    model.step(state, inputs, position)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["small", "base"], choices=list(TOTO_SIZES))
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 16])
    parser.add_argument("--paths", type=int, default=20)
    parser.add_argument("--context", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS / "toto_verify_cost.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows_out = []
    for size in args.sizes:
        target = random_toto(toto_config(size), seed=0)
        p = target.patch_size
        shape = DRAFTS[size]
        small = random_toto(TotoConfig(patch_size=p, stride=p, spacewise_first=False, **shape), seed=1)
        label = f"draft {shape['embed_dim']}x{shape['num_layers']}"
        drafts: dict[str, int | None] = {f"early-exit:{m}": m for m in EXITS[size]}
        drafts[label] = None
        for batch in args.batches:
            contexts = torch.randn(batch, args.context, generator=torch.Generator().manual_seed(0)).cumsum(-1)
            rows = batch * args.paths
            state = target.prefix(contexts, args.paths, max(KS) + 2)
            draft_states = {
                name: (target, target.early_exit_state(state, m))
                if m is not None
                else (small, small.prefix(contexts, args.paths, 2))
                for name, m in drafts.items()
            }
            times: dict[str, list[float]] = {f"k={k}": [] for k in (0, *KS)} | {name: [] for name in drafts}
            with torch.inference_mode():
                for _ in range(2):  # warm-up: oneDNN builds its kernels for each new shape once
                    for k in (0, *KS):
                        step_seconds(target, state, rows, k + 1, 1)
                    for model, st in draft_states.values():
                        step_seconds(model, st, rows, 1, 1)
                for _ in range(args.repeats):
                    for k in (0, *KS):
                        times[f"k={k}"].append(step_seconds(target, state, rows, k + 1, 1))
                    for name, (model, st) in draft_states.items():
                        times[name].append(step_seconds(model, st, rows, 1, 1))
            plain = statistics.median(times["k=0"])
            row = dict(
                size=size,
                batch=batch,
                paths=args.paths,
                rows=rows,
                context=args.context,
                threads=args.threads,
                repeats=args.repeats,
                plain_ms=plain * 1e3,
                v={k: statistics.median(times[f"k={k}"]) / plain for k in KS},
                c={name: statistics.median(times[name]) / plain for name in drafts},
            )
            rows_out.append(row)
            print(
                f"toto-{size} batch {batch} ({rows} rows): plain step {plain * 1e3:.1f} ms; "
                + " ".join(f"v({k})={v:.2f}" for k, v in row["v"].items())
                + "; "
                + " ".join(f"c[{n}]={c:.2f}" for n, c in row["c"].items()),
                flush=True,
            )
    report = dict(
        benchmark="toto_verify_cost",
        date=str(date.today()),
        torch=torch.__version__,
        machine=f"{platform.machine()} {platform.processor() or ''}".strip(),
        rows=rows_out,
        command="python " + " ".join(sys.argv),
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    md = [
        "| Toto (random) | series x paths | plain step ms | "
        + " | ".join(f"v({k})" for k in KS)
        + " | c (draft step / target step) |",
        "|---|---|---|" + "---|" * len(KS) + "---|",
    ]
    for r in rows_out:
        drafts_text = ", ".join(f"{n} {c:.2f}" for n, c in r["c"].items())
        md.append(
            f"| {r['size']} | {r['batch']} x {r['paths']} | {r['plain_ms']:.1f} | "
            + " | ".join(f"{r['v'][k]:.2f}" for k in KS)
            + f" | {drafts_text} |"
        )
    args.out.with_suffix(".md").write_text("\n".join(md) + "\n")
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
