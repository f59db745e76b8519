"""How far a lower precision tier moves a model's outputs from float32, on real contexts.

For each model and tier: teacher-forced next-step distributions over h steps of each context (the steps of the
float32 greedy path), compared with float32's:
- Chronos-T5: the largest logit difference, the largest total-variation distance between the next-token
  distributions, and the share of steps whose greedy token differs;
- Toto: the largest difference in mixture means, relative to the context's scale.
Then the share of greedy values that differ between plain and speculative decoding in the same tier (a verify
pass over k+1 positions and a one-position step use different kernel shapes, so rounding may differ).

    python benchmarks/tier_error.py                     # house-target and house-draft, 64 M3-monthly contexts
    python benchmarks/tier_error.py --series 8 --h 16   # quick
    python benchmarks/tier_error.py --tiers bfloat16 --compile bfloat16 float32 --out FILE   # compiled steps too
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from pathlib import Path

import numpy as np
import torch

from leapcast import Forecaster, SpecConfig
from leapcast.data.competitions import load_competition
from leapcast.inputs import left_pad

RESULTS = Path(__file__).parent / "results"


def contexts(n: int, seed: int = 0) -> list[np.ndarray]:
    """``n`` M3-monthly training histories (evaluation data: nothing here trains)."""
    train = load_competition("m3-monthly").train
    groups = [g["y"].to_numpy(float) for _, g in train.groupby("unique_id", sort=True)]
    pick = np.random.default_rng(seed).choice(len(groups), size=min(n, len(groups)), replace=False)
    return [groups[i] for i in sorted(pick)]


def chronos_logits(fc: Forecaster, ctx: list[np.ndarray], steps: torch.Tensor, stepwise: bool = False) -> torch.Tensor:
    """Teacher-forced logits [N, h, V] float32 for decoder inputs ``steps`` [N, h] (start token first); ``stepwise``:
    one position a pass, as plain decoding (and its compiled step) runs."""
    model = fc.model
    state = model.setup(model.tokenize(left_pad(ctx)), rows_per_series=1, max_steps=steps.shape[1])
    if not stepwise:
        return model.decode(steps, 0, state)
    return torch.cat([model.decode(steps[:, t : t + 1], t, state) for t in range(steps.shape[1])], dim=1)


def chronos_errors(model: str, tier: str, ctx: list[np.ndarray], h: int, compile: bool = False) -> dict:
    ref, low = Forecaster.from_pretrained(model), Forecaster.from_pretrained(model, dtype=tier, compile=compile)
    greedy = ref.model.setup(ref.model.tokenize(left_pad(ctx)), rows_per_series=1, max_steps=h)
    steps = torch.full((len(ctx), 1), ref.model.start_token)
    for t in range(h - 1):  # the float32 greedy path, one step at a time
        logits = ref.model.decode(steps[:, t : t + 1], t, greedy)[:, -1]
        steps = torch.cat([steps, logits.argmax(-1, keepdim=True)], dim=1)
    a, b = chronos_logits(ref, ctx, steps), chronos_logits(low, ctx, steps, stepwise=compile)
    tv = 0.5 * (a.softmax(-1) - b.softmax(-1)).abs().sum(-1)  # [N, h]
    return dict(
        max_abs_logit=float((a - b).abs().max()),
        logit_std=float(a.std()),
        max_total_variation=float(tv.max()),
        median_total_variation=float(tv.median()),
        greedy_flip_rate=float((a.argmax(-1) != b.argmax(-1)).float().mean()),
    )


def speculative_flips(
    model: str, draft: str, tier: str, ctx: list[np.ndarray], h: int, k: int, compile: bool = False
) -> dict:
    plain = Forecaster.from_pretrained(model, dtype=tier, compile=compile)
    spec = Forecaster.from_pretrained(
        model, dtype=tier, draft=draft, spec=SpecConfig(k=k, adaptive=False), compile=compile
    )
    a = plain.predict(list(ctx), h, top_k=1, num_samples=1)
    b = spec.predict(list(ctx), h, top_k=1, num_samples=1)
    return dict(k=k, values=a.numel(), differing_share=float((a != b).float().mean()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["house-target", "house-draft"])
    parser.add_argument("--draft", default="house-draft", help="draft for the speculative comparison")
    parser.add_argument("--tiers", nargs="*", default=["bfloat16"])
    parser.add_argument("--compile", nargs="*", default=[], help="also these tiers with compile=True")
    parser.add_argument("--series", type=int, default=64)
    parser.add_argument("--h", type=int, default=64)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS / "tier_error.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ctx = contexts(args.series)
    rows = []
    variants = [("float32", False)] + [(t, False) for t in args.tiers] + [(t, True) for t in args.compile]
    for tier, compile in variants:
        for model in args.models:
            row = dict(model=model, tier=tier, compiled=compile, series=len(ctx), h=args.h)
            if tier != "float32" or compile:
                row.update(chronos_errors(model, tier, ctx, args.h, compile))
            if model != args.draft:
                row["speculative"] = speculative_flips(model, args.draft, tier, ctx, args.h, args.k, compile)
            rows.append(row)
            print(json.dumps(row), flush=True)
    report = dict(date=str(date.today()), torch=torch.__version__, rows=rows, command="python " + " ".join(sys.argv))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
