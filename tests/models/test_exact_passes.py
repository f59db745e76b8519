"""Float32 passes over several positions give the one-position steps' logits bit for bit (rows in lockstep and rows
at their own positions) where the products round a row alike in any row count, so greedy speculative decoding
repeats plain decoding; the shared masked attention does not (the negative control). MKL's products do so with
``MKL_CBWR=AUTO,STRICT``; the tiny model's products here (inputs 32 and 64 wide, 12 rows and more) do anyway."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from conftest import make_checkpoint

import leapcast.models.chronos_t5 as chronos_t5
from leapcast.models.chronos_t5 import ChronosT5
from leapcast.models.loading import load_model

ROWS, SPAN = 12, 40


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    folder = make_checkpoint(tmp_path_factory.mktemp("exact") / "m", layers=2, vocab=256, prediction_length=64)
    return load_model(folder)


def stepwise_and_passes(model, first: torch.Tensor, n: int = 5, ragged: bool = False):
    """Teacher-forced logits of one-position steps at every position, and of one pass over n positions from each
    row's ``first`` position (the cache written before by a pass over SPAN positions, as a draft's rows that ran
    ahead leave it) -> (steps' logits at the pass's positions, the pass's) [R, n, V] each. ``ragged``: series of
    2 and 4 rows in one state (the cross-attention in groups of equal row counts)."""
    g = torch.Generator().manual_seed(0)
    contexts = torch.randn(ROWS // 3, 50, generator=g).cumsum(-1)
    tokens = torch.randint(3, 256, (ROWS, SPAN + n), generator=g)

    def fresh():
        if not ragged:
            return model.prefix(contexts, 3, SPAN + n + 1)
        return model.merge(model.prefix(contexts[:2], 2, SPAN + n + 1), model.prefix(contexts[2:], 4, SPAN + n + 1))

    plain = fresh()
    steps = torch.cat([model.decode(tokens[:, t : t + 1], t, plain) for t in range(SPAN + n)], dim=1)
    state = fresh()
    model.decode(tokens[:, :SPAN], 0, state)
    at = first[:, None] + torch.arange(n)
    out = model.decode(tokens.gather(1, at), first if len(first.unique()) > 1 else int(first[0]), state)
    return steps.gather(1, at[..., None].expand(-1, -1, steps.shape[-1])), out


@pytest.mark.parametrize("ragged", [False, True], ids=["series-major", "ragged"])
@pytest.mark.parametrize("apart", [False, True], ids=["lockstep", "rows-apart"])
def test_float32_passes_give_the_steps_logits_exactly(model, apart, ragged, monkeypatch):
    monkeypatch.setattr(chronos_t5, "products_row_invariant", lambda: True)
    assert model.exact_passes
    first = torch.arange(ROWS) * 3 if apart else torch.full((ROWS,), 20)
    want, got = stepwise_and_passes(model, first, ragged=ragged)
    assert torch.equal(got, want)


def test_the_shared_masked_attention_rounds_differently(model, monkeypatch):
    """Negative control: without reading each query's own positions, the same pass parts from the steps."""
    monkeypatch.setattr(chronos_t5, "products_row_invariant", lambda: True)
    monkeypatch.setattr(ChronosT5, "exact_passes", property(lambda self: False))
    want, got = stepwise_and_passes(model, torch.arange(ROWS) * 3)
    assert not torch.equal(got, want)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-4)  # apart in the last bits only


@pytest.mark.skipif(
    not torch.backends.mkl.is_available(), reason="MKL_CBWR is an MKL setting and this torch build has no MKL"
)
def test_mkl_strict_mode_makes_the_products_row_invariant():
    """The switch docs/precision.md names: with it the probe finds row-invariant products (which turns a float32
    target's exact passes on)."""
    code = (
        "from leapcast.models.t5 import products_row_invariant\n"
        "from leapcast.models.chronos_t5 import ChronosT5\n"
        "print(products_row_invariant())"
    )
    env = {**os.environ, "MKL_CBWR": "AUTO,STRICT"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"


def test_a_draft_keeps_the_shared_attention(model, monkeypatch):
    monkeypatch.setattr(chronos_t5, "products_row_invariant", lambda: True)
    monkeypatch.setattr(model, "proposes", True)
    assert not model.exact_passes
