"""What the compiled step's settings cost when patched around every call.

``CompiledDecoder`` patches inductor's and dynamo's settings around a call only when its input signature is new
(dynamo compiles only then); before, it patched them around every call. Two forecasters of one model, each with its
own compiled graph, forecast the same series in one process, interleaved call by call: the library's, and one made
to patch every call. Their forecasts should be equal (a line says so where not); the table gives each one's median time per
forecast and the median ratio of the pairs (bfloat16 tier, compiled, h 64, 20 paths, M3-monthly contexts where the
data extra is installed).

    python benchmarks/compiled_calls.py --out benchmarks/results/compiled_calls.md
    python benchmarks/compiled_calls.py --models house-target --batches 1 --repeats 3   # quick
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch

from leapcast import Forecaster

sys.path.insert(0, str(Path(__file__).parent))
from encoder_attention import folder_of  # noqa: E402
from speculative import contexts  # noqa: E402


class PatchEveryCall(set):
    """A ``CompiledDecoder.seen`` that never holds a signature: every call patches the settings, as before."""

    def __contains__(self, key: object) -> bool:
        return False


def measure(name: str, batch: int, horizon: int, repeats: int, tmp: Path) -> dict:
    folder = folder_of(name, tmp)
    library = Forecaster.from_pretrained(folder, dtype="bfloat16", compile=True)
    every = Forecaster.from_pretrained(folder, dtype="bfloat16", compile=True)
    every.model._compiled.seen = PatchEveryCall()
    ctx = contexts(batch)
    kw = dict(num_samples=20, seed=0, batch_size=batch, progress=False)
    outputs = [np.asarray(fc.predict(ctx, horizon, **kw)) for fc in (library, every)]  # compiles
    if not np.array_equal(*outputs):  # autotuning may pick other kernels for the twin's graph: worth a look
        print(f"{name}, batch {batch}: the two forecasters' forecasts differ", flush=True)
    times: dict[str, list[float]] = {"library": [], "every": []}
    for _ in range(repeats):
        for label, fc in (("library", library), ("every", every)):
            start = time.perf_counter()
            fc.predict(ctx, horizon, **kw)
            times[label].append(time.perf_counter() - start)
    return dict(
        model=name,
        batch=batch,
        library_ms=statistics.median(times["library"]) * 1e3,
        every_ms=statistics.median(times["every"]) * 1e3,
        speedup=statistics.median(e / a for e, a in zip(times["every"], times["library"])),
        calls=library.model._compiled.calls // (repeats + 1),
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["house-target", "small"])
    p.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    p.add_argument("--horizon", type=int, default=64)
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    lines = [
        f"`python benchmarks/compiled_calls.py {' '.join(sys.argv[1:])}` ({date.today()}, torch {torch.__version__}, "
        f"{args.threads} threads, bfloat16 compiled, h {args.horizon}, 20 paths, median of {args.repeats} "
        "interleaved pairs)",
        "",
        "| model | batch | compiled calls a forecast | settings patched every call | on new signatures only | speedup |",
        "|---|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            for batch in args.batches:
                row = measure(name, batch, args.horizon, args.repeats, Path(tmp))
                lines.append(
                    f"| {name} | {batch} | {row['calls']} | {row['every_ms']:.1f} ms | {row['library_ms']:.1f} ms | "
                    f"x{row['speedup']:.3f} |"
                )
                print(lines[-1], flush=True)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(lines) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
