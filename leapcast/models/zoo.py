"""Random-weight checkpoints of a family's official sizes, for speed tests (they forecast noise).

The family-agnostic door for the CLI (`leapcast init`) and the bench (`random:SIZE`):
callers name a family and a size, never a family's classes.
"""

from __future__ import annotations

from pathlib import Path

from leapcast.checks import check_int, param
from leapcast.models.chronos_tokenizer import ChronosTokenizerConfig
from leapcast.models.presets import CHRONOS_T5_SIZES, chronos_t5_config, random_chronos_t5, save_chronos_t5
from leapcast.models.t5 import T5Config
from leapcast.models.toto import TotoOptions
from leapcast.models.toto_presets import TOTO_SIZES, random_toto, save_toto, toto_config

FAMILIES = ("chronos-t5", "toto")
SIZES = tuple(CHRONOS_T5_SIZES)
FAMILY_SIZES = {"chronos-t5": tuple(CHRONOS_T5_SIZES), "toto": tuple(TOTO_SIZES)}


def write_random(
    folder: str | Path,
    size: str = "tiny",
    *,
    seed: int = 0,
    prediction_length: int = 64,
    context_length: int | None = None,
    family: str = "chronos-t5",
    name: str | None = None,
) -> Path:
    """A random-weight checkpoint of an official size, written to ``folder`` (config.json + model.safetensors).

    ``prediction_length``: Chronos' steps per window, Toto's default horizon (values); ``context_length``:
    values read (None: the family's, 512 for Chronos-T5 and 4096 for Toto).
    """
    _check_family(family)
    check_int(context_length, "context_length", none=True, must="a positive integer or None (the family's)")
    if family == "toto":
        options = TotoOptions(context_length=context_length or TotoOptions.context_length, horizon=prediction_length)
        return save_toto(
            random_toto(toto_config(size), seed=seed, options=options, name=name or f"random-toto-{size}"), folder
        )
    cfg = chronos_t5_config(size)  # names the size when it is unknown
    chronos = ChronosTokenizerConfig(prediction_length=prediction_length, context_length=context_length or 512)
    return save_chronos_t5(random_chronos_t5(cfg, chronos, seed=seed, name=name or f"random-{size}"), folder)


def write_random_pair(folder: str | Path, size: str, family: str = "chronos-t5") -> tuple[Path, Path]:
    """A random target of an official size and a 1-layer random draft with the same steps -> (target, draft) folders."""
    _check_family(family)
    if family != "chronos-t5":
        raise ValueError(f"{param('family')} {family!r}: random target-draft pairs are built for chronos-t5 only")
    folder = Path(folder)
    chronos = ChronosTokenizerConfig()
    target = write_random(folder / f"random-{size}", size, seed=0, name=f"random-{size}")
    small = T5Config(
        vocab_size=chronos.n_tokens, d_model=32, d_kv=8, d_ff=64, num_layers=1, num_decoder_layers=1, num_heads=4
    )
    draft = save_chronos_t5(
        random_chronos_t5(small, chronos, seed=1, name="random-draft"), folder / f"random-{size}-draft"
    )
    return target, draft


def _check_family(family: str) -> None:
    if family not in FAMILIES:
        raise ValueError(f"`family` must be one of {', '.join(FAMILIES)}, got {family!r}")
