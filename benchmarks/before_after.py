"""Speed of this checkout's engine against an earlier commit's, interleaved in one process.

The earlier commit is exported with ``git archive`` into a temporary folder and
its package renamed ``leapcast_before`` (imports rewritten), so both versions
load side by side; each configuration then runs before, after, before, after,
... (the pair's order alternating) and the ratio before/after is taken pair
by pair (> 1: this checkout is faster). Configurations: house-target plain, house-target + house-draft with
k = 4 fixed and adaptive, batch 1 and 16 (synthetic monthly-like series of
60-140 values), h 64, 20 samples, float32; ``--pair patch``: house-patch-target and house-patch-draft instead,
with k = 1 fixed and adaptive (k <= 2), h 336 (``--horizon``):

    python benchmarks/before_after.py --before c93197e --repeats 7 --threads 2
    python benchmarks/before_after.py --before 1fc79b3 --pair patch --horizon 336 --out benchmarks/results/before_after-keys.md
    python benchmarks/before_after.py --before HEAD --top-k 1 --repeats 5 --out FILE   # greedy, before a change
"""

from __future__ import annotations

import argparse
import io
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
PATCH_PAIR = ("house-patch-target", "house-patch-draft", 1)


def export(commit: str, folder: Path) -> None:
    """``leapcast`` at ``commit`` -> ``folder/leapcast_before`` with every import renamed."""
    archive = subprocess.run(["git", "archive", commit, "leapcast"], cwd=ROOT, capture_output=True, check=True).stdout
    tarfile.open(fileobj=io.BytesIO(archive)).extractall(folder, filter="data")
    (folder / "leapcast").rename(folder / "leapcast_before")
    for path in (folder / "leapcast_before").rglob("*.py"):
        text = re.sub(r"\bleapcast(\.|\b(?= import))", r"leapcast_before\1", path.read_text())
        path.write_text(text)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--before", required=True, help="the earlier commit")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--pair", choices=("house", "patch"), default="house")
    p.add_argument("--horizon", type=int, default=64)
    p.add_argument("--top-k", type=int, default=None, help="1: greedy (mean) decoding; default: the checkpoint's")
    p.add_argument("--out", type=Path, default=None, help="also write the table (markdown) here")
    args = p.parse_args()
    h = args.horizon
    target, draft, k = ("house-target", "house-draft", 4) if args.pair == "house" else PATCH_PAIR
    lines: list[str] = []
    sampled = {"num_samples": 20, "top_k": args.top_k}

    def emit(line: str) -> None:
        print(line, flush=True)
        lines.append(line)

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        export(args.before, Path(tmp))
        sys.path.insert(0, tmp)
        from leapcast_before.engine.speculative import SpecConfig as BeforeSpec
        from leapcast_before.forecaster import Forecaster as Before

        from leapcast.engine.speculative import SpecConfig
        from leapcast.forecaster import Forecaster

        rng = np.random.default_rng(0)
        series = [
            100 + 10 * np.sin(np.arange(n) * 2 * np.pi / 12) + rng.normal(0, 2, n).cumsum()
            for n in rng.integers(60, 140, 16)
        ]
        versions = {}
        options = {"seasonal_adjustment": False} if args.pair == "house" else {}
        for tag, fc_cls, spec_cls in (("before", Before, BeforeSpec), ("after", Forecaster, SpecConfig)):
            versions[tag] = {
                "plain": fc_cls.from_pretrained(target, **options),
                f"draft k={k}": fc_cls.from_pretrained(
                    target, draft=draft, spec=spec_cls(k=k, adaptive=False), **options
                ),
                "draft adaptive": fc_cls.from_pretrained(target, draft=draft, spec=spec_cls(k=max(k, 2)), **options),
            }
        emit(
            f"before {args.before}, after: this checkout; {target} + {draft}; torch {torch.__version__}, "
            f"{args.threads} threads, h {h}, 20 samples, top_k {args.top_k or 'the default'}, {args.repeats} interleaved "
            "pairs per row\n"
        )
        emit("| batch, mode | before s (median) | after s (median) | before / after: median (min-max) |")
        emit("|---|---|---|---|")
        for batch in (1, 16):
            ctx = series[:batch]
            for name in versions["after"]:
                for tag in versions:  # warm-up, and adaptive k's first exploration
                    versions[tag][name].predict(ctx, h, **sampled, seed=0, batch_size=batch, progress=False)
                before, after = [], []
                for r in range(args.repeats):
                    order = (("before", before), ("after", after))
                    for tag, out in order if r % 2 == 0 else order[::-1]:  # alternate who goes first
                        started = time.perf_counter()
                        versions[tag][name].predict(ctx, h, **sampled, seed=r, batch_size=batch, progress=False)
                        out.append(time.perf_counter() - started)
                ratios = [b / a for b, a in zip(before, after)]
                emit(
                    f"| {batch}, {name} | {statistics.median(before):.3f} | {statistics.median(after):.3f} | "
                    f"{statistics.median(ratios):.3f} ({min(ratios):.2f}-{max(ratios):.2f}) |"
                )
    if args.out:
        args.out.write_text(f"`python {' '.join(sys.argv)}`\n\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
