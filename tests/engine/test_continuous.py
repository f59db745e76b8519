"""Exact speculative sampling over whole patches (engine/verifiers/continuous.py), by hand-built heads and
through the engine on Toto against plain decoding, with controls that a wrong residual fails."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from leapcast.engine.proposers import make_proposer
from leapcast.engine.speculative import SpecConfig
from leapcast.engine.streams import RESIDUAL, RowStreams
from leapcast.engine.verifiers import continuous
from leapcast.engine.verifiers.continuous import verify_patches, verify_points
from leapcast.forecaster import Forecaster
from leapcast.models.heads import StudentTMixture
from leapcast.models.precision import lower
from leapcast.models.sampling import SamplingConfig
from leapcast.models.toto import TotoOptions
from leapcast.models.toto_net import TotoConfig
from leapcast.models.toto_presets import random_toto

N = 20_000
SAMPLING = SamplingConfig(num_samples=1, top_k=0)


def single(loc: float, scale: float, df: float, rows: int, values: int = 1) -> StudentTMixture:
    """One Student-T per value (df inf: Gaussian), the same for every row: a head [rows, 1] of ``values`` values."""
    shape = (rows, 1, values, 1)
    return StudentTMixture(torch.zeros(shape), torch.full(shape, loc), torch.full(shape, scale), torch.full(shape, df))


def draw(head: StudentTMixture, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return head.sample(SAMPLING, lambda count, offset=0: torch.rand(*head.loc.shape[:2], count, generator=g))


def verify_one(p: StudentTMixture, q: StudentTMixture, seed: int = 0):
    """One proposal per row drawn from q, verified against p (k = 1) -> (verdict, the committed patch [R, values])."""
    rows = p.loc.shape[0]
    x = draw(q, seed)  # [R, 1, values]
    target = StudentTMixture.cat([p, p])  # [R, 2]: the proposal's position and the bonus position
    streams = RowStreams.for_series(seed, list(range(rows)), 1)

    def residual_rand(idx, accepted):
        return lambda columns, sub: streams.select(idx[sub]).columns(accepted[sub, None], RESIDUAL, columns)

    g = torch.Generator().manual_seed(seed + 1)
    verdict = verify_patches(
        x, q, target, torch.rand(rows, 1, generator=g), draw(p, seed + 2)[:, 0], residual_rand, SAMPLING
    )
    out = torch.where((verdict.accepted == 1)[:, None], x[:, 0], verdict.next_step)
    return verdict, out


def test_a_proposal_from_the_target_itself_is_always_kept():
    p = StudentTMixture(
        torch.randn(64, 1, 5, 3),
        torch.randn(64, 1, 5, 3),
        torch.rand(64, 1, 5, 3) + 0.1,
        torch.rand(64, 1, 5, 3) * 5 + 2.1,
    )
    verdict, _ = verify_one(p, p)
    assert bool((verdict.accepted == 1).all()) and int(verdict.tries.sum()) == 0


def test_a_proposal_100_scales_away_is_always_replaced_from_the_residual():
    p, q = single(0.0, 1.0, math.inf, 4000), single(100.0, 1.0, math.inf, 4000)
    verdict, out = verify_one(p, q)
    assert bool((verdict.accepted == 0).all())
    assert bool((verdict.tries == 1).all())  # q vanishes where p lives: the first try is kept
    assert stats.kstest(out[:, 0].numpy(), stats.norm(0, 1).cdf).pvalue > 0.01


def _wrong_residual(p, q, rand, sampling, max_tries=None):
    """The control: a rejected patch redrawn from p itself, not from max(0, p - q) (STRIDE's redraw)."""
    rows = p.loc.shape[0]
    every = torch.arange(rows)
    y = p.sample(sampling, lambda count, offset=0: rand(torch.arange(1 + offset, 1 + offset + count), every))
    return y[:, 0], torch.ones(rows, dtype=torch.long), torch.zeros(rows, dtype=torch.bool)


def test_heavy_tailed_target_against_light_tailed_draft_and_the_wrong_residual_fails(monkeypatch):
    p, q = single(0.0, 1.0, 2.5, N), single(1.5, 0.7, math.inf, N)
    verdict, out = verify_one(p, q)
    target = stats.t(2.5).cdf
    assert 0.2 < float(verdict.accepted.float().mean()) < 0.8  # total variation 0.2..0.8: both branches matter
    assert stats.kstest(out[:, 0].numpy(), target).pvalue > 0.01
    monkeypatch.setattr(continuous, "residual", _wrong_residual)
    _, wrong = verify_one(p, q)
    assert stats.kstest(wrong[:, 0].numpy(), target).pvalue < 1e-3


def test_multivariate_blocks_are_kept_or_replaced_whole():
    """A step of 2 variates x 3 values: one joint density; marginals and a joint statistic follow p."""
    p, q = single(0.0, 1.0, 4.0, N, values=6), single(0.8, 1.2, math.inf, N, values=6)
    _, out = verify_one(p, q, seed=3)
    direct = draw(p, 99)[:, 0]
    tests = [stats.ks_2samp(out[:, j].numpy(), direct[:, j].numpy()).pvalue for j in range(6)]
    tests.append(
        stats.ks_2samp(
            (out[:, :3].sum(1) - out[:, 3:].prod(1)).numpy(), (direct[:, :3].sum(1) - direct[:, 3:].prod(1)).numpy()
        ).pvalue
    )
    assert min(tests) * len(tests) > 0.01


def test_a_cap_on_residual_tries_is_counted():
    p, q = (
        single(0.0, 1.0, math.inf, 500),
        single(0.05, 1.0, math.inf, 500),
    )  # nearly equal: a residual needs ~1/TV tries
    rows = 500
    streams = RowStreams.for_series(0, list(range(rows)), 1)

    def rand(columns, sub):
        return streams.select(sub).columns(torch.zeros(len(sub), 1, dtype=torch.long), RESIDUAL, columns)

    _, tries, capped = continuous.residual(p, q, rand, SAMPLING, max_tries=3)
    assert bool((tries <= 3).all()) and bool(capped.any())
    _, tries, capped = continuous.residual(p, q, rand, SAMPLING)
    assert not bool(capped.any()) and int(tries.max()) > 256  # tries past 2**32 / TRY_STRIDE read fresh numbers


def test_point_verification_keeps_only_what_the_tolerance_allows():
    mu = StudentTMixture.gaussian(torch.zeros(3, 3, 4), torch.ones(3, 3, 4))  # target means 0 at 3 positions
    proposal = torch.tensor([0.0, 0.3, 0.0]).view(1, 3, 1).expand(3, 3, 4)[:, :2].clone()  # [3, 2, 4]
    exact = verify_points(proposal, mu)
    assert exact.accepted.tolist() == [1, 1, 1] and torch.equal(exact.next_step, torch.zeros(3, 4))
    loose = verify_points(proposal, mu, tolerance=0.5, scale=torch.ones(3, 4))
    assert loose.accepted.tolist() == [2, 2, 2]


# --- through the engine, on Toto ----------------------------------------------------------------------

TARGET = TotoConfig(
    patch_size=4,
    stride=4,
    embed_dim=16,
    num_layers=2,
    num_heads=2,
    mlp_hidden_dim=32,
    spacewise_every_n_layers=-1,
    k_components=2,
)


def pair(noise: float):
    """A random target and a draft that is the target with its weights perturbed (acceptance falls with noise)."""
    target = random_toto(TARGET, seed=0, name="target")
    draft = random_toto(TARGET, seed=0, name="draft")
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for param in draft.net.parameters():
            param.add_(noise * torch.randn(param.shape, generator=g) * param.std().clamp_min(0.1))
    return target, draft


def context() -> np.ndarray:
    return np.random.default_rng(0).normal(size=22).cumsum() * 0.5


def _speculative(target, draft, k=2, **spec) -> Forecaster:
    proposer = make_proposer("draft", target, k=k, load_draft=lambda name: draft)
    return Forecaster(target, name="t", proposer=proposer, spec=SpecConfig(k=k, adaptive=False, **spec))


def _bonferroni(a: np.ndarray, b: np.ndarray) -> float:
    """KS per horizon value, plus a joint statistic of two consecutive patches (the first's mean minus the second's)."""
    p = a.shape[1] // 2
    pvalues = [stats.ks_2samp(a[:, j], b[:, j]).pvalue for j in range(a.shape[1])]
    pvalues.append(stats.ks_2samp(a[:, :p].mean(1) - a[:, p:].mean(1), b[:, :p].mean(1) - b[:, p:].mean(1)).pvalue)
    return min(pvalues) * len(pvalues)


@pytest.mark.parametrize("tier", [torch.float32, torch.bfloat16])
def test_speculative_paths_follow_plain_decoding_and_a_wrong_residual_does_not(monkeypatch, tier):
    target, draft = pair(noise=0.05)
    lower(target.net, tier), lower(draft.net, tier)  # plain and speculative decoding in the same tier
    assert target.net.layers[0].qkv.weight.dtype == draft.net.embed.weight.dtype == tier
    h = 2 * TARGET.patch_size
    plain = Forecaster(target, name="t").predict(context(), h, num_samples=N, seed=1)[0].numpy()
    fc = _speculative(target, draft)
    spec = fc.predict(context(), h, num_samples=N, seed=2)[0].numpy()
    acceptance = fc.last_stats.acceptance_rate
    assert 0.3 < acceptance < 0.7, acceptance  # total variation 0.3..0.7 between draft and target
    assert fc.last_stats.residual_tries > 0
    assert _bonferroni(spec, plain) > 0.01
    monkeypatch.setattr(continuous, "residual", _wrong_residual)
    wrong = fc.predict(context(), h, num_samples=N, seed=2)[0].numpy()
    assert _bonferroni(wrong, plain) < 1e-3


def test_a_target_spread_wider_than_its_draft_keeps_the_targets_distribution():
    """The target at spread 1.3, its draft the same network at spread 1: speculative paths follow the spread target's
    plain paths; the control, plain paths at spread 1, fails the same test (so a spread left out of verification
    would show)."""
    target = random_toto(TARGET, seed=0, options=TotoOptions(spread=1.3), name="target")
    draft = random_toto(TARGET, seed=0, name="draft")
    h = 2 * TARGET.patch_size
    plain = Forecaster(target, name="t").predict(context(), h, num_samples=N, seed=1)[0].numpy()
    fc = _speculative(target, draft)
    spec = fc.predict(context(), h, num_samples=N, seed=2)[0].numpy()
    assert 0.3 < fc.last_stats.acceptance_rate < 0.95 and fc.last_stats.residual_tries > 0
    assert _bonferroni(spec, plain) > 0.01
    narrow = Forecaster(draft, name="d").predict(context(), h, num_samples=N, seed=2)[0].numpy()
    assert _bonferroni(narrow, plain) < 1e-3


def test_a_draft_equal_to_the_target_reproduces_plain_sampling_path_for_path():
    target, _ = pair(noise=0.0)
    plain = Forecaster(target, name="t").predict(context(), 12, num_samples=64, seed=5)
    fc = _speculative(target, target, k=3)
    same = fc.predict(context(), 12, num_samples=64, seed=5)
    assert fc.last_stats.acceptance_rate == 1.0
    assert float((same - plain).abs().max()) < 1e-4 * max(
        1.0, float(plain.abs().max())
    )  # rounding of k+1 positions a pass


@pytest.mark.parametrize("spec", [{}, {"tolerance": 0.0}])
def test_mean_decoding_with_a_draft_is_plain_mean_decoding(spec):
    """Exact verification of a deterministic output keeps only the target's own mean patch (tolerance 0 is the same
    rule): the forecasts equal plain mean decoding to float rounding (a verify pass computes k + 1 positions at once)."""
    target, draft = pair(noise=0.3)
    plain = Forecaster(target, name="t").predict(context(), 20, top_k=1, num_samples=1)
    fc = _speculative(target, draft, **spec)
    assert float((fc.predict(context(), 20, top_k=1, num_samples=1) - plain).abs().max()) < 1e-5


def test_a_tolerance_keeps_draft_patches_and_is_refused_for_sampling():
    target, draft = pair(noise=0.05)
    fc = _speculative(target, draft, tolerance=10.0)
    fc.predict(context(), 20, top_k=1, num_samples=1)
    assert fc.last_stats.acceptance_rate > 0.9
    with pytest.raises(ValueError, match="`tolerance`.*mean decoding"):
        fc.predict(context(), 20, num_samples=4)


def test_early_exit_proposes_for_toto():
    target = random_toto(
        TotoConfig(
            patch_size=4,
            stride=4,
            embed_dim=16,
            num_layers=3,
            num_heads=2,
            mlp_hidden_dim=32,
            spacewise_every_n_layers=-1,
            k_components=2,
        )
    )
    fc = Forecaster(
        target, name="t", proposer=make_proposer("early-exit:2", target, k=2), spec=SpecConfig(k=2, adaptive=False)
    )
    out = fc.predict(context(), 16, num_samples=8, seed=0)
    assert out.shape == (1, 8, 16) and torch.isfinite(out).all() and fc.last_stats.drafts > 0
    with pytest.raises(ValueError, match="early-exit:2"):
        make_proposer("early-exit", target)


def test_drafts_that_cut_or_scale_patches_otherwise_are_refused():
    target = random_toto(TARGET)
    other = random_toto(
        TotoConfig(
            patch_size=8,
            stride=8,
            embed_dim=16,
            num_layers=1,
            num_heads=2,
            mlp_hidden_dim=32,
            spacewise_every_n_layers=-1,
            k_components=2,
        ),
        name="wide",
    )
    with pytest.raises(ValueError, match="`patch_size`: 8 in the draft, 4 in the target"):
        make_proposer("wide", target, load_draft=lambda name: other)
    with pytest.raises(ValueError, match="probability zero"):
        make_proposer("seasonal", target)


def test_adaptive_k_chooses_for_continuous_drafts():
    target, draft = pair(noise=0.05)
    proposer = make_proposer("draft", target, k=4, load_draft=lambda name: draft)
    fc = Forecaster(target, name="t", proposer=proposer, spec=SpecConfig(k=4))  # adaptive, the default
    out = fc.predict([context(), context()[:15]], 24, num_samples=16, seed=0)
    assert out.shape == (2, 16, 24) and torch.isfinite(out).all() and fc.last_stats.target_passes > 0


def test_the_cli_speculates_on_toto_with_a_tolerance(tmp_path):
    import json

    from typer.testing import CliRunner

    from leapcast.cli import app
    from leapcast.models.toto_presets import save_toto

    target, draft = pair(noise=0.05)
    save_toto(target, tmp_path / "target")
    save_toto(draft, tmp_path / "draft")
    table = tmp_path / "y.csv"
    table.write_text("unique_id,ds,y\n" + "\n".join(f"a,{i + 1},{v:.4f}" for i, v in enumerate(context())) + "\n")
    args = [
        "forecast",
        "--model",
        str(tmp_path / "target"),
        "--draft",
        str(tmp_path / "draft"),
        "--input",
        str(table),
        "--h",
        "8",
        "--k",
        "2",
        "--fixed-k",
        "--stats-json",
        str(tmp_path / "stats.json"),
    ]
    sampled = CliRunner().invoke(app, [*args, "--num-samples", "32", "--seed", "0"])
    assert sampled.exit_code == 0, sampled.output
    assert "residual_tries" in json.loads((tmp_path / "stats.json").read_text())
    mean = CliRunner().invoke(app, [*args, "--top-k", "1", "--num-samples", "1", "--tolerance", "0.5"])
    assert mean.exit_code == 0, mean.output
    refused = CliRunner().invoke(app, [*args, "--tolerance", "0.5"])
    assert refused.exit_code == 2 and "`--tolerance` 0.5 applies to mean decoding" in refused.output


@pytest.mark.parametrize("name, period", [("seasonal", 6), ("seasonal:3", 3), ("seasonal:1", 1)])
def test_the_seasonal_proposer_offers_patches_one_season_back_under_a_tolerance(name, period):
    """With a tolerance no mean patch can miss, every proposal is kept: the forecast is the seasonal naive one,
    also for seasons shorter than a patch (4 values here)."""
    target = random_toto(TARGET)
    y = np.tile([1.0, 3.0, 2.0, 5.0, 4.0, 0.0][:period], 36 // period)  # 36 values of that period
    proposer = make_proposer(name, target, k=3, tolerance=1e6)
    fc = Forecaster(target, name="t", proposer=proposer, spec=SpecConfig(k=3, adaptive=False, tolerance=1e6))
    out = fc.predict(y, 12, top_k=1, num_samples=1)[0, 0].numpy()
    assert fc.last_stats.acceptance_rate == 1.0
    assert np.array_equal(out, np.tile(y[-period:], 12 // period + 1)[:12])


def test_a_draft_without_a_density_is_rejected_and_its_residual_ends():
    p, q = single(0.0, 1.0, math.inf, 64), single(0.0, 1.0, math.inf, 64)
    q = StudentTMixture(q.weights, torch.full_like(q.loc, float("nan")), q.scale, q.df)
    verdict, out = verify_one(p, q)
    assert bool((verdict.accepted == 0).all()) and bool((verdict.tries == 1).all()) and torch.isfinite(out).all()
