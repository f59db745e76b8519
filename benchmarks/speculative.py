"""Speculative decoding against plain decoding on the same target, interleaved in one process.

For each proposer and k (and adaptive k), batch 1 and 16 series x 20 sample
paths, h=64: the median speedup over repeats (--adaptive-repeats for adaptive k), the measured acceptance a, mean
accepted length, the draft cost ratio c (one draft step / one target step), the
verify cost v(k) (one target pass over k + 1 positions / one target step; c and
v(k) from passes timed in turn) and the bound (1 - a^(k+1)) / ((1 - a)(k c + v)),
with v = 1 (as on a GPU) and with v = v(k). Plots: speedup vs k per proposer,
acceptance per position.

    python benchmarks/speculative.py --target PATH --draft PATH          # a trained pair
    python benchmarks/speculative.py --target small --draft tiny          # random weights (acceptance meaningless)
    python benchmarks/speculative.py --project                            # cost projection for the official sizes

Random-weight pairs measure costs only: their acceptance says nothing about a
trained pair. ``--project`` measures per-step and verify costs of random-weight
checkpoints of the official chronos-t5 configurations on this machine and
combines them with acceptance rates given on the command line (clearly a
projection, not a measurement).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from datetime import date
from pathlib import Path

import torch

from leapcast import Forecaster, SpecConfig
from leapcast.engine.speculative import speedup_bound
from leapcast.eval.plots import acceptance_per_position, figure, save, speedup_vs_k
from leapcast.eval.timing import interleaved, pass_costs, timed
from leapcast.models.presets import CHRONOS_T5_SIZES, chronos_t5_config, random_chronos_t5, save_chronos_t5

RESULTS = Path(__file__).parent / "results"


def checkpoint(spec: str, tmp: Path) -> Path:
    """A folder/bundled name as is, or a random-weight checkpoint of an official size."""
    if spec in CHRONOS_T5_SIZES:
        return save_chronos_t5(
            random_chronos_t5(chronos_t5_config(spec), seed=len(spec), name=f"random-{spec}"), tmp / spec
        )
    return Path(spec)


def contexts(batch: int, length: int = 512) -> list[torch.Tensor]:
    """M3 monthly contexts when the data extra is installed, else noisy seasonal walks."""
    try:
        from leapcast.data import load

        train = load("m3-monthly").train
        groups = [torch.tensor(g["y"].to_numpy(), dtype=torch.float32) for _, g in train.groupby("unique_id")]
        return [g[-length:] for g in sorted(groups, key=len, reverse=True)[:batch]]
    except ImportError:
        g = torch.Generator().manual_seed(0)
        t = torch.arange(float(length))
        return [
            10 + torch.sin(t * 2 * torch.pi / 12) * 3 + torch.randn(length, generator=g).cumsum(0) * 0.2
            for _ in range(batch)
        ]


def costs_of(fcs: dict[str, Forecaster], batch: int, samples: int, widths: list[int], capacity: int, repeats: int):
    """``pass_costs`` on the forecasts' contexts, rows in lockstep at position capacity / 2 (earlier where the
    widest pass would not fit)."""
    at = min(capacity // 2, capacity - max(widths))
    models = {name: fc.model for name, fc in fcs.items()}
    return pass_costs(models, torch.stack(contexts(batch)), samples, widths, capacity, at, repeats)


def measure(args) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        target = checkpoint(args.target, Path(tmp))
        draft = checkpoint(args.draft, Path(tmp)) if args.draft else None
        tier = dict(dtype=args.dtype, compile=args.compile)
        plain = Forecaster.from_pretrained(target, **tier)
        for batch in args.batches:
            ctx = contexts(batch)
            models = {"target": plain} | ({"draft": Forecaster.from_pretrained(draft, **tier)} if draft else {})
            widths = sorted({1} | {k + 1 for k in args.ks})
            costs = costs_of(models, batch, args.samples, widths, args.horizon + max(args.ks) + 1, 25)
            cost_target = costs[("target", 1)]
            for proposer in args.proposers:
                name = str(draft) if proposer == "draft" else proposer
                if proposer == "draft" and draft is None:
                    continue
                c = 0.0
                if proposer == "draft":
                    c = costs[("draft", 1)] / cost_target
                elif proposer.startswith("early-exit"):
                    m = int(proposer.split(":")[1])
                    c = m / len(plain.model.net.dec_layers)
                configs = [SpecConfig(k=k, adaptive=False) for k in args.ks] + (
                    [SpecConfig(k=max(args.ks), adaptive=True)] if args.adaptive else []
                )
                for spec in configs:
                    fc = Forecaster.from_pretrained(target, draft=name, spec=spec, **tier)
                    verify = costs[("target", spec.k + 1)] / cost_target  # v(k)
                    kw = dict(num_samples=args.samples, seed=0, batch_size=batch, progress=False)
                    run_plain, run_spec = (
                        (lambda: plain.predict(ctx, args.horizon, **kw)),
                        (lambda: fc.predict(ctx, args.horizon, **kw)),
                    )
                    first = (
                        timed(run_plain)[0] / timed(run_spec)[0] if args.warmup else None
                    )  # the call that explores k
                    timing = interleaved(run_plain, run_spec, args.adaptive_repeats if spec.adaptive else args.repeats)
                    st = fc.last_stats
                    a = st.acceptance_rate
                    row = dict(
                        proposer=proposer,
                        k=spec.k,
                        adaptive=spec.adaptive,
                        batch=batch,
                        horizon=args.horizon,
                        samples=args.samples,
                        threads=args.threads,
                        plain_s=timing.base_median,
                        spec_s=timing.other_median,
                        speedup=timing.speedup,
                        first_call_speedup=first,
                        acceptance=a,
                        mean_accepted_length=st.mean_accepted_length,
                        cost_ratio=c,
                        bound=speedup_bound(a, spec.k, c),
                        dtype=args.dtype,
                        compiled=args.compile,
                        verify_cost=verify,
                        bound_with_verify=speedup_bound(a, spec.k, c, verify),
                        accepted_per_position=[x / max(st.drafts, 1) for x in st.accepted_per_position],
                    )
                    rows.append(row)
                    print(
                        f"batch {batch:2d} {proposer:14s} k={spec.k}{' adaptive' if spec.adaptive else '':9s} speedup x{row['speedup']:.2f} "
                        + (f"(first call x{first:.2f}) " if first else "")
                        + f"(bound x{row['bound']:.2f}, with v(k)={verify:.2f}: x{row['bound_with_verify']:.2f}) a={a:.2f} mean accepted length {st.mean_accepted_length:.2f} c={c:.2f}",
                        flush=True,
                    )
    return rows


def project(args) -> list[dict]:
    """Per-step and verify costs of official configurations, combined with given acceptance rates."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        fcs = {s: Forecaster.from_pretrained(checkpoint(s, Path(tmp))) for s in args.project_sizes}
        for batch in args.batches:
            costs = costs_of(fcs, batch, args.samples, sorted({1} | {k + 1 for k in args.ks}), 2 * max(args.ks) + 2, 5)
            one = {s: costs[(s, 1)] for s in fcs}
            for target in args.project_targets:
                verify = {k: costs[(target, k + 1)] / one[target] for k in args.ks}
                for drafter in args.project_drafts:
                    c = one[drafter] / one[target]
                    for a in args.acceptance:
                        best = max(args.ks, key=lambda k: _projected(a, k, c, verify[k]))
                        rows.append(
                            dict(
                                target=target,
                                draft=drafter,
                                batch=batch,
                                acceptance=a,
                                cost_ratio=c,
                                best_k=best,
                                verify_cost={str(k): v for k, v in verify.items()},
                                projected_speedup=_projected(a, best, c, verify[best]),
                            )
                        )
                        print(
                            f"PROJECTION batch {batch:2d} {drafter}->{target} a={a:.2f} c={c:.3f} v(k)={verify[best]:.2f} best k={best} x{rows[-1]['projected_speedup']:.2f}",
                            flush=True,
                        )
    return rows


