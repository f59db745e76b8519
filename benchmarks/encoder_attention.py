"""Chronos-T5's encoder in the bfloat16 tier: attention in the tier (the library) against attention in float32.

The encoder's q, k and v come out of the tier's products as bfloat16 values; the library hands them to the fused
attention in bfloat16 (float32 bias, scores and softmax inside the kernel), where before it widened them to
float32 first. Both versions of the encoder layer run in one process, interleaved pass by pass, on the same
tokens (random ids, one series padded on the left by 50 positions); the table gives the median time of each and
the median ratio of the pairs, and each version's largest difference from the float64 encoder of the same
weights, so that the change's cost in accuracy is beside its speed.

    python benchmarks/encoder_attention.py --out benchmarks/results/encoder_attention.md
    python benchmarks/encoder_attention.py --models small --batch 2 --repeats 3 --out FILE   # quick
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
from torch.nn import functional as F

from leapcast.models import t5
from leapcast.models.loading import load_model
from leapcast.models.presets import chronos_t5_config, random_chronos_t5, save_chronos_t5
from leapcast.registry import resolve

LIBRARY = t5.EncoderLayer.forward


def float32_attention(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """The encoder layer as it was: q, k and v widened to float32 before the attention."""
    b, length, _ = x.shape
    qkv = self.qkv(self.norm_attn(x)).view(b, length, 3, self.heads, self.d_kv)
    q, k, v = qkv.permute(2, 0, 3, 1, 4)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=1.0)
    x = x + self.o(out.transpose(1, 2).reshape(b, length, -1))
    return x + self.ff(self.norm_ff(x))


def folder_of(name: str, tmp: Path) -> Path:
    """A size of the official configuration (random weights), a checkpoint folder, or a bundled model's name."""
    if Path(name).is_dir():
        return Path(name)
    if name in ("small", "base", "mini", "tiny", "large"):
        return save_chronos_t5(random_chronos_t5(chronos_t5_config(name), seed=0), tmp / name)
    return resolve(name)


def measure(name: str, batch: int, length: int, repeats: int, tmp: Path) -> dict:
    folder = folder_of(name, tmp)
    net = load_model(folder, dtype="bfloat16").net
    reference = load_model(folder, dtype="float32").net.double()
    vocab = net.embed.weight.shape[0]
    tokens = torch.randint(3, vocab, (batch, length), generator=torch.Generator().manual_seed(0))
    mask = torch.ones(batch, length, dtype=torch.bool)
    mask[0, :50] = False  # one series padded on the left
    times: dict[str, list[float]] = {"float32 attention": [], "attention in the tier": []}
    errors = {}
    versions = (("float32 attention", float32_attention), ("attention in the tier", LIBRARY))
    try:
        with torch.inference_mode():
            want = reference.encode(tokens, mask)
            for label, forward in versions:
                t5.EncoderLayer.forward = forward
                errors[label] = float((net.encode(tokens, mask).double() - want).abs().max())
            for _ in range(repeats):
                for label, forward in versions:
                    t5.EncoderLayer.forward = forward
                    start = time.perf_counter()
                    net.encode(tokens, mask)
                    times[label].append(time.perf_counter() - start)
    finally:
        t5.EncoderLayer.forward = LIBRARY
    before, after = times["float32 attention"], times["attention in the tier"]
    return dict(
        model=name,
        batch=batch,
        length=length,
        before_ms=statistics.median(before) * 1e3,
        after_ms=statistics.median(after) * 1e3,
        speedup=statistics.median(b / a for b, a in zip(before, after)),
        max_error_before=errors["float32 attention"],
        max_error_after=errors["attention in the tier"],
        scale=float(want.abs().max()),
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["base", "small", "house-target"])
    p.add_argument("--batch", type=int, nargs="+", default=None, help="per model (default: 1 for base, 32, 64)")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    defaults = {"base": 1, "small": 32, "house-target": 64}
    batches = args.batch or [defaults.get(m, 1) for m in args.models]
    if len(batches) != len(args.models):
        p.error(f"--batch takes one value per model ({len(args.models)}), got {len(batches)}")
    lines = [
        f"`python benchmarks/encoder_attention.py {' '.join(sys.argv[1:])}` ({date.today()}, "
        f"torch {torch.__version__}, {args.threads} threads, median of {args.repeats} interleaved pairs)",
        "",
        "| model | batch | positions | float32 attention | attention in the tier | speedup | "
        "max error vs float64 (before / after) | output scale |",
        "|---|---|---|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for name, batch in zip(args.models, batches):
            length = 129 if name == "house-target" else 513  # the context plus the EOS token
            row = measure(name, batch, length, args.repeats, Path(tmp))
            lines.append(
                f"| {name} | {batch} | {length} | {row['before_ms']:.1f} ms | {row['after_ms']:.1f} ms | "
                f"x{row['speedup']:.2f} | {row['max_error_before']:.2e} / {row['max_error_after']:.2e} | "
                f"{row['scale']:.2f} |"
            )
            print(lines[-1], flush=True)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(lines) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
