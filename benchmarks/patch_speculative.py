"""Speculative decoding on the bundled patch pair (house-patch-target, house-patch-draft), timed against plain
decoding of the same target, interleaved in one process.

Exact mode (sampled paths): batch 1 and 16 series x 20 paths, h = 64 / 336 / 720 values, k = 1, 2, 3 fixed and
adaptive k (from k = 3). Per cell: the median speedup over repeats (`--adaptive-repeats` for adaptive k), whole-patch acceptance a, the mean accepted
length, c (one draft step over one target step), v(k) (one target pass over k + 1 patches per row over a plain
pass) and the bound (1 - a^(k+1)) / ((1 - a)(k c + v(k))) they give; "share" is speedup / bound. The bound
counts a row's mean progress, while the rows of a batch pass together until the slowest is done: "passes" is the
target passes of one forecast against plain decoding's h / P, and the pass bound (h / P) / (passes (k c + v(k)))
the speedup those passes allow when only the model's time counts. speedup / pass bound is what the engine's own
work (drafting, verifying, sampling, bookkeeping) leaves of it; pass bound / bound what the slowest rows cost.

Tolerance mode (mean decoding, top_k = 1, one path, fixed k): tau is chosen per proposer on validation series
(benchmarks/validation.py's sets at their horizons, and ETTh1 / ETTh2's validation span at h = 720, every
window): the largest tau of --taus whose MASE stays within 1% of plain mean decoding on every set. Then, at
h = 720 on the ETTh1 / ETTh2 OT test windows (every window, contexts of the model's 512 values), each proposer
at its tau: speedup over plain mean decoding (every window, one at a time and all at once) and MASE (season 24) against
plain mean decoding's.

    python benchmarks/patch_speculative.py --out benchmarks/results/patch_speculative.json
    python benchmarks/patch_speculative.py --skip-exact --taus 0.05 0.1      # tolerance mode only
    python benchmarks/patch_speculative.py --skip-tolerance --ks 1 2          # exact mode only
    python benchmarks/patch_speculative.py --ceiling --tolerance-ks 2 4 8 16   # tolerance mode's ceiling only

The ceiling: mean decoding runs one row a series, where a draft step costs c of a target step and a pass over
k + 1 patches v(k), both timed on ETTh1 contexts (batch 1 and 8 series); with every proposed patch kept (a = 1)
a pass gains k + 1 patches for k c + v(k) target steps, so (k + 1) / (k c + v(k)) is the most any tau can buy
with this draft.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
import validation  # noqa: E402 - the validation sets, beside this file

from leapcast import Forecaster, SpecConfig  # noqa: E402
from leapcast.engine.speculative import speedup_bound  # noqa: E402
from leapcast.eval.backtest import ett_windows  # noqa: E402
from leapcast.eval.metrics import mase  # noqa: E402
from leapcast.eval.timing import interleaved, pass_costs, timed  # noqa: E402

ETT_SEASON = 24


def ett_contexts(batch: int, length: int = 512) -> list[torch.Tensor]:
    """``batch`` ETTh1 OT contexts of ``length`` values (z-scored), ending 24 x 7 values apart (timing only)."""
    contexts, _ = ett_windows("etth1", 96)
    y = contexts[-1]
    return [torch.tensor(y[len(y) - length - 168 * i : len(y) - 168 * i], dtype=torch.float32) for i in range(batch)]


def exact(args, log) -> list[dict]:
    plain = Forecaster.from_pretrained(args.target)
    draft = Forecaster.from_pretrained(args.draft)
    rows = []
    for batch in args.batches:
        ctx = ett_contexts(batch)
        widths = sorted({1} | {k + 1 for k in args.ks})
        costs = pass_costs(
            {"target": plain.model, "draft": draft.model}, torch.stack(ctx), args.samples, widths, 16, 4, 15
        )
        one = costs[("target", 1)]
        c = costs[("draft", 1)] / one
        v = {k: costs[("target", k + 1)] / one for k in args.ks}
        for h in args.horizons:
            configs = [SpecConfig(k=k, adaptive=False) for k in args.ks] + [SpecConfig(k=max(args.ks), adaptive=True)]
            for spec in configs:
                fc = Forecaster.from_pretrained(args.target, draft=args.draft, spec=spec)
                kw = dict(num_samples=args.samples, seed=0, batch_size=batch, progress=False)

                def run_plain():
                    return plain.predict(ctx, h, **kw)

                def run_spec():
                    return fc.predict(ctx, h, **kw)

                # the first call explores k: timed on its own
                first = timed(run_plain)[0] / timed(run_spec)[0] if spec.adaptive else None
                repeats = args.adaptive_repeats if spec.adaptive else args.repeats
                timing = interleaved(run_plain, run_spec, repeats, warmup=not spec.adaptive)
                st = fc.last_stats
                a = st.acceptance_rate
                k = spec.k
                # adaptive k: no bound (its last call may be a re-check window, whose drafts say nothing of the rest)
                drafted = st.drafted_steps and not spec.adaptive
                bound = speedup_bound(a, k, c, v[k]) if drafted else None
                steps = -(-h // plain.model.patch_size)  # plain decoding's passes
                pass_bound = steps / (st.target_passes * (k * c + v[k])) if drafted else None
                row = dict(
                    mode="exact",
                    batch=batch,
                    horizon=h,
                    samples=args.samples,
                    k=k,
                    adaptive=spec.adaptive,
                    plain_s=timing.base_median,
                    spec_s=timing.other_median,
                    speedup=timing.speedup,
                    first_call_speedup=first,
                    acceptance=a,
                    mean_accepted_length=st.mean_accepted_length,
                    cost_ratio=c,
                    verify_cost=v[k],
                    bound=bound,
                    share_of_bound=timing.speedup / bound if bound else None,
                    target_passes=st.target_passes,
                    plain_passes=steps,
                    pass_bound=pass_bound,
                    share_of_pass_bound=timing.speedup / pass_bound if pass_bound else None,
                    settled_on_plain=all(ch.off for ch in fc._choosers.values()) if spec.adaptive else None,
                    accepted_per_position=[x / max(st.drafts, 1) for x in st.accepted_per_position],
                )
                rows.append(row)
                log(
                    f"exact batch {batch:2d} h {h:3d} k={k}{' adaptive' if spec.adaptive else ''}: x{row['speedup']:.2f}"
                    + (f" (first call x{first:.2f})" if first else "")
                    + f" a={a:.3f} length {st.mean_accepted_length:.2f} c={c:.2f} v={v[k]:.2f}"
                    + (
                        f" bound x{bound:.2f} share {timing.speedup / bound:.2f}; passes {st.target_passes} / {steps}"
                        f" pass bound x{pass_bound:.2f} share {timing.speedup / pass_bound:.2f}"
                        if bound
                        else (
                            f" (adaptive: {'settled on plain' if row['settled_on_plain'] else 'drafting'})"
                            if spec.adaptive
                            else " (nothing drafted)"
                        )
                    )
                )
    return rows


def _mean_forecast(fc: Forecaster, contexts, h: int, batch: int) -> np.ndarray:
    out = fc.predict(contexts, h, num_samples=1, top_k=1, seed=0, batch_size=batch, progress=False)
    return out[:, 0].numpy()


def _ett(span: str) -> tuple[list[torch.Tensor], list[np.ndarray], np.ndarray]:
    """ETTh1 and ETTh2 OT windows at h = 720 of ``span``: (contexts of 512 values, their histories, actuals)."""
    windows = [ett_windows(name, 720, span) for name in ("etth1", "etth2")]
    histories = [c for w in windows for c in w[0]]
    contexts = [torch.tensor(c[-512:], dtype=torch.float32) for c in histories]
    return contexts, histories, np.concatenate([w[1] for w in windows])


def _tolerant(args, proposer: str, tau: float, k: int) -> Forecaster:
    return Forecaster.from_pretrained(args.target, draft=proposer, spec=SpecConfig(k=k, adaptive=False, tolerance=tau))


def choose_tau(args, log) -> tuple[dict[str, float], list[dict]]:
    """Per proposer, the largest tau whose mean-decoding MASE stays within 1% of plain mean decoding on every
    validation set: the short-horizon sets of validation.py and ETTh1 / ETTh2's validation span at h = 720."""
    plain = Forecaster.from_pretrained(args.target)
    sets = {"yearly": (6, 1, validation.yearly, 4), "quarterly": (8, 4, validation.quarterly, 3)}
    sets["monthly"] = (18, 12, validation.monthly, 3)
    data = {}
    for name, (h, season, series, origins) in sets.items():
        histories, actual = validation.windows(series(), h, season, origins)
        data[name] = ([torch.tensor(c, dtype=torch.float32) for c in histories], histories, actual, h, season)
    data["ett-validation-h720"] = (*_ett("validation"), 720, ETT_SEASON)
    base = {n: mase(a, _mean_forecast(plain, c, h, 64), hist, s) for n, (c, hist, a, h, s) in data.items()}
    rows, chosen = [], {}
    for proposer in args.tolerance_proposers:
        for tau in sorted(args.taus):
            fc = _tolerant(args, proposer, tau, args.tolerance_k)
            change = {
                n: mase(a, _mean_forecast(fc, c, h, 64), hist, s) / base[n] - 1
                for n, (c, hist, a, h, s) in data.items()
            }
            ok = all(abs(x) <= 0.01 for x in change.values())
            rows.append(dict(mode="choose-tau", proposer=proposer, tau=tau, mase_change=change, within_1pct=ok))
            log(
                f"{proposer} tau {tau}: MASE "
                + ", ".join(f"{n} {x:+.2%}" for n, x in change.items())
                + (" ok" if ok else "")
            )
            if ok:
                chosen[proposer] = tau
    return chosen, rows


