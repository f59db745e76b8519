"""The engine knows no family: a test-only patch family runs through the same code as Chronos-T5,
and the engine, eval, CLI and forecaster reach nothing of a model beyond the contract."""

import ast
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import FIXTURES, make_checkpoint
from scipy import stats
from toy_family import PATCH, ToyPatchModel, reference_mean_forecast

import leapcast
from leapcast.engine.loop import Decoder
from leapcast.engine.rollout import rollout
from leapcast.engine.streams import RowStreams
from leapcast.forecaster import Forecaster
from leapcast.models.loading import load_model
from leapcast.models.sampling import SamplingConfig

MEAN = SamplingConfig(num_samples=3, top_k=1)  # greedy: a continuous head's mean
SAMPLED = SamplingConfig(num_samples=6, top_k=0)


def ragged_contexts() -> torch.Tensor:
    """Three series of 40, 25 and 9 values, left-padded with NaN, one value missing inside."""
    g = torch.Generator().manual_seed(0)
    out = torch.full((3, 40), float("nan"))
    for i, n in enumerate((40, 25, 9)):
        out[i, 40 - n :] = 10 + torch.randn(n, generator=g).cumsum(0)
    out[0, 20] = float("nan")
    return out


# --- a patch family through the engine ----------------------------------------------------------------


def test_mean_decoding_matches_a_hand_written_loop_bit_for_bit():
    model, ctx = ToyPatchModel(), ragged_contexts()
    horizon = 2 * model.prediction_length + 2  # rolls out past the model's own horizon
    got, _ = rollout(model, ctx, horizon, MEAN, RowStreams.for_series(0, [0, 1, 2], 3))
    expected = reference_mean_forecast(model, ctx, horizon, 3)
    assert got.shape == (3, 3, horizon * PATCH)
    assert torch.equal(got, expected)


def test_the_forecaster_cuts_patches_to_the_horizon():
    fc = Forecaster(ToyPatchModel())
    out = fc.predict(list(ragged_contexts()), 10, seed=0)  # 3 patches of 4, cut to 10 values
    assert out.shape == (3, 8, 10) and torch.isfinite(out).all()
    full = fc.predict(list(ragged_contexts()), 12, seed=0)
    assert torch.equal(out, full[..., :10])
    assert torch.equal(fc.predict(list(ragged_contexts()), 12, seed=0), full)  # seeded: repeatable


def test_sampled_first_patch_follows_the_head():
    """Many sample paths of one series: each value of the first patch follows the head's mixture (KS), and a
    mixture with the weights swapped is rejected (the control)."""
    model = ToyPatchModel()
    ctx = ragged_contexts()[:1]
    s = 4000
    samples, _ = rollout(model, ctx, 1, SamplingConfig(num_samples=s, top_k=0), RowStreams.for_series(1, [0], s))
    state = model.prefix(ctx, 1, 2)
    head = model.step(state, state.start[:, None], 0)
    scale = float(state.scale[0])
    for v in range(PATCH):
        w = head.weights[0, 0, v].softmax(-1).double().numpy()
        loc, sc, df = (t[0, 0, v].double().numpy() for t in (head.loc, head.scale, head.df))

        def cdf(x, w=w, df=df, loc=loc, sc=sc):
            return sum(w[c] * stats.t.cdf(x / scale, df[c], loc[c], sc[c]) for c in range(len(w)))

        x = samples[0, :, v].double().numpy()
        assert stats.kstest(x, cdf).pvalue > 1e-3
    if not np.allclose(w, w[::-1], atol=0.05):

        def swapped(x):
            return sum(w[::-1][c] * stats.t.cdf(x / scale, df[c], loc[c], sc[c]) for c in range(len(w)))

        assert stats.kstest(x, swapped).pvalue < 1e-3


