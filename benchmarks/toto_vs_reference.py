"""leapcast's plain engine on Toto against toto-ts' own ``TotoForecaster.forecast``, same random weights.

The reference runs as its README shows: KV cache on, ``samples_per_batch`` equal to the number of paths.
For each cell the two run interleaved in one process (reference, leapcast, reference, ...) and the
ratio of the medians is reported. Cells already in the results file are kept (rerun the same command
to resume); a cell whose reference KV cache would exceed ``--memory-gib`` is skipped and says so.
Before timing, each size compares leapcast's mean path with the reference's, and both with the reference
run in float64 (max relative differences: float32 rounding is the yardstick).

    python benchmarks/toto_vs_reference.py                        # the full grid (an hour or more on 2 cores)
    python benchmarks/toto_vs_reference.py --sizes small --contexts 512 --horizons 64 --repeats 1   # quick
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import warnings
from datetime import date
from pathlib import Path

import torch

from leapcast import Forecaster
from leapcast.eval.timing import interleaved
from leapcast.models.toto_presets import TOTO_SIZES, random_toto, to_reference, toto_config

RESULTS = Path(__file__).parent / "results"
CELLS = {"b1-s20": (1, 20), "b16-s20": (16, 20), "b1-s256": (1, 256)}  # name -> (series, paths)


def reference(model, dtype: torch.dtype = torch.float32):
    """toto-ts' TotoForecaster with ``model``'s weights (in ``dtype``: float64 gives the float32 runs a yardstick)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from toto.inference.forecaster import TotoForecaster
        from toto.model.toto import Toto

        cfg = model.cfg.to_dict()
        cfg["use_memory_efficient_attention"] = False  # no xFormers on this machine
        ref = Toto(**cfg).eval()
    ref.load_state_dict(to_reference(model.net), strict=True)
    return TotoForecaster(ref.to(dtype).model)


def masked(contexts: torch.Tensor):
    """contexts [B, T] -> the reference's MaskedTimeseries of B univariate items."""
    from toto.data.util.dataset import MaskedTimeseries

    b, t = contexts.shape
    series = contexts[:, None]
    return MaskedTimeseries(
        series=series,
        padding_mask=torch.ones_like(series, dtype=torch.bool),
        id_mask=torch.zeros_like(series, dtype=torch.int),
        timestamp_seconds=torch.zeros((b, 1, t), dtype=torch.long),
        time_interval_seconds=torch.ones((b, 1), dtype=torch.long),
    )


