"""Expected acceptance of a draft against its target on held-out contexts.

For each context the target samples its own continuation (one window of
``prediction_length`` steps, at the target's sampling settings: temperature
1, top-k 50 for the house models); along that path the draft and the target
each give their warped next-step distribution, and sum_x min(p(x), q(x)) is
the probability that exact speculative sampling accepts the draft's step
(Leviathan et al., arXiv 2211.17192). Reported: its mean over all steps, per
data set and overall, and per horizon position.

Contexts are the ones the pair sees when forecasting: seasonally adjusted
with the data set's season length when the target's checkpoint turns the
adjustment on (``leapcast.deseason``; the house models do), raw otherwise or
with ``--no-seasonal-adjustment``.

    python benchmarks/acceptance.py --target house-target --draft house-draft
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from pathlib import Path

import numpy as np
import torch

from leapcast.data import load
from leapcast.deseason import seasonally_adjusted
from leapcast.engine.sampling import SamplingConfig, probabilities
from leapcast.engine.speculative import acceptance_probability
from leapcast.inputs import left_pad
from leapcast.models.loading import leapcast_options, load_model
from leapcast.registry import resolve
from leapcast.train.distill import sample_tokens

RESULTS = Path(__file__).parent / "results"
M3 = ["m3-yearly", "m3-quarterly", "m3-monthly", "m3-other"]


@torch.inference_mode()
def acceptance(target, draft, contexts: list[np.ndarray], sampling: SamplingConfig, seed: int) -> np.ndarray:
    """-> [N, H] sum_x min(p, q) at each step of the target's sampled window."""
    ctx = left_pad(contexts)  # M3 values: within float32, no scaling needed
    batch = target.tokenize(ctx)
    h = target.prediction_length
    g = torch.Generator().manual_seed(seed)
    steps = sample_tokens(target, batch, h, sampling, torch.rand(len(contexts), 1, h, generator=g))[:, 0]  # [N, H]
    inputs = torch.cat([torch.full_like(steps[:, :1], target.start_token), steps[:, :-1]], dim=1)
    p = probabilities(target.net(batch.tokens, batch.mask, inputs), sampling, target.banned_tokens)  # [N, H, V]
    q = probabilities(
        draft.net(batch.tokens, batch.mask, inputs), sampling, draft.banned_tokens
    )  # same tokenizer: same tokens
    return acceptance_probability(p, q).numpy()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", default="house-target")
    p.add_argument("--draft", default="house-draft")
    p.add_argument("--datasets", nargs="+", default=M3)
    p.add_argument("--max-series", type=int, default=200, help="the first series of each data set, in id order")
    p.add_argument("--batch-size", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--no-seasonal-adjustment", action="store_true", help="raw contexts even where the target adjusts them"
    )
    p.add_argument("--out", type=Path, default=RESULTS / "acceptance.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    target, draft = load_model(resolve(args.target)), load_model(resolve(args.draft))
    if target.chronos != draft.chronos:
        raise SystemExit(
            f"--draft {args.draft!r} tokenizes differently from --target {args.target!r}; a draft must share its target's tokenizer"
        )
    c = target.chronos
    adjust = (
        leapcast_options(resolve(args.target)).get("seasonal_adjustment", False) and not args.no_seasonal_adjustment
    )
    sampling = SamplingConfig(num_samples=1, temperature=c.temperature, top_k=c.top_k, top_p=c.top_p)
    per_dataset, all_rows = {}, []
    for name in args.datasets:
        ds = load(name)
        train = ds.train
        ids = set(sorted(train["unique_id"].unique())[: args.max_series])
        series = [g["y"].to_numpy(float) for key, g in train.groupby("unique_id") if key in ids]
        if adjust:
            series = [seasonally_adjusted(y, ds.season_length) for y in series]
        rows = np.concatenate(
            [
                acceptance(target, draft, series[i : i + args.batch_size], sampling, args.seed + i)
                for i in range(0, len(series), args.batch_size)
            ]
        )
        per_dataset[name] = float(rows.mean())
        all_rows.append(rows)
        print(f"{name:16s} series {len(series):4d}  expected acceptance {per_dataset[name]:.3f}", flush=True)
    rows = np.concatenate(all_rows)
    result = dict(
        benchmark="acceptance",
        date=str(date.today()),
        command="python " + " ".join(sys.argv),
        target=args.target,
        draft=args.draft,
        seasonal_adjustment=bool(adjust),
        sampling=dict(temperature=sampling.temperature, top_k=sampling.top_k, top_p=sampling.top_p),
        overall=float(rows.mean()),
        per_dataset=per_dataset,
        per_position=[float(v) for v in rows.mean(0)],
    )
    print(f"overall expected acceptance {result['overall']:.3f} over {rows.size} steps")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