def test_series_join_and_leave_between_iterations_with_their_own_rows_and_settings():
    model, ctx = ToyPatchModel(), ragged_contexts()
    a_streams, b_streams = (
        RowStreams.for_series(5, [0, 1], SAMPLED.num_samples),
        RowStreams.for_series(5, [2], MEAN.num_samples),
    )
    alone_a, alone_b = Decoder(model), Decoder(model)
    ia, ib = alone_a.add(ctx[:2], 3, SAMPLED, a_streams), alone_b.add(ctx[2:], 2, MEAN, b_streams, first_step=1)
    want_a, want_b = alone_a.run(), alone_b.run()

    dec = Decoder(model)
    ids_a = dec.add(ctx[:2], 3, SAMPLED, a_streams)
    finished = dec.step()  # one iteration with A alone
    ids_b = dec.add(ctx[2:], 2, MEAN, b_streams, first_step=1)  # B joins: 3 rows of mean decoding beside 12 sampled
    while dec.busy:
        finished.update(dec.step())
    for got_id, want_id, want in [*zip(ids_a, ia, [want_a] * 2), (ids_b[0], ib[0], want_b)]:
        # float rounding only: matrix products over 15 rows instead of 12 or 3
        torch.testing.assert_close(finished[got_id], want[want_id], rtol=1e-5, atol=1e-5)
    assert finished[ids_b[0]].shape == (MEAN.num_samples, 2 * PATCH)


def test_chronos_series_join_with_other_sample_counts(tmp_path):
    """The ragged rows of Chronos-T5 (rows of a series no longer side by side): greedy identical to alone."""
    model = load_model(make_checkpoint(tmp_path / "t", prediction_length=8, context_length=64))
    ctx = ragged_contexts()
    greedy3, greedy5 = SamplingConfig(num_samples=3, top_k=1), SamplingConfig(num_samples=5, top_k=1)
    sa, sb = RowStreams.for_series(0, [0, 1], 3), RowStreams.for_series(0, [2], 5)
    want_a, want_b = Decoder(model), Decoder(model)
    ia, ib = want_a.add(ctx[:2], 8, greedy3, sa), want_b.add(ctx[2:], 6, greedy5, sb)
    out_a, out_b = want_a.run(), want_b.run()
    want = {("a", 0): out_a[ia[0]], ("a", 1): out_a[ia[1]], ("b", 0): out_b[ib[0]]}
    dec = Decoder(model)
    ids_a = dec.add(ctx[:2], 8, greedy3, sa)
    got = {}
    for _ in range(2):
        got.update(dec.step())
    ids_b = dec.add(ctx[2:], 6, greedy5, sb)
    got.update(dec.run())
    for i, sid in enumerate(ids_a):
        assert torch.equal(got[sid], want[("a", i)])
    assert torch.equal(got[ids_b[0]], want[("b", 0)])


# --- the contract holds ---------------------------------------------------------------------------------

PACKAGE = Path(leapcast.__file__).parent
GENERIC = {
    "base",
    "heads",
    "sampling",
    "loading",
    "zoo",
    "rows",
    "precision",
}  # leapcast.models modules that name no family's classes


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return found


@pytest.mark.parametrize(
    "path",
    sorted(
        [
            *(PACKAGE / "engine").rglob("*.py"),
            *(PACKAGE / "eval").rglob("*.py"),
            PACKAGE / "cli.py",
            PACKAGE / "forecaster.py",
        ]
    ),
    ids=lambda p: str(p.relative_to(PACKAGE)),
)
def test_the_engine_and_its_callers_import_no_family(path):
    """Only the family-agnostic doors of leapcast.models; chronos-forecasting itself is imported only by the
    benchmark's baseline adapter (eval/forecasts.py), as the official pipeline leapcast is timed against."""
    leapcast_family = [
        m
        for m in _imports(path)
        if m.startswith("leapcast.models") and m.split(".")[2:3] and m.split(".")[2] not in GENERIC
    ]
    reference = [m for m in _imports(path) if m.split(".")[0] in ("chronos", "transformers")]
    assert leapcast_family == [], f"{path.name} imports {leapcast_family}"
    assert reference == [] or path.name == "forecasts.py", f"{path.name} imports {reference}"


CONTRACT = {
    "name",
    "patch_size",
    "context_length",
    "prediction_length",
    "device",
    "default_sampling",
    "check_draft",
    "describe",
    "prefix",
    "start_inputs",
    "step",
    "values",
    "extend",
    "select",
    "merge",
    "context_steps",
    "num_decoder_layers",
    "early_exit_state",
    "layer_costs",
    "default_horizon",
    "head_kind",
    "rescalable",
    "multivariate",
    "min_context",
    "check_sampling",
    "row_cache_bytes",
}


