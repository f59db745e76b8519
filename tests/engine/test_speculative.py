"""Speculative decoding changes nothing but the time: greedy identical, sampled same distribution."""

import numpy as np
import pytest
import torch
from conftest import make_checkpoint
from scipy.stats import chi2_contingency

import leapcast.engine.loop as loop
from leapcast import Forecaster, SpecConfig
from leapcast.engine.sampling import draw
from leapcast.engine.verifiers import Verdict, verify

PROPOSERS = ["draft", "early-exit:1", "early-exit:2", "early-exit", "seasonal", "seasonal:5"]


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    d = tmp_path_factory.mktemp("pair")
    target = make_checkpoint(d / "target", d_model=48, d_kv=12, d_ff=96, layers=3, heads=4, seed=1)
    draft = make_checkpoint(d / "draft", d_model=32, d_kv=8, d_ff=64, layers=1, heads=4, seed=2)
    return target, draft


def contexts():
    g = torch.Generator().manual_seed(0)
    return [
        torch.sin(torch.arange(80.0) * 2 * torch.pi / 5) * 5 + 10 + torch.randn(80, generator=g) * 0.1,
        torch.randn(23, generator=g).cumsum(0),
        torch.tensor([3.0, float("nan"), 4.0, 5.0]),
    ]


def spec_forecaster(pair, proposer, k, dtype=None):
    target, draft = pair
    return Forecaster.from_pretrained(
        target,
        draft=str(draft) if proposer == "draft" else proposer,
        spec=SpecConfig(k=k, adaptive=False),
        dtype=dtype,
    )


@pytest.mark.parametrize("proposer", PROPOSERS)
@pytest.mark.parametrize("k", [1, 3, 8])
def test_greedy_identical_to_plain(pair, proposer, k):
    plain = Forecaster.from_pretrained(pair[0])
    ctx = contexts()
    expected = plain.predict(ctx, 19, top_k=1, num_samples=2, batch_size=2)  # window 8: rolls out, ragged batches
    fc = spec_forecaster(pair, proposer, k)
    got = fc.predict(ctx, 19, top_k=1, num_samples=2, batch_size=2)
    assert torch.equal(got, expected)
    stats = fc.last_stats
    assert stats.target_passes <= 2 * 19 and stats.drafted_steps == stats.drafts * k
    assert sum(stats.accepted_per_position) == stats.accepted_steps


def _pvalues(a: torch.Tensor, b: torch.Tensor, min_count: int = 5) -> list[float]:
    """Per step, chi-square test that two samples of values share one distribution. a, b: [S, h]."""
    out = []
    for t in range(a.shape[1]):
        x, y = a[:, t].numpy(), b[:, t].numpy()
        values, counts = np.unique(np.concatenate([x, y]), return_counts=True)
        keep = values[counts >= min_count]
        table = np.array([[np.sum(z == v) for v in keep] + [np.sum(~np.isin(z, keep))] for z in (x, y)])
        out.append(chi2_contingency(table[:, table.sum(0) > 0])[1])
    return out


@pytest.fixture(scope="module")
def small_vocab_pair(tmp_path_factory):
    """A target and a draft that disagree a lot, on a 64-token vocabulary so every token gets counts."""
    d = tmp_path_factory.mktemp("vocab64")
    target = make_checkpoint(d / "target", vocab=64, d_model=32, d_kv=8, d_ff=64, layers=2, heads=4, seed=3)
    draft = make_checkpoint(d / "draft", vocab=64, d_model=16, d_kv=4, d_ff=32, layers=1, heads=4, seed=4)
    return target, draft


CTX = [torch.sin(torch.arange(40.0) / 2) * 3 + 8]
DRAWS = 20000


