"""The optimisation loop pretraining runs share, whatever the family: AdamW with linear warm-up and cosine
decay, gradients clipped at norm 1, a progress bar, and resumable checkpoints.

Each save writes the model (``save_model``: config.json + model.safetensors in the family's official layout)
with the optimizer state (trainer_state/: optimizer.safetensors + state.json, no pickle; a folder of its own, as a
checkpoint's loader reads every .safetensors beside config.json) and the loss log into
``out/checkpoint-<step>`` and ``out/last``; a run whose ``out/last`` holds them resumes there, drawing fresh crops
(``reseed``). Each folder is written whole under a temporary name, then put in place, so a run stopped while
saving resumes from the previous save, never from weights and optimizer state of two different steps.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import MISSING, asdict, fields
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

TRAINER_STATE = "trainer_state"  # the folder of a save's optimizer state and step


RESUMABLE = ("steps", "threads", "lr", "save_every")  # what a resumed run may change; the rest is what it trains


def start_run(cfg, record: str = "train_config.json") -> Path:
    """What every run does first: torch's threads and seed from ``cfg``, its out_dir made, ``cfg`` recorded there
    as ``record``; returns ``out_dir/last``, where a resumed run's checkpoint is. A run that resumes must have been
    started with the same config (but ``RESUMABLE``), and a distillation may not write into its target's folder."""
    out = Path(cfg.out_dir)
    target = getattr(cfg, "target", None)
    if target is not None and (
        out.resolve() == Path(target).resolve() or out.resolve() in Path(target).resolve().parents
    ):
        raise ValueError(
            f"`out_dir` {str(out)!r} holds the target {target!r}; the draft would be saved over it: name another folder"
        )
    recover(out / "last")
    if (out / "last" / "config.json").is_file() and (out / record).is_file():
        defaults = {f.name: f.default for f in fields(cfg) if f.default is not MISSING}
        _check_same_run(json.loads((out / record).read_text()), asdict(cfg), out, defaults)
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    out.mkdir(parents=True, exist_ok=True)
    (out / record).write_text(json.dumps(asdict(cfg), indent=2) + "\n")
    return out / "last"


def _check_same_run(before: dict, now: dict, out: Path, defaults: dict) -> None:
    """Refuse to resume ``out`` with a config that trains something else than the one it was started with; a field
    the record predates counts as its default, and folders are compared as the folders they name."""
    before = {**defaults, **before}
    changed = [
        k
        for k in sorted(set(before) | set(now))
        if k not in RESUMABLE and _plain(k, before.get(k)) != _plain(k, now.get(k))
    ]
    if changed:
        k = changed[0]
        raise ValueError(
            f"{out} holds a run started with another config ({len(changed)} fields differ, e.g. `{k}`: "
            f"{before.get(k)!r} there, {now.get(k)!r} now); resume it with the config it was started with (only "
            f"{', '.join(f'`{r}`' for r in RESUMABLE)} may change), or name a fresh `out_dir`"
        )


def _plain(key: str, value):
    """A config value as JSON records it (tuples come back as lists), folders as absolute paths."""
    if key in ("out_dir", "target", "init_from") and isinstance(value, str) and Path(value).exists():
        return str(Path(value).resolve())
    return list(value) if isinstance(value, tuple) else value


def check_loss(loss: torch.Tensor, step: int, lr: float, last: Path) -> None:
    """Stop a run whose loss is no longer a number: saving it would keep weights that forecast nothing."""
    if not math.isfinite(loss.item()):
        raise ValueError(
            f"the loss became {loss.item()} at step {step} (learning rate {lr:.3g}); the run stopped, its last save "
            f"({last}) is kept: lower `lr` and run the same command again to resume from it"
        )


def check_weights(net: nn.Module, step: int, lr: float, last: Path) -> None:
    """Before a save: an update can leave weights that are no longer numbers while the loss that led to it was
    one; such a save would replace the last good one, and every resume would fail from it."""
    if not all(bool(torch.isfinite(p).all()) for p in net.parameters()):
        raise ValueError(
            f"the weights are no longer numbers after step {step} (learning rate {lr:.3g}); the run stopped "
            f"without saving them, its last save ({last}) is kept: lower `lr` and run the same command again"
        )