class Recorder:
    """A model seen through a keyhole: every attribute the engine reads is written down."""

    def __init__(self, model) -> None:
        object.__setattr__(self, "_model", model)
        object.__setattr__(self, "seen", set())

    def __getattr__(self, name):
        caller = sys._getframe(1).f_globals.get("__name__", "")
        if not caller.startswith("leapcast.models"):  # a model may read its own kind; the engine may not
            self.seen.add(name)
        return getattr(self._model, name)


@pytest.mark.parametrize("draft", [None, "draft", "early-exit", "seasonal"])
def test_the_engine_reaches_nothing_outside_the_contract(tmp_path, draft):
    from leapcast.engine.proposers import make_proposer
    from leapcast.engine.speculative import SpecConfig

    target = Recorder(load_model(make_checkpoint(tmp_path / "t", layers=2, prediction_length=8)))
    other = Recorder(load_model(make_checkpoint(tmp_path / "d", prediction_length=8, seed=3)))
    proposer = None if draft is None else make_proposer(draft, target, k=2, load_draft=lambda name: other)
    fc = Forecaster(target, name="t", proposer=proposer, spec=None if proposer is None else SpecConfig(k=2))
    fc.predict(list(ragged_contexts()), 19, num_samples=3, seed=0)
    assert target.seen <= CONTRACT, target.seen - CONTRACT
    assert other.seen <= CONTRACT, other.seen - CONTRACT


# --- forecasts did not change -----------------------------------------------------------------------------

PINNED = FIXTURES / "greedy_pinned.json"


@pytest.mark.parametrize("label", ["house-target", "random-t5"])
def test_greedy_forecasts_are_the_ones_before_the_rewrite(tmp_path, label):
    """Greedy paths written by the engine before this contract (tests/fixtures/greedy_pinned.json, its ``made_by``)."""
    import json

    import pandas as pd

    from leapcast.data import example_path

    pinned = json.loads(PINNED.read_text())
    if label == "house-target":
        df = pd.read_csv(example_path())
        contexts = [df[df.unique_id == i].y.to_numpy()[-120:] for i in pinned["contexts_example_ids"]]
        path, h = "house-target", 24
    else:
        path = make_checkpoint(
            tmp_path / "pin",
            d_model=32,
            d_kv=8,
            d_ff=64,
            layers=2,
            heads=4,
            prediction_length=8,
            context_length=64,
            seed=0,
        )
        g = torch.Generator().manual_seed(0)
        contexts = [torch.randn(n, generator=g).cumsum(0).numpy() + 5 for n in (50, 23, 9)]
        h = 19
    got = Forecaster.from_pretrained(path, seasonal_adjustment=False).predict(contexts, h, top_k=1, num_samples=2)
    assert torch.equal(got[:, 0], torch.tensor(pinned["greedy"][label], dtype=torch.float64))
    assert torch.equal(got[:, 1], got[:, 0])


def test_a_draft_with_rows_of_other_settings_decodes_them_plainly_until_they_part(tmp_path):
    from leapcast.engine.proposers import DraftModelProposer
    from leapcast.engine.speculative import SpecConfig

    target = load_model(make_checkpoint(tmp_path / "t", layers=2, prediction_length=8))
    draft = load_model(make_checkpoint(tmp_path / "d", prediction_length=8, seed=3))
    ctx = ragged_contexts()
    greedy, sampled = SamplingConfig(num_samples=2, top_k=1), SamplingConfig(num_samples=3)
    plain = Decoder(target)
    want = plain.run() if plain.add(ctx[:2], 8, greedy, RowStreams.for_series(0, [0, 1], 2)) else None
    dec = Decoder(target, DraftModelProposer(draft, target), SpecConfig(k=3, adaptive=False))
    ids = dec.add(ctx[:2], 8, greedy, RowStreams.for_series(0, [0, 1], 2))
    dec.add(ctx[2:], 3, sampled, RowStreams.for_series(0, [2], 3))  # leaves after 3 plain passes
    got = dec.run()
    assert all(torch.equal(got[i], want[j]) for i, j in zip(ids, range(2)))
    assert 0 < dec.stats.drafts and dec.stats.target_passes < 3 + 8  # speculation resumed once the sampled rows left
