"""Proposer names -> proposers: the one parser, used by the forecaster, the CLI and the bench.

Names: ``early-exit`` (depth calibrated on the contexts) or ``early-exit:M``;
``seasonal`` (season detected per series) or ``seasonal:S``; anything else
names a draft model (a checkpoint folder or a bundled name), which the caller
loads (``load_draft``): the engine reads no files.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from leapcast.checks import param
from leapcast.engine.proposers.base import Proposer
from leapcast.engine.proposers.draft_model import DraftModelProposer
from leapcast.engine.proposers.early_exit import EarlyExitProposer
from leapcast.engine.proposers.seasonal import SeasonalProposer
from leapcast.engine.proposers.seasonal_patches import SeasonalPatchProposer
from leapcast.engine.sampling import SamplingConfig

MOST = 1_000_000  # the largest depth or season a name may give (far past any model's layers or history)
KINDS = ("early-exit", "seasonal")  # model-free or target-made proposers; any other name is a draft model


@dataclass(frozen=True)
class ProposerName:
    """kind: "early-exit", "seasonal" or "model"; number: M or S (None: calibrated or detected); model: the draft's name."""

    kind: str
    number: int | None = None
    model: str | None = None


def parse(name: str) -> ProposerName:
    """A proposer name -> its parts; ValueError naming the value when it is malformed."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"{param('draft')} must be a non-empty name, got {name!r}")
    kind, colon, number = name.partition(":")
    if kind not in KINDS:
        return ProposerName("model", model=name)
    if colon and not (number.isascii() and number.isdigit() and 1 <= int(number) <= MOST):
        what = (
            "early-exit:M with M the number of decoder layers, e.g. early-exit:2"
            if kind == "early-exit"
            else f"seasonal:S with S the season in steps (1..{MOST:,}), e.g. seasonal:12"
        )
        raise ValueError(f"{param('draft')} {name!r}: write {kind} or {what}")
    return ProposerName(kind, int(number) if colon else None)


def make_proposer(
    name: str,
    target,
    *,
    k: int = 4,
    load_draft: Callable[[str], object] | None = None,
    tolerance: float | None = None,
    stop_below: float | None = None,
) -> Proposer:
    """The proposer ``name`` for ``target``; ``k``: the proposal length an early-exit calibration plans for;
    ``tolerance``: the speculative settings' (continuous heads take the seasonal proposer only with one);
    ``stop_below``: theirs too (it reads a draft's token probabilities: refused where there are none)."""
    parsed = parse(name)
    continuous = target.head_kind != "categorical"
    if stop_below is not None and (continuous or parsed.kind == "seasonal"):
        raise ValueError(
            f"{param('stop_below')} {stop_below!r} stops a draft whose own token probabilities fall low; "
            + (
                f"{target.name!r} forecasts patches, whose drafts have none"
                if continuous
                else "the seasonal proposer offers fixed tokens, without probabilities"
            )
            + ", so leave it unset"
        )
    if continuous and parsed.kind == "seasonal" and tolerance is not None:
        return SeasonalPatchProposer(target, parsed.number)
    if continuous and parsed.kind == "seasonal":
        raise ValueError(
            f"{param('draft')} {name!r}: the seasonal proposer offers a fixed patch, and under exact verification a "
            f"fixed value of a continuous density has probability zero, so {target.name!r} would reject every proposal; "
            "use a draft model or early-exit:M; for mean decoding (top_k 1) a tolerance lets it propose (`leapcast "
            "forecast --tolerance TAU --top-k 1`, or SpecConfig(tolerance=...) in Python; the server has none)"
        )
    if continuous and parsed.kind == "early-exit" and parsed.number is None:
        raise ValueError(
            f"{param('draft')} {name!r}: early-exit calibrates its depth on categorical heads; "
            f"name the depth for {target.name!r}, e.g. early-exit:2"
        )
    if parsed.kind == "early-exit":
        # the depth is calibrated on the checkpoint's own warping (the forecast's may differ; the output is exact either way)
        return EarlyExitProposer(target, parsed.number, k=k, sampling=SamplingConfig(**target.default_sampling()))
    if parsed.kind == "seasonal":
        return SeasonalProposer(target, parsed.number)
    if load_draft is None:
        raise ValueError(f"{param('draft')} {name!r} names a draft model, and no loader was given to read it")
    assert parsed.model is not None  # kind "model": the draft's name
    return DraftModelProposer(load_draft(parsed.model), target)
