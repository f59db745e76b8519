"""Where a forecast's time goes: a torch profile of plain decoding, the top operators and the operator count.

A random-weight chronos-t5 of the official configuration (or a bundled model), one series (or --batch), context
512, h 64, 20 sample paths, one tier. The forecast runs untimed once (packing, allocator), then timed --repeats
times (median), then once under torch.profiler. The table lists the operators with the most self CPU time; the
op count is the number of operator calls a forecast makes (each has a fixed cost on a CPU, however small).

    python benchmarks/step_profile.py --size small --dtype bfloat16 --out benchmarks/results/step_profile_small_bf16.md
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from leapcast import Forecaster
from leapcast.models.presets import CHRONOS_T5_SIZES, chronos_t5_config, random_chronos_t5, save_chronos_t5
from leapcast.registry import resolve


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", default="small", help=f"one of {list(CHRONOS_T5_SIZES)} (random weights) or a model")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--compile", action="store_true", help="compile=True (the first, untimed call compiles)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--horizon", type=int, default=64)
    p.add_argument("--samples", type=int, default=20)
    p.add_argument("--context", type=int, default=512)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--top", type=int, default=20)
    p.add_argument("--out", type=Path, default=None, help="write the table here (markdown)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        if args.size in CHRONOS_T5_SIZES:
            folder = save_chronos_t5(random_chronos_t5(chronos_t5_config(args.size), seed=0), Path(tmp) / args.size)
            name = f"chronos-t5-{args.size} (random weights)"
        else:
            folder, name = resolve(args.size), args.size
        fc = Forecaster.from_pretrained(folder, dtype=args.dtype, compile=args.compile)
        ctx = torch.randn(args.batch, args.context, generator=torch.Generator().manual_seed(0)).cumsum(-1)

        def forecast():
            fc.predict(ctx, args.horizon, num_samples=args.samples, seed=0, progress=False)

        forecast()
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            forecast()
            times.append(time.perf_counter() - start)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            forecast()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    calls = sum(e.count for e in events)
    rows = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[: args.top]
    seconds = statistics.median(times)
    lines = [
        f"`python benchmarks/step_profile.py {' '.join(sys.argv[1:])}` ({date.today()}, torch {torch.__version__})",
        "",
        f"{name}, tier {fc.tier}{' compiled' if args.compile else ''}, batch {args.batch}, context {args.context}, h {args.horizon}, "
        f"{args.samples} paths, {args.threads} threads: {seconds * 1000:.0f} ms per forecast (median of "
        f"{args.repeats}), {seconds / args.horizon * 1000:.2f} ms per step; {calls:,} operator calls per forecast "
        f"({calls / args.horizon:.0f} per step) under the profiler.",
        "",
        "| operator | calls | self CPU ms | share |",
        "|---|---|---|---|",
    ]
    for e in rows:
        lines.append(
            f"| `{e.key}` | {e.count:,} | {e.self_cpu_time_total / 1000:.1f} | {e.self_cpu_time_total / total:.1%} |"
        )
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