def _projected(a: float, k: int, c: float, v: float) -> float:
    """Expected steps per iteration over its cost in target steps: k draft steps plus one k+1-position verify."""
    gained = (k + 1) if a >= 1 else (1 - a ** (k + 1)) / (1 - a)
    return gained / (k * c + v)


def plots(rows: list[dict], out: Path) -> None:
    fig, (a, b) = figure(2)
    fixed = [r for r in rows if not r["adaptive"]]
    speedup_vs_k(a, fixed, lambda r: f"{r['proposer']}, batch {r['batch']}")
    smallest = min(r["batch"] for r in rows)
    acceptance_per_position(b, [r for r in fixed if r["batch"] == smallest], lambda r: r["proposer"])
    save(fig, out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", default="small")
    p.add_argument("--draft", default="tiny")
    p.add_argument("--proposers", nargs="+", default=["draft", "early-exit:1", "seasonal"])
    p.add_argument("--ks", nargs="+", type=int, default=[1, 2, 3, 4, 6, 8])
    p.add_argument("--adaptive", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--batches", nargs="+", type=int, default=[1, 16])
    p.add_argument("--horizon", type=int, default=64)
    p.add_argument("--samples", type=int, default=20)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument(
        "--adaptive-repeats",
        type=int,
        default=7,
        help="pairs for the adaptive cells: one call of the same work varies by 5-10%% here, and their goal is a "
        "floor (never below x0.95 at batch 16), which a median of 3 misses by chance",
    )
    p.add_argument(
        "--warmup",
        action="store_true",
        help="time one call of each first, reported apart (adaptive k explores in it), then the repeats",
    )
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--dtype", default="float32", help="the tier of target and draft (float32, bfloat16, auto)")
    p.add_argument("--compile", action="store_true", help="compile=True for target and draft (one-position steps)")
    p.add_argument("--project", action="store_true", help="cost projection for official sizes instead of a measurement")
    p.add_argument("--project-sizes", nargs="+", default=["tiny", "mini", "small", "base"])
    p.add_argument("--project-targets", nargs="+", default=["small", "base"])
    p.add_argument("--project-drafts", nargs="+", default=["tiny", "mini"])
    p.add_argument("--acceptance", nargs="+", type=float, default=[0.7, 0.8, 0.9])
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    stem = "speculative-projection" if args.project else "speculative"
    out = args.out or RESULTS / f"{stem}.json"
    rows = project(args) if args.project else measure(args)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            dict(
                benchmark=stem,
                date=str(date.today()),
                torch=torch.__version__,
                command="python " + " ".join(sys.argv),
                rows=rows,
            ),
            indent=2,
        )
        + "\n"
    )
    if not args.project and rows:
        plots(rows, out.with_suffix(".png"))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