def fit(
    cfg,
    net: nn.Module,
    next_loss: Callable[[], torch.Tensor],
    save_model: Callable[[Path], None],
    reseed: Callable[[int], None],
    desc: str,
    progress: bool = True,
) -> Path:
    """Train ``net`` to ``cfg.steps`` (lr, warmup, weight_decay, save_every from ``cfg``) on ``next_loss()``
    batches, resuming from ``cfg.out_dir/last``; returns that folder."""
    out = Path(cfg.out_dir)
    last = out / "last"
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    step, log = resume(last, opt)
    reseed(step)
    seconds = float((last / "wall_seconds.txt").read_text()) if (last / "wall_seconds.txt").is_file() else 0.0

    def schedule(s: int) -> float:  # linear warm-up, then cosine decay to 0 at cfg.steps
        return min(1.0, (s + 1) / cfg.warmup) * 0.5 * (1 + math.cos(math.pi * min(s, cfg.steps) / cfg.steps))

    net.train()
    bar = tqdm(total=cfg.steps, initial=step, desc=desc, disable=not progress)
    started = time.perf_counter()
    while step < cfg.steps:
        for group in opt.param_groups:
            group["lr"] = cfg.lr * schedule(step)
        loss = next_loss()
        check_loss(loss, step + 1, opt.param_groups[0]["lr"], last)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        step += 1
        log.append({"step": step, "loss": loss.item(), "lr": opt.param_groups[0]["lr"]})
        bar.set_postfix(loss=f"{log[-1]['loss']:.3f}")
        bar.update(1)
        if step % cfg.save_every == 0 or step == cfg.steps:
            check_weights(net, step, opt.param_groups[0]["lr"], last)
            net.eval()
            for folder in (out / f"checkpoint-{step}", last):
                save(folder, save_model, opt, step, log)
            # wall time over every session of the run: the CPU-hours a model card states
            (last / "wall_seconds.txt").write_text(f"{seconds + time.perf_counter() - started:.0f}\n")
            net.train()
    bar.close()
    net.eval()
    return last


def resume(folder: Path, opt: torch.optim.Optimizer) -> tuple[int, list]:
    """The step and loss log of the save in ``folder``, its optimizer state loaded into ``opt``; (0, []) when there
    is none (a fresh run)."""
    saved = load_optimizer(folder)
    if saved is None:
        return 0, []
    state, step = saved
    opt.load_state_dict(state)
    return step, json.loads((folder / "log.json").read_text())


def save(folder: Path, save_model: Callable[[Path], None], opt: torch.optim.Optimizer, step: int, log: list) -> None:
    """A whole save into ``folder`` (``write_whole``): the model, the optimizer state at ``step``, the loss log."""

    def write(into: Path) -> None:
        save_model(into)
        save_optimizer(into, opt.state_dict(), step)
        (into / "log.json").write_text(json.dumps(log) + "\n")

    write_whole(folder, write)


def write_whole(folder: Path, write: Callable[[Path], None]) -> None:
    """``write(tmp)`` into ``folder.partial``, then put it in ``folder``'s place (the old one kept as
    ``folder.previous`` until the new one is there: ``recover`` finishes a swap a stop interrupted)."""
    partial, previous = folder.with_name(folder.name + ".partial"), folder.with_name(folder.name + ".previous")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    write(partial)
    (partial / "complete").write_text("")  # written last: the folder holds a whole save
    if folder.exists():
        shutil.rmtree(previous, ignore_errors=True)
        folder.rename(previous)
    partial.rename(folder)
    shutil.rmtree(previous, ignore_errors=True)


def recover(last: Path) -> None:
    """Finish or undo a save that a stop interrupted: a whole ``last.partial`` takes ``last``'s place when ``last``
    is gone; otherwise ``last.previous`` comes back; an unfinished ``last.partial`` is dropped."""
    partial, previous = last.with_name(last.name + ".partial"), last.with_name(last.name + ".previous")
    if not last.exists():
        if (partial / "complete").is_file():
            partial.rename(last)
        elif previous.exists():
            previous.rename(last)
    shutil.rmtree(partial, ignore_errors=True)
    shutil.rmtree(previous, ignore_errors=True)


def save_optimizer(folder: Path, state: dict, step: int) -> None:
    """AdamW's state as safetensors (its tensors) and JSON (its settings and the step) in ``folder/trainer_state``:
    nothing pickled."""
    from safetensors.torch import save_file

    into = folder / TRAINER_STATE
    into.mkdir(parents=True, exist_ok=True)
    tensors = {
        f"{index}.{name}": value.detach().contiguous()
        for index, entry in state["state"].items()
        for name, value in entry.items()
        if isinstance(value, torch.Tensor)
    }
    save_file(tensors, str(into / "optimizer.safetensors"))
    (into / "state.json").write_text(json.dumps({"step": step, "param_groups": state["param_groups"]}) + "\n")


def load_optimizer(folder: Path) -> tuple[dict, int] | None:
    """(the optimizer's state dict, the step) of a save in ``folder``, or None when it holds none. A save from
    before ``trainer_state/`` (trainer_state.pt) is read with torch's weights-only loader."""
    saved = folder / TRAINER_STATE
    if (saved / "state.json").is_file() and (saved / "optimizer.safetensors").is_file():
        from safetensors.torch import load_file

        meta = json.loads((saved / "state.json").read_text())
        state: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in load_file(str(saved / "optimizer.safetensors")).items():
            index, name = key.split(".", 1)
            state.setdefault(int(index), {})[name] = value
        return {"state": state, "param_groups": meta["param_groups"]}, int(meta["step"])
    if (folder / "trainer_state.pt").is_file():
        old = torch.load(folder / "trainer_state.pt", weights_only=True)
        return old["optimizer"], int(old["step"])
    return None
