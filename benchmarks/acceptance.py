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

A Toto pair (patches of P values, a Student-T mixture per value) is scored the way exact speculative decoding
of continuous patches verifies it: along the target's own sampled continuation (``--horizon`` values), the
draft proposes a whole patch x ~ q and the target keeps it with probability min(1, p(x) / q(x)) of the joint
densities (the product over the patch's values); reported: that expectation (a Monte Carlo estimate over
``--draws`` proposals per patch) and, beside it, the same per value. Contexts are raw (Toto models adjust nothing).

    python benchmarks/acceptance.py --target house-target --draft house-draft
    python benchmarks/acceptance.py --target house-patch-target --draft house-patch-draft \
        --datasets m3-yearly m3-quarterly m3-monthly m3-other tourism-yearly tourism-quarterly tourism-monthly
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
from leapcast.models.toto import Toto
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


@torch.no_grad()
def patch_acceptance(target, draft, contexts: list[np.ndarray], horizon: int, draws: int, seed: int) -> np.ndarray:
    """-> [N, 2]: per series, the mean over the patches of the target's sampled continuation of (whole-patch
    acceptance, per-value overlap)."""
    from leapcast import Forecaster
    from leapcast.train.patches import scale_patches
    from leapcast.train.toto_distill import acceptance as overlap
    from leapcast.train.toto_distill import heads

    p_size = target.patch_size
    tensors = [torch.tensor(c[-target.context_length :], dtype=torch.float32) for c in contexts]
    path = Forecaster(target).predict(tensors, horizon, num_samples=1, seed=seed, progress=False)[:, 0].double()
    rows = []
    for c, continuation in zip(tensors, path.numpy()):
        lead = (-len(c)) % p_size  # the context ends on a patch boundary, as at inference
        rows.append(np.concatenate([np.full(lead, np.nan), c.double().numpy(), continuation]))
    width = max(len(r) for r in rows)
    width += (-width) % p_size
    values = np.full((len(rows), width), np.nan)
    for i, r in enumerate(rows):
        values[i, : len(r)] = r
    batch = scale_patches(values, target.cfg)
    # [N, L - 1, P, C]: the heads of patches 1..L-1, as each model decodes from them (its spread)
    p, q = (model.spread_out(heads(model.net, batch)) for model in (target, draft))
    out = []
    for i, r in enumerate(rows):
        first = (len(r) - horizon) // p_size  # the continuation's first patch
        last = -(-len(r) // p_size)
        mask = torch.zeros(batch.observed.shape[2:], dtype=torch.bool)  # [L - 1, P]
        mask[first - 1 : last - 1] = batch.observed[i, 0, first - 1 : last - 1]
        pick = [h_.rows(torch.tensor([i])) for h_ in (p, q)]
        out.append(overlap(pick[0], pick[1], mask[None], draws))
    return np.array(out)


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
    p.add_argument("--horizon", type=int, default=64, help="Toto pairs: values of the target's continuation scored")
    p.add_argument("--draws", type=int, default=256, help="Toto pairs: the draft's proposals per patch")
    p.add_argument("--out", type=Path, default=RESULTS / "acceptance.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    target, draft = load_model(resolve(args.target)), load_model(resolve(args.draft))
    if isinstance(target, Toto):
        return toto_main(args, target, draft)
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


def toto_main(args, target: Toto, draft) -> None:
    target.check_draft(draft)
    per_dataset, all_rows = {}, []
    for name in args.datasets:
        train = load(name).train
        ids = set(sorted(train["unique_id"].unique())[: args.max_series])
        series = [g["y"].to_numpy(float) for key, g in train.groupby("unique_id") if key in ids]
        rows = np.concatenate(
            [
                patch_acceptance(
                    target, draft, series[i : i + args.batch_size], args.horizon, args.draws, args.seed + i
                )
                for i in range(0, len(series), args.batch_size)
            ]
        )
        per_dataset[name] = dict(patch=float(rows[:, 0].mean()), value=float(rows[:, 1].mean()), series=len(series))
        all_rows.append(rows)
        print(
            f"{name:18s} series {len(series):4d}  whole-patch acceptance {rows[:, 0].mean():.3f}  "
            f"per value {rows[:, 1].mean():.3f}",
            flush=True,
        )
    rows = np.concatenate(all_rows)
    result = dict(
        benchmark="acceptance",
        date=str(date.today()),
        command="python " + " ".join(sys.argv),
        target=args.target,
        draft=args.draft,
        patch_size=target.patch_size,
        horizon=args.horizon,
        draws=args.draws,
        overall=dict(patch=float(rows[:, 0].mean()), value=float(rows[:, 1].mean())),
        per_dataset=per_dataset,
    )
    print(
        f"overall: whole-patch acceptance {result['overall']['patch']:.3f}, per value {result['overall']['value']:.3f}"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