@pytest.mark.parametrize(
    "proposer, settings",
    [("draft", {}), ("draft", dict(temperature=0.8, top_p=0.9)), ("early-exit:1", {}), ("seasonal", dict(top_k=10))],
)
def test_sampled_same_distribution_as_plain(small_vocab_pair, proposer, settings):
    plain = Forecaster.from_pretrained(small_vocab_pair[0])
    expected = plain.predict(CTX, 4, num_samples=DRAWS, seed=0, **settings)[0]
    fc = spec_forecaster(small_vocab_pair, proposer, 3)
    got = fc.predict(CTX, 4, num_samples=DRAWS, seed=1, **settings)[0]
    assert fc.last_stats.accepted_steps < fc.last_stats.drafted_steps  # rejections happened
    assert min(_pvalues(got, expected)) > 1e-3


def _wrong_verify(proposal, draft_probs, target, accept_uniforms, bonus_uniforms, residual_uniforms):
    """The classic bug: after a rejection, redraw from p instead of norm(max(0, p - q))."""
    right = verify(proposal, draft_probs, target, accept_uniforms, bonus_uniforms, residual_uniforms)
    at = right.accepted.clamp(max=proposal.shape[1] - 1)
    rows = torch.arange(len(at))
    probs, steps = target[0][rows, at], target[1][rows, at]
    redraw = steps.gather(1, draw(probs, residual_uniforms[rows, at])[:, None]).squeeze(1)
    return Verdict(right.accepted, torch.where(right.accepted == proposal.shape[1], right.next_step, redraw))


@pytest.mark.parametrize("proposer", ["draft", "early-exit:1"])
def test_sampled_same_distribution_as_plain_in_bfloat16(small_vocab_pair, proposer):
    """The gate of a lower tier: speculative against plain decoding in the same tier (kernel shapes differ, the
    distribution must not)."""
    plain = Forecaster.from_pretrained(small_vocab_pair[0], dtype="bfloat16")
    expected = plain.predict(CTX, 4, num_samples=DRAWS, seed=0)[0]
    fc = spec_forecaster(small_vocab_pair, proposer, 3, dtype="bfloat16")
    got = fc.predict(CTX, 4, num_samples=DRAWS, seed=1)[0]
    assert fc.last_stats.accepted_steps < fc.last_stats.drafted_steps
    assert min(_pvalues(got, expected)) > 1e-3


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_distribution_test_rejects_a_wrong_residual(small_vocab_pair, monkeypatch, dtype):
    plain = Forecaster.from_pretrained(small_vocab_pair[0], dtype=dtype)
    expected = plain.predict(CTX, 4, num_samples=DRAWS, seed=0)[0]
    monkeypatch.setattr(loop, "verify", _wrong_verify)
    got = spec_forecaster(small_vocab_pair, "draft", 3, dtype=dtype).predict(CTX, 4, num_samples=DRAWS, seed=1)[0]
    assert min(_pvalues(got, expected)) < 1e-3


# Hand-built distributions over 4 steps of vocabulary.
P = torch.tensor([0.1, 0.2, 0.3, 0.4])