def tolerance(args, taus: dict[str, float], log) -> list[dict]:
    """Each proposer at its chosen tau on the ETT test windows at h = 720: speed and MASE against plain mean decoding."""
    plain = Forecaster.from_pretrained(args.target)
    ctx, histories, actual = _ett("test")
    base_mase = mase(actual, _mean_forecast(plain, ctx, 720, len(ctx)), histories, ETT_SEASON)
    rows = []
    for proposer, tau in taus.items():
        for k in args.tolerance_ks:
            fc = _tolerant(args, proposer, tau, k)
            change = mase(actual, _mean_forecast(fc, ctx, 720, len(ctx)), histories, ETT_SEASON) / base_mase - 1
            for batch in (1, len(ctx)):  # batch 1: every window, one after another
                timing = interleaved(
                    lambda: _mean_forecast(plain, ctx, 720, batch),
                    lambda: _mean_forecast(fc, ctx, 720, batch),
                    args.repeats,
                    warmup=True,
                )
                st = fc.last_stats
                row = dict(
                    mode="tolerance",
                    tau=tau,
                    proposer=proposer,
                    k=k,
                    batch=batch,
                    horizon=720,
                    speedup=timing.speedup,
                    plain_s=timing.base_median,
                    spec_s=timing.other_median,
                    acceptance=st.acceptance_rate,
                    mean_accepted_length=st.mean_accepted_length,
                    mase_change=change,
                    windows=len(ctx),
                )
                rows.append(row)
                log(
                    f"tolerance {proposer} tau {tau} k={k} batch {batch}: x{row['speedup']:.2f} "
                    f"a={st.acceptance_rate:.3f} length {st.mean_accepted_length:.2f}, ETT test h720 MASE {change:+.2%}"
                )
    return rows


