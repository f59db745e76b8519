"""The uniform average of checkpoints of one training run (a "model soup", Wortsman et al. 2022), as a folder.

An experiment, not bundled (docs/training.md, "Averaged checkpoints"): the averaged weights go to OUT with the
first checkpoint's config.json.

    python benchmarks/experiments/average_checkpoints.py OUT CHECKPOINT [CHECKPOINT ...]
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from safetensors.torch import load_file, save_file


def average(folders: list[Path], out: Path) -> Path:
    """folders: checkpoint folders of one architecture -> out (config.json of the first, averaged weights)."""
    states = [load_file(f / "model.safetensors") for f in folders]
    names = set(states[0])
    for folder, state in zip(folders, states):
        if set(state) != names:
            raise ValueError(f"{folder} holds other tensors than {folders[0]}: average checkpoints of one run")
    mean = {k: (sum(s[k].double() for s in states) / len(states)).to(states[0][k].dtype) for k in sorted(names)}
    out.mkdir(parents=True, exist_ok=True)
    save_file(mean, out / "model.safetensors", metadata={"format": "pt"})
    shutil.copy(folders[0] / "config.json", out / "config.json")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", type=Path)
    p.add_argument("checkpoints", type=Path, nargs="+")
    args = p.parse_args()
    try:
        print(average(args.checkpoints, args.out))
    except ValueError as e:
        raise SystemExit(str(e)) from None


if __name__ == "__main__":
    main()