def _sorted(p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Dense distributions [..., V] -> verify's target form: (probs, steps) most likely first (zeros included)."""
    probs, steps = p.sort(dim=-1, descending=True)
    return probs.contiguous(), steps.contiguous()


def _verdicts(p_rows, q_rows, proposal, n=20000):
    """Run verify n times on one hand-built case -> (accepted [n], next [n])."""
    k = proposal.shape[0]
    p = torch.stack(p_rows)[None].expand(n, k + 1, -1)
    q = None if q_rows is None else torch.stack(q_rows)[None].expand(n, k, -1)
    g = torch.Generator().manual_seed(0)
    v = verify(
        proposal[None].expand(n, k),
        q,
        _sorted(p),
        torch.rand(n, k, generator=g),
        torch.rand(n, generator=g),
        torch.rand(n, k, generator=g),
    )
    return v.accepted, v.next_step


def test_perfect_match_accepts_everything_and_draws_the_bonus_from_p():
    accepted, nxt = _verdicts([P, P, P], [P, P], torch.tensor([2, 3]))
    assert (accepted == 2).all()
    freq = torch.bincount(nxt, minlength=4).float() / len(nxt)
    assert torch.allclose(freq, P, atol=0.01)


def test_early_mismatch_recovers_from_the_residual():
    q = torch.tensor([0.7, 0.1, 0.1, 0.1])
    accepted, nxt = _verdicts([P, P], [q], torch.tensor([0]))  # p(0)/q(0) = 1/7
    assert abs((accepted == 1).float().mean().item() - 0.1 / 0.7) < 0.01
    rejected = nxt[accepted == 0]
    assert (rejected != 0).all()  # max(0, p - q) is 0 at the proposed step
    residual = (P - q).clamp(min=0)
    freq = torch.bincount(rejected, minlength=4).float() / len(rejected)
    assert torch.allclose(freq, residual / residual.sum(), atol=0.015)


def test_proposals_drawn_from_q_give_steps_distributed_as_p():
    n, q = 40000, torch.tensor([0.7, 0.1, 0.1, 0.1])
    g = torch.Generator().manual_seed(1)
    proposal = torch.multinomial(q, n, replacement=True, generator=g)[:, None]  # [n, 1]
    v = verify(
        proposal,
        q.expand(n, 1, 4),
        _sorted(P.expand(n, 2, 4)),
        torch.rand(n, 1, generator=g),
        torch.rand(n, generator=g),
        torch.rand(n, 1, generator=g),
    )
    first = torch.where(v.accepted == 1, proposal[:, 0], v.next_step)
    assert torch.allclose(torch.bincount(first, minlength=4).float() / n, P, atol=0.01)


def test_proposal_with_zero_target_probability_is_always_rejected():
    p = torch.tensor([0.0, 0.5, 0.5, 0.0])
    accepted, nxt = _verdicts([p, p], [torch.tensor([0.25] * 4)], torch.tensor([3]))
    assert (accepted == 0).all() and set(nxt.tolist()) <= {1, 2}


def test_point_mass_proposal_is_kept_with_probability_p():
    accepted, nxt = _verdicts([P, P, P], None, torch.tensor([3, 1]))
    assert abs((accepted >= 1).float().mean().item() - 0.4) < 0.01
    assert abs((accepted == 2).float().mean().item() - 0.4 * 0.2) < 0.01
    assert (nxt[accepted == 0] != 3).all()  # the residual is p without the proposed step


def test_top_k_cutting_the_proposal_out():
    """A draft step outside the target's top-k has p = 0 after warping: never kept."""
    from leapcast.engine.sampling import SamplingConfig, probabilities

    logits = torch.tensor([[[4.0, 3.0, 2.0, 1.0]] * 2])
    p = probabilities(logits, SamplingConfig(top_k=2))[0]  # [2, 4], steps 2 and 3 cut
    accepted, nxt = _verdicts([p[0], p[1]], [torch.tensor([0.1, 0.1, 0.7, 0.1])], torch.tensor([2]))
    assert (accepted == 0).all() and set(nxt.tolist()) <= {0, 1}


def test_a_series_does_not_depend_on_its_batch_mates(pair):
    fc = spec_forecaster(pair, "draft", 3)
    ctx = contexts()
    together = fc.predict(ctx, 12, num_samples=4, seed=7, batch_size=3)
    alone = fc.predict(ctx[1:2], 12, num_samples=4, seed=7, batch_size=1)
    # series 1 alone sits at index 0 of its request: key the seed on its index instead
    shifted = fc.predict([ctx[0], ctx[1]], 12, num_samples=4, seed=7, batch_size=1)
    assert torch.allclose(together[:2], shifted, atol=1e-4)
    assert alone.shape == (1, 4, 12)


def test_draft_with_another_tokenizer_is_refused(tmp_path, pair):
    other = make_checkpoint(tmp_path / "other", vocab=1024, seed=5)
    with pytest.raises(ValueError, match="n_tokens"):
        Forecaster.from_pretrained(pair[0], draft=str(other))


@pytest.mark.parametrize(
    "draft, match", [("early-exit:9", "1..2"), ("early-exit:x", "early-exit:M"), ("seasonal:x", "seasonal:S")]
)
def test_bad_draft_names(pair, draft, match):
    with pytest.raises(ValueError, match=match):
        Forecaster.from_pretrained(pair[0], draft=draft)


@pytest.mark.parametrize(
    "spec",
    [
        SpecConfig(k=6, adaptive=True),
        SpecConfig(k=5, adaptive=False, stop_below=0.9),
        SpecConfig(k=8, adaptive=True, stop_below=0.5),
    ],
)
def test_adaptive_and_early_stop_keep_greedy_identical(pair, spec):
    plain = Forecaster.from_pretrained(pair[0])
    ctx = contexts()
    expected = plain.predict(ctx, 30, top_k=1, num_samples=3)
    fc = Forecaster.from_pretrained(pair[0], draft="early-exit:2", spec=spec)
    assert torch.equal(fc.predict(ctx, 30, top_k=1, num_samples=3), expected)
    stats = fc.last_stats
    assert stats.drafted_steps <= stats.drafts * spec.k


class TickClock:
    """A clock that moves one second a reading: adaptive k's choices then follow the work done, not the machine's
    load, so a seeded test draws the same numbers every run."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        self.now += 1.0
        return self.now


def test_adaptive_and_early_stop_keep_the_sampled_distribution(small_vocab_pair, monkeypatch):
    monkeypatch.setattr(loop, "time", TickClock())
    plain = Forecaster.from_pretrained(small_vocab_pair[0])
    expected = plain.predict(CTX, 4, num_samples=DRAWS, seed=0)[0]
    target, draft = small_vocab_pair
    fc = Forecaster.from_pretrained(target, draft=str(draft), spec=SpecConfig(k=4, adaptive=True, stop_below=0.3))
    got = fc.predict(CTX, 4, num_samples=DRAWS, seed=1)[0]
    assert min(_pvalues(got, expected)) > 1e-3


def test_k_chooser_tries_every_candidate_then_keeps_the_fastest():
    from leapcast.engine.adaptive import KChooser

    chooser = KChooser(8)
    assert chooser.candidates == [0, 1, 2, 4, 8]
    speed = {0: 1, 1: 4, 2: 10, 4: 6, 8: 2}  # steps per second; k = 2 is best
    assert chooser.choose() == 0  # the first, unrecorded warm-up pass is plain
    chooser.record(0, seconds=100.0, steps=1)
    tried = []
    for _ in range(6):
        k = chooser.choose()
        tried.append(k)
        chooser.record(k, seconds=1.0, steps=speed[k])
    assert tried[:4] == [0, 1, 2, 4]  # cheapest first, stops growing once k = 4 is slower than k = 2
    assert 8 not in tried and tried[4:] == [2, 2]


def test_a_pass_that_compiles_is_not_timed_for_the_chooser(small_vocab_pair, monkeypatch):
    """A pass during which torch.compile built a graph timed the compiling, not the work: adaptive k leaves it out
    (one compile-long k = 0 pass kept the chooser off plain decoding for good)."""
    from leapcast.engine.adaptive import KChooser

    target, draft = small_vocab_pair
    timed = []
    real = KChooser.record
    monkeypatch.setattr(KChooser, "record", lambda self, k, *args: timed.append(k) or real(self, k, *args))
    runs = {}
    for compiles in (False, True):
        if compiles:
            monkeypatch.setattr(loop, "graphs_built", iter(range(10**6)).__next__)  # a graph built during every pass
        timed.clear()
        fc = Forecaster.from_pretrained(target, draft=str(draft), spec=SpecConfig(k=2, adaptive=True))
        fc.predict(CTX, 12, num_samples=4, seed=1, progress=False)
        runs[compiles] = list(timed)
    assert len(runs[False]) >= 2 and runs[True] == []  # timed without compiling, never while compiling


def test_k_chooser_hands_whole_windows_to_the_plain_loop_once_k0_wins():
    from leapcast.engine.adaptive import KChooser

    chooser = KChooser(4, recheck=4)
    assert chooser.speculate()  # nothing measured yet
    chooser.choose()
    for _ in range(3):
        k = chooser.choose()
        chooser.record(k, seconds=1.0 + k, steps=1)  # every k > 0 costs more per step
    assert chooser.choose() == 0 and chooser.off
    plan = [chooser.speculate() for _ in range(8)]
    assert plan == [False, False, True, False, False, False, True, False]  # windows 2..9: every 4th re-checks
    assert chooser.choose() == 0  # a re-check window measures plain decoding afresh,
    chooser.record(0, seconds=1.0, steps=1)
    for _ in range(3):
        assert chooser.choose() == 1  # then tries k = 1
        chooser.record(1, seconds=0.1, steps=1)  # and if it now pays, speculation is back on
    assert not chooser.off and chooser.speculate()


@pytest.mark.parametrize(
    "field, value",
    [
        ("k", 0),
        ("k", 40),
        ("stop_below", 1.5),
        ("stop_below", "0.5"),
        ("adaptive", "yes"),
        ("adaptive", 0),
        ("tolerance", True),
        ("tolerance", float("nan")),
    ],
)
def test_spec_config_names_bad_fields(field, value):
    with pytest.raises(ValueError, match=f"`{field}`"):
        SpecConfig(**{field: value})


def test_concurrent_calls_on_one_speculative_forecaster_are_the_sequential_ones(pair):
    """Each call decodes with its own copy of the proposer (a draft's caches are per call): threads calling one
    forecaster with batches of different shapes get what calls one after another get."""
    from concurrent.futures import ThreadPoolExecutor

    fc = Forecaster.from_pretrained(pair[0], draft=str(pair[1]), spec=SpecConfig(k=3, adaptive=False))
    ctx = contexts()
    calls = [(ctx, 12, 5), (ctx[:1], 20, 3), (ctx[1:], 9, 4), (ctx, 15, 2)]
    alone = [fc.predict(c, h, num_samples=s, seed=7) for c, h, s in calls]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda call: fc.predict(call[0], call[1], num_samples=call[2], seed=7), calls * 2))
    for got, want in zip(together, alone * 2):
        assert torch.equal(got, want)


@pytest.mark.parametrize("proposer", ["draft", "early-exit:1", "seasonal"])
def test_a_proposer_lets_its_rows_go_when_the_forecast_ends(pair, proposer):
    """The proposer's state (a draft's caches, a seasonal history) does not outlive the decode that made it."""
    from leapcast.engine.rollout import rollout
    from leapcast.engine.streams import RowStreams

    fc = spec_forecaster(pair, proposer, 3)
    batch = torch.randn(3, 40, generator=torch.Generator().manual_seed(0)).cumsum(1)  # [B, T]
    sampling = fc.sampling_config(num_samples=4)
    rollout(fc.model, batch, 10, sampling, RowStreams.for_series(0, [0, 1, 2], 4), fc.proposer, fc.spec)
    tensors = {k for k, v in vars(fc.proposer).items() if isinstance(v, torch.Tensor) and v.numel()}
    stateful = {k for k, v in vars(fc.proposer).items() if k == "state" and v is not None}
    assert not tensors and not stateful, (tensors, stateful)


def test_a_speculative_forecaster_pickles_after_a_call(pair):
    """The chooser's and the calibration's locks are dropped and remade: joblib and multiprocessing pickle."""
    import pickle

    fc = Forecaster.from_pretrained(pair[0], draft="early-exit", spec=SpecConfig(k=2))
    fc.predict(contexts(), 6, num_samples=2, seed=0)
    again = pickle.loads(pickle.dumps(fc))
    assert again.proposer._chosen == fc.proposer._chosen and again._choosers.keys() == fc._choosers.keys()
    assert torch.equal(again.predict(contexts(), 6, top_k=1), fc.predict(contexts(), 6, top_k=1))


def test_changing_k_between_calls_starts_a_chooser_for_the_new_k(pair):
    fc = Forecaster.from_pretrained(pair[0], draft=str(pair[1]), spec=SpecConfig(k=8))
    fc.predict(contexts(), 12, num_samples=3, seed=0)
    fc.spec = SpecConfig(k=2)
    fc.predict(contexts(), 12, num_samples=3, seed=0)  # the k = 8 chooser could pick 8 here
    assert sorted(ch.candidates[-1] for ch in fc._choosers.values()) == [2, 8]


@pytest.mark.parametrize("name", ["seasonal:99999999999999999999", "seasonal:\u00b2", "early-exit:0"])
def test_proposer_numbers_out_of_range_are_named(pair, name):
    with pytest.raises(ValueError, match="`draft`"):
        Forecaster.from_pretrained(pair[0], draft=name)


def test_stop_below_without_draft_probabilities_is_refused(pair):
    with pytest.raises(ValueError, match="`stop_below` 0.5 .*seasonal proposer"):
        Forecaster.from_pretrained(pair[0], draft="seasonal", spec=SpecConfig(stop_below=0.5))


@pytest.mark.parametrize(
    "spec",
    [SpecConfig(k=3, adaptive=False), SpecConfig(k=4, adaptive=True), SpecConfig(k=4, adaptive=False, stop_below=0.99)],
)
def test_a_draft_identical_to_the_target_is_always_accepted(pair, spec):
    """q == p up to float noise: any rejection means the draft's cache fell out of step
    (e.g. positions skipped while adaptive k was 0)."""
    fc = Forecaster.from_pretrained(pair[0], draft=str(pair[0]), spec=spec)
    fc.predict(contexts(), 30, num_samples=5, seed=0)
    assert fc.last_stats.accepted_steps == fc.last_stats.drafted_steps > 0


@pytest.mark.parametrize("k", [1, 3, 8])
def test_a_draft_identical_to_the_target_with_fixed_k_gives_the_plain_seeded_forecast(pair, k):
    """Sampled, not greedy: the draft proposes step t with the number plain decoding draws step t
    with, the target keeps it, and the bonus step reads the plain number of its own step."""
    ctx = contexts()
    expected = Forecaster.from_pretrained(pair[0]).predict(ctx, 19, num_samples=5, seed=4, batch_size=2)
    fc = Forecaster.from_pretrained(pair[0], draft=str(pair[0]), spec=SpecConfig(k=k, adaptive=False))
    got = fc.predict(ctx, 19, num_samples=5, seed=4, batch_size=2)
    assert fc.last_stats.drafts > 0
    assert torch.equal(got, expected)


def test_every_plain_route_gives_the_same_seeded_forecast(pair):
    """No draft; a draft whose adaptive k has settled on 0 (windows handed to the plain loop)."""
    from leapcast.engine.adaptive import KChooser

    ctx = contexts()
    expected = Forecaster.from_pretrained(pair[0]).predict(ctx, 19, num_samples=5, seed=4)
    fc = Forecaster.from_pretrained(pair[0], draft=str(pair[1]), spec=SpecConfig(k=4))
    chooser = KChooser(4)
    chooser.exploring, chooser.cost, chooser.iteration = False, {0: 1.0, 1: 9.0, 2: 9.0, 4: 9.0}, 1
    fc._choosers[fc._chooser_key(3 * 5, 19)] = chooser
    assert torch.equal(fc.predict(ctx, 19, num_samples=5, seed=4), expected)


def test_early_exit_calibration_picks_the_exit_that_matches_the_full_stack(tmp_path):
    """Layers 3-4 made identities: exit 2 equals the full model (a = 1), exit 1 does not."""
    from leapcast.models.loading import load_model
    from leapcast.models.presets import save_chronos_t5

    folder = make_checkpoint(tmp_path / "deep", d_model=48, d_kv=12, d_ff=96, layers=4, heads=4, seed=3)
    model = load_model(folder)
    with torch.no_grad():
        for layer in model.net.dec_layers[2:]:
            for dense in (layer.o, layer.cross_o, layer.ff.wo):
                dense.weight.zero_()
    save_chronos_t5(model, folder)
    fc = Forecaster.from_pretrained(folder, draft="early-exit", spec=SpecConfig(k=4, adaptive=False))
    got = fc.predict(contexts(), 12, top_k=1, num_samples=2)
    assert fc.last_stats.proposer == "early-exit:2"
    calibration = fc.proposer.calibration
    assert calibration[2]["acceptance"] > 0.999 and calibration[3]["acceptance"] > 0.999
    assert calibration[1]["acceptance"] < 0.9
    assert torch.equal(got, Forecaster.from_pretrained(folder).predict(contexts(), 12, top_k=1, num_samples=2))


def test_adaptive_k_keeps_what_it_learned_for_the_next_call_of_the_same_shape(pair, monkeypatch):
    monkeypatch.setattr(loop, "time", TickClock())
    fc = Forecaster.from_pretrained(pair[0], draft="early-exit:1", spec=SpecConfig(k=4, adaptive=True))
    first = fc.predict(contexts(), 12, num_samples=3, seed=0)
    (chooser,) = fc._choosers.values()
    seen = chooser.windows
    second = fc.predict(contexts(), 12, num_samples=3, seed=0)
    assert list(fc._choosers.values()) == [chooser] and chooser.windows > seen  # one chooser, still counting
    assert chooser.cost  # it has measured something to choose by
    st = fc.last_stats
    assert 0 < st.target_passes <= 12 and st.draft_s + st.verify_s + st.other_s > 0  # plain windows count too
    assert first.shape == second.shape
    fc.predict(contexts(), 5, num_samples=3, seed=0)  # another horizon: another chooser
    assert len(fc._choosers) == 2


@pytest.mark.parametrize("first, top_k", [([], 1), ([2], 1), ([], 50)])
def test_a_chooser_settled_on_plain_finishes_the_window_exactly(pair, first, top_k):
    """Once k = 0 has won, the rest of a window runs a plain loop; rows may stand at different
    positions when it starts (first=[2]: one k = 2 pass before it). Greedy: identical to plain;
    sampled with no speculative pass: identical too, as every k = 0 route reads the same numbers."""
    from leapcast.engine.adaptive import KChooser
    from leapcast.engine.loop import Decoder
    from leapcast.engine.proposers import DraftModelProposer
    from leapcast.engine.sampling import SamplingConfig
    from leapcast.engine.streams import RowStreams
    from leapcast.models.loading import load_model

    target, draft = load_model(pair[0]), load_model(pair[1])
    ctx = torch.nn.utils.rnn.pad_sequence(
        [c.flip(0) for c in contexts()], batch_first=True, padding_value=float("nan")
    ).flip(1)
    cfg = SamplingConfig(num_samples=2, top_k=top_k)
    chooser = KChooser(4)
    chooser.exploring, chooser.cost, chooser.queue = False, {0: 1.0, 1: 2.0, 2: 3.0, 4: 4.0}, list(first)
    chooser.iteration = 1  # past the warm-up pass
    assert chooser.off
    b = ctx.shape[0]
    streams = RowStreams.for_series(0, list(range(b)), 2)
    spec_decoder = Decoder(target, DraftModelProposer(draft, target), SpecConfig(k=4), chooser)
    ids = spec_decoder.add(ctx, 20, cfg, streams)
    got, stats = spec_decoder.run(), spec_decoder.stats
    plain = Decoder(target)
    expected = plain.run() if plain.add(ctx, 20, cfg, streams) else None
    assert all(torch.equal(got[i], expected[j]) for i, j in zip(ids, range(b)))
    batch = target.tokenize(ctx)
    rows = 2 * batch.tokens.shape[0]
    assert stats.drafts == (0 if not first else rows)  # one k = 2 pass for every row, then none
    assert stats.target_passes == (20 if not first else 1 + 20 - 1)  # the k = 2 pass moved every row at least one step
    assert stats.passes_at_k == ({0: 20} if not first else {2: 1, 0: 19})  # what ran, not the cap (k = 4)


def test_the_plain_tail_after_ragged_rows_keeps_the_sampled_distribution(small_vocab_pair):
    """A re-check window runs k = 0 once and k = 1 three times (rows then stand at different
    positions), finds k = 1 still slower, and the plain tail lets the rows behind catch up
    before they step together. Per-position frequencies must still match plain decoding."""
    from leapcast.engine.adaptive import KChooser

    plain = Forecaster.from_pretrained(small_vocab_pair[0])
    expected = plain.predict(CTX, 4, num_samples=DRAWS, seed=0)[0]
    fc = Forecaster.from_pretrained(small_vocab_pair[0], draft=str(small_vocab_pair[1]), spec=SpecConfig(k=3))
    chooser = KChooser(3)
    chooser.exploring, chooser.cost, chooser.iteration = False, {0: 1.0, 1: 100.0, 2: 100.0, 3: 100.0}, 1
    chooser.windows = chooser.recheck - 1  # the next window re-checks
    fc._choosers[fc._chooser_key(DRAWS, 4)] = chooser
    got = fc.predict(CTX, 4, num_samples=DRAWS, seed=1)[0]
    st = fc.last_stats
    assert st.drafts >= DRAWS and chooser.off  # a plain pass, three k = 1 passes, then plain steps
    assert 0 < st.accepted_steps < st.drafted_steps
    assert min(_pvalues(got, expected)) > 1e-3


def test_speedup_bound_counts_the_verify_pass():
    """E[steps per pass] / (k c + v): at a = 0.8, k = 2, c = 0.1 the expected steps are 1 + 0.8 + 0.64 = 2.44;
    a verify pass that costs 1.5 plain steps lowers the bound from 2.44 / 1.2 to 2.44 / 1.7."""
    from leapcast.engine.speculative import speedup_bound

    assert speedup_bound(0.8, 2, 0.1) == pytest.approx(2.44 / 1.2)
    assert speedup_bound(0.8, 2, 0.1, 1.5) == pytest.approx(2.44 / 1.7)
    assert speedup_bound(1.0, 4, 0.0, 2.0) == pytest.approx(2.5)


def test_a_series_season_does_not_depend_on_the_series_beside_it():
    """Season detection runs per series over its own lags: a 3-value series in the batch no longer narrows a
    long series' lags to nothing (which made its proposals, and a tolerance forecast, depend on the batch)."""
    from leapcast.engine.proposers.seasonal import detect_season

    t = torch.arange(80.0)
    periodic = torch.sin(2 * torch.pi * t / 5) + 0.01 * torch.cos(t)
    short = torch.full((80,), float("nan"))
    short[-3:] = torch.tensor([1.0, 2.0, 3.0])
    values = torch.stack([periodic, torch.nan_to_num(short)])
    mask = torch.stack([torch.ones(80, dtype=torch.bool), ~torch.isnan(short)])
    alone = detect_season(values[:1], mask[:1], 0.3)
    together = detect_season(values, mask, 0.3)
    assert alone.tolist() == [5] and together.tolist() == [5, 1]
