"""Seconds per forecast of one checkout of leapcast, for before/after comparisons of the engine.

Runs against the leapcast found at ``--repo`` (a git worktree of another commit, or this one), so two
commits can be timed in turn, interleaved, by a driver (``--pairs``). Prints one JSON line per
configuration with the median of ``--repeats`` calls:

    python benchmarks/before_after.py --repo /tmp/base --vs . --pairs 5

Configurations: house-target plain, house-target + house-draft (k = 4 fixed, and adaptive), batch 1
and 16, h 64, 20 samples, 2 threads, float32; contexts are the first M3-monthly-like synthetic series.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time


def measure(repeats: int) -> dict:
    import numpy as np
    import torch

    torch.set_num_threads(2)
    from leapcast.forecaster import Forecaster
    from leapcast.engine.speculative import SpecConfig

    rng = np.random.default_rng(0)
    series = [100 + 10 * np.sin(np.arange(n) * 2 * np.pi / 12) + rng.normal(0, 2, n).cumsum() for n in rng.integers(60, 140, 16)]
    plain = Forecaster.from_pretrained("house-target", seasonal_adjustment=False)
    fixed = Forecaster.from_pretrained("house-target", draft="house-draft", spec=SpecConfig(k=4, adaptive=False), seasonal_adjustment=False)
    adaptive = Forecaster.from_pretrained("house-target", draft="house-draft", spec=SpecConfig(k=4), seasonal_adjustment=False)
    out = {}
    for batch in (1, 16):
        ctx = series[:batch]
        for name, fc in (("plain", plain), ("draft k=4", fixed), ("draft adaptive", adaptive)):
            fc.predict(ctx, 64, seed=0, batch_size=batch, progress=False)  # warm-up (and adaptive k's exploration)
            times = []
            for r in range(repeats):
                t = time.perf_counter()
                fc.predict(ctx, 64, seed=r, batch_size=batch, progress=False)
                times.append(time.perf_counter() - t)
            out[f"batch {batch}, {name}"] = statistics.median(times)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repo", required=True, help="checkout whose leapcast is timed (A)")
    p.add_argument("--vs", help="a second checkout (B); with --pairs, A and B run in turn and A/B is reported per pair")
    p.add_argument("--pairs", type=int, default=5)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        sys.path.insert(0, args.repo)
        print(json.dumps(measure(args.repeats)))
        return
    if args.vs is None:
        print(json.dumps(_run(args.repo, args.repeats)))
        return
    ratios: dict[str, list[float]] = {}
    for i in range(args.pairs):
        a, b = _run(args.repo, args.repeats), _run(args.vs, args.repeats)
        for key in a:
            ratios.setdefault(key, []).append(a[key] / b[key])  # B's speed relative to A: > 1, B is faster
        print(f"pair {i + 1}: " + ", ".join(f"{k}: A {a[k]:.3f}s B {b[k]:.3f}s" for k in a), flush=True)
    print("\n| configuration | A time / B time (B's speed relative to A): median (min-max) of pairs |\n|---|---|")
    for key, r in ratios.items():
        print(f"| {key} | {statistics.median(r):.3f} ({min(r):.3f}-{max(r):.3f}) |")


def _run(repo: str, repeats: int) -> dict:
    done = subprocess.run([sys.executable, __file__, "--worker", "--repo", repo, "--repeats", str(repeats)],
                          capture_output=True, text=True, check=True, cwd=repo)
    return json.loads(done.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