def ceiling(args, log) -> list[dict]:
    """Tolerance mode's ceiling per batch and k (the module docstring): c and v(k) at one row a series."""
    target = Forecaster.from_pretrained(args.target).model
    draft = Forecaster.from_pretrained(args.draft).model
    positions = 720 // target.patch_size
    widths = sorted({1} | {k + 1 for k in args.tolerance_ks})
    rows = []
    for batch in (1, 8):
        contexts = torch.stack(ett_contexts(batch))
        costs = pass_costs({"target": target, "draft": draft}, contexts, 1, widths, positions + 20, positions // 2, 25)
        one = costs[("target", 1)]
        c = costs[("draft", 1)] / one
        for k in args.tolerance_ks:
            v = costs[("target", k + 1)] / one
            rows.append(
                dict(
                    mode="ceiling",
                    batch=batch,
                    k=k,
                    target_step_s=one,
                    cost_ratio=c,
                    verify_cost=v,
                    ceiling=(k + 1) / (k * c + v),
                )
            )
            log(f"ceiling batch {batch} x 1 row, k={k}: c={c:.2f} v(k)={v:.2f} -> at a = 1 x{rows[-1]['ceiling']:.2f}")
    return rows


def tables(report: dict) -> str:
    """Markdown tables of a results file (``--table``): one per mode it holds."""
    rows = report["rows"]
    out = [f"`{report['command']}`"]
    exact_rows = [r for r in rows if r["mode"] == "exact"]
    if exact_rows:
        out += [
            "",
            "| batch | h | k | speedup | first call | a | mean accepted length | c | v(k) | bound | share of bound | "
            "passes (plain) | pass bound | share of pass bound |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
    for r in exact_rows:
        k = f"{r['k']} adaptive" if r["adaptive"] else str(r["k"])
        first = f"x{r['first_call_speedup']:.2f}" if r["first_call_speedup"] else ""
        passes = f"{r['target_passes']} ({r['plain_passes']})" if "target_passes" in r else ""
        if r["adaptive"]:  # the chooser's state, not a bound: the last call may be one of its re-check windows
            plain_loop = r["settled_on_plain"] if r.get("settled_on_plain") is not None else r["bound"] is None
            out.append(
                f"| {r['batch']} | {r['horizon']} | {k} | x{r['speedup']:.2f} | {first} | | | "
                f"{r['cost_ratio']:.2f} | {r['verify_cost']:.2f} | {'(plain)' if plain_loop else ''} | | {passes} | | |"
            )
            continue
        bound = f"x{r['bound']:.2f}" if r["bound"] else "(plain)"
        share = f"{r['share_of_bound']:.2f}" if r["share_of_bound"] else ""
        pass_bound = f"x{r['pass_bound']:.2f}" if r.get("pass_bound") else ""
        pass_share = f"{r['share_of_pass_bound']:.2f}" if r.get("share_of_pass_bound") else ""
        out.append(
            f"| {r['batch']} | {r['horizon']} | {k} | x{r['speedup']:.2f} | {first} | {r['acceptance']:.3f} | "
            f"{r['mean_accepted_length']:.2f} | {r['cost_ratio']:.2f} | {r['verify_cost']:.2f} | {bound} | {share} | "
            f"{passes} | {pass_bound} | {pass_share} |"
        )
    chosen = [r for r in rows if r["mode"] == "choose-tau"]
    if chosen:
        out += [
            "",
            "| proposer | tau | MASE change on the validation sets (yearly, quarterly, monthly, ETT h720) | within 1% |",
            "|---|---|---|---|",
        ]
    for r in chosen:
        change = ", ".join(f"{x:+.2%}" for x in r["mase_change"].values())
        out.append(f"| {r['proposer']} | {r['tau']} | {change} | {'yes' if r['within_1pct'] else 'no'} |")
    timed_tolerance = [r for r in rows if r["mode"] == "tolerance"]
    if timed_tolerance:
        out += [
            "",
            "| proposer | tau | k | batch | speedup | a | mean accepted length | ETT test h720 MASE change |",
            "|---|---|---|---|---|---|---|---|",
        ]
    for r in timed_tolerance:
        out.append(
            f"| {r['proposer']} | {r['tau']} | {r['k']} | {r['batch']} | x{r['speedup']:.2f} | {r['acceptance']:.3f} | "
            f"{r['mean_accepted_length']:.2f} | {r['mase_change']:+.2%} |"
        )
    ceilings = [r for r in rows if r["mode"] == "ceiling"]
    if ceilings:
        out += [
            "",
            "| batch (1 row a series) | k | target step ms | c | v(k) | speedup at a = 1 |",
            "|---|---|---|---|---|---|",
        ]
    for r in ceilings:
        out.append(
            f"| {r['batch']} | {r['k']} | {1e3 * r['target_step_s']:.2f} | {r['cost_ratio']:.2f} | "
            f"{r['verify_cost']:.2f} | x{r['ceiling']:.2f} |"
        )
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", default="house-patch-target")
    p.add_argument("--draft", default="house-patch-draft")
    p.add_argument("--batches", nargs="+", type=int, default=[1, 16])
    p.add_argument("--horizons", nargs="+", type=int, default=[64, 336, 720])
    p.add_argument("--ks", nargs="+", type=int, default=[1, 2, 3])
    p.add_argument("--samples", type=int, default=20)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument(
        "--adaptive-repeats",
        type=int,
        default=7,
        help="pairs for the adaptive cells: one call of the same work varies by 10-20%% here, and their goal is a "
        "floor (never below x0.95), which a median of 3 misses by chance",
    )
    p.add_argument("--taus", nargs="+", type=float, default=[0.01, 0.02, 0.05, 0.1, 0.2, 0.3])
    p.add_argument("--tolerance-k", type=int, default=4, help="k while tau is chosen")
    p.add_argument("--tolerance-proposers", nargs="+", default=["house-patch-draft", "seasonal"])
    p.add_argument("--tolerance-ks", nargs="+", type=int, default=[2, 4, 8])
    p.add_argument("--skip-exact", action="store_true")
    p.add_argument("--skip-tolerance", action="store_true")
    p.add_argument("--ceiling", action="store_true", help="tolerance mode's ceiling only (the module docstring)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--table", type=Path, default=None, help="print the markdown tables of this results file and stop")
    args = p.parse_args()
    if args.table:
        print(tables(json.loads(args.table.read_text())))
        return
    torch.set_num_threads(args.threads)

    def log(line: str) -> None:
        print(line, flush=True)

    taus: dict[str, float] = {}
    if args.ceiling:
        rows = ceiling(args, log)
        print(tables(dict(command="python " + " ".join(sys.argv), rows=rows)))
    else:
        rows = [] if args.skip_exact else exact(args, log)
        if not args.skip_tolerance:
            taus, chosen_rows = choose_tau(args, log)
            log(f"chosen tau per proposer: {taus}")
            rows += chosen_rows + tolerance(args, taus, log)
    if args.out:
        report = dict(
            benchmark="patch-speculative",
            date=str(date.today()),
            command="python " + " ".join(sys.argv),
            threads=args.threads,
            dtype="float32",
            target=args.target,
            draft=args.draft,
            chosen_tau=taus,
            rows=rows,
        )
        args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