def cache_gib(cfg, rows: int, length: int) -> float:
    """The reference's KV cache for ``rows`` rows and ``length`` values: time-wise layers x K and V, float32."""
    time_layers = sum(not s for s in cfg.spacewise())
    return rows * time_layers * 2 * (length // cfg.patch_size + 1) * cfg.embed_dim * 4 / 2**30


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["small", "base"], choices=list(TOTO_SIZES))
    parser.add_argument("--contexts", nargs="+", type=int, default=[512, 2048])
    parser.add_argument("--horizons", nargs="+", type=int, default=[64, 336, 720])
    parser.add_argument("--cells", nargs="+", default=list(CELLS), choices=list(CELLS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--memory-gib", type=float, default=8.0, help="Skip cells whose reference KV cache is larger.")
    parser.add_argument("--out", type=Path, default=RESULTS / "toto_vs_reference.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    done = json.loads(args.out.read_text())["rows"] if args.out.is_file() else []
    key = ("size", "context", "horizon", "cell")
    seen = {tuple(r[k] for k in key) for r in done}
    rows = list(done)
    checks = {}
    with tempfile.TemporaryDirectory():
        for size in args.sizes:
            model = random_toto(toto_config(size), seed=0, name=f"toto-{size}")
            ours, ref = Forecaster(model, name=f"toto-{size}"), reference(model)
            probe = torch.randn(2, 512, generator=torch.Generator().manual_seed(0)).cumsum(-1)
            h = 2 * model.patch_size
            with torch.no_grad():
                want = ref.forecast(masked(probe), h, num_samples=None, use_kv_cache=True).mean[:, 0].double()
                exact = (
                    reference(model, torch.float64)
                    .forecast(masked(probe.double()), h, num_samples=None, use_kv_cache=True)
                    .mean[:, 0]
                )
            got = ours.predict(probe, h, top_k=1, num_samples=1, progress=False)[:, 0]

            def rel(a, b):
                return float(((a - b).abs() / b.abs().clamp_min(1)).max())

            checks[size] = dict(
                leapcast_vs_reference=rel(got, want),
                leapcast_vs_reference_float64=rel(got, exact),
                reference_vs_reference_float64=rel(want, exact),
            )
            print(
                f"toto-{size}: {model.num_parameters() / 1e6:.1f}M parameters; mean path, max rel. diff: leapcast vs toto-ts "
                f"{checks[size]['leapcast_vs_reference']:.1e}; against toto-ts in float64: leapcast "
                f"{checks[size]['leapcast_vs_reference_float64']:.1e}, toto-ts float32 {checks[size]['reference_vs_reference_float64']:.1e}",
                flush=True,
            )
            for context in args.contexts:
                for horizon in args.horizons:
                    for cell in args.cells:
                        if (size, context, horizon, cell) in seen:
                            continue
                        batch, paths = CELLS[cell]
                        row = dict(
                            size=size,
                            params=model.num_parameters(),
                            context=context,
                            horizon=horizon,
                            cell=cell,
                            batch=batch,
                            paths=paths,
                            threads=args.threads,
                            repeats=args.repeats,
                        )
                        need = cache_gib(model.cfg, batch * paths, context + horizon)
                        if need > args.memory_gib:
                            row.update(skipped=f"reference KV cache {need:.1f} GiB > {args.memory_gib:g} GiB")
                        else:
                            ctx = torch.randn(batch, context, generator=torch.Generator().manual_seed(batch)).cumsum(-1)
                            series = masked(ctx)

                            def run_reference():
                                with torch.no_grad():
                                    return ref.forecast(
                                        series, horizon, num_samples=paths, samples_per_batch=paths, use_kv_cache=True
                                    )

                            timing = interleaved(
                                run_reference,
                                lambda: ours.predict(
                                    ctx, horizon, num_samples=paths, batch_size=batch, seed=0, progress=False
                                ),
                                args.repeats,
                            )
                            row.update(
                                leapcast_s=timing.other_median, reference_s=timing.base_median, speedup=timing.speedup
                            )
                        rows.append(row)
                        shown = row.get("skipped") or (
                            f"leapcast {row['leapcast_s']:.2f}s  reference {row['reference_s']:.2f}s  "
                            f"x{row['speedup']:.2f}"
                        )
                        print(f"toto-{size} ctx {context} h {horizon} {cell}: {shown}", flush=True)
                        _write(args, rows, checks)
    _write(args, rows, checks)


def _write(args, rows: list[dict], checks: dict) -> None:
    report = dict(
        benchmark="toto_vs_reference",
        date=str(date.today()),
        torch=torch.__version__,
        machine=f"{platform.machine()} {platform.processor() or ''}".strip(),
        mean_path_max_rel_diff=checks,
        rows=rows,
        command="python " + " ".join(sys.argv),
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    md = [
        "| Toto (random weights) | context | h | series x paths | threads | leapcast s | toto-ts s | speedup |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        head = f"| {r['size']} ({r['params'] / 1e6:.0f}M) | {r['context']} | {r['horizon']} | {r['batch']} x {r['paths']} | {r['threads']} |"
        if "skipped" in r:
            md.append(f"{head} - | - | skipped: {r['skipped']} |")
        else:
            md.append(f"{head} {r['leapcast_s']:.2f} | {r['reference_s']:.2f} | **x{r['speedup']:.2f}** |")
    for size, c in checks.items():
        md.append(
            f"\nMean path, toto-{size}, max relative difference: leapcast vs toto-ts {c['leapcast_vs_reference']:.1e}; "
            f"against toto-ts in float64, leapcast {c['leapcast_vs_reference_float64']:.1e} and toto-ts (float32) "
            f"{c['reference_vs_reference_float64']:.1e}."
        )
    args.out.with_suffix(".md").write_text("\n".join(md) + "\n")


if __name__ == "__main__":
    main()
