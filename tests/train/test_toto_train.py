"""Pretraining Toto-architecture models: the training pass is the decoding pass, the loss is the reference's,
the lag heads look where they should, and a run trains, resumes and saves a checkpoint Toto reads."""

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from conftest import FIXTURES
from typer.testing import CliRunner

from leapcast import Forecaster
from leapcast.cli import app
from leapcast.models.heads import StudentTMixture
from leapcast.models.toto import TotoOptions
from leapcast.models.toto_net import TotoConfig
from leapcast.models.toto_presets import random_toto
from leapcast.train.config import TotoTrainConfig
from leapcast.train.loss import patch_loss
from leapcast.train.patches import PatchSampler, scale_patches, with_level_shift
from leapcast.train.toto_pretrain import (
    SEASONS,
    initial_toto,
    lag_heads,
    options,
    own_draws,
    sample_mixture,
    season_lag,
    train_toto,
)

CONFIG = FIXTURES / "tiny-toto.json"


def _net_config(**changes) -> TotoConfig:
    base = dict(
        patch_size=4,
        stride=4,
        embed_dim=16,
        num_layers=2,
        num_heads=2,
        mlp_hidden_dim=24,
        spacewise_every_n_layers=-1,
        k_components=3,
    )
    return TotoConfig(**{**base, **changes})


@pytest.mark.parametrize("spacewise", [-1, 2])
def test_the_training_pass_gives_the_heads_decoding_gives(spacewise):
    """Teacher forcing through ``TotoNet.forward`` (inputs scaled by ``scale_patches``) and the cached decode
    (``prefix`` then ``step`` over the same patches) give the same mixture at every position (float64)."""
    cfg = _net_config(spacewise_every_n_layers=spacewise)
    model = random_toto(cfg, seed=3, options=TotoOptions(xpos_centers="relative"))
    model.net.double()
    rng = np.random.default_rng(0)
    values = 50 + np.cumsum(rng.normal(size=(2, 40)), axis=1)  # 10 patches: 6 of context, 4 decoded
    values[1, :3] = np.nan  # a series that starts inside its first patch
    batch = scale_patches(values, cfg)
    logits, loc, scale, df = model.net.distribution(model.net(batch.inputs.double()))  # [B, 1, L, P, C], scaled
    x = torch.from_numpy(values)
    state = model.prefix(x[:, :24], rows_per_series=1, capacity=4)
    inputs = torch.cat([model.start_inputs(state)[:, None], x[:, 24:36].view(2, 3, 4)], dim=1)  # [B, 4, P]
    head = model.step(state, inputs, 0)  # the heads of patches 7..10, in values
    # the same heads from the training pass: shift and scale by each input patch's own statistics
    w = ~torch.isnan(x)
    xs = torch.where(w, x, 0.0)
    from leapcast.models.toto_net import global_bounds, patch_stats

    bounds = global_bounds(xs[:, :24], w[:, :24].double(), cfg)
    mu, sigma, _ = patch_stats(xs, w.double(), torch.zeros(2, 3, dtype=torch.float64), bounds, 4)
    mu, sigma = mu[:, 5:9, None, None], sigma[:, 5:9, None, None]  # positions 5..8 predict patches 6..9
    torch.testing.assert_close(head.loc, (mu + sigma * loc[:, 0, 5:9]).to(head.loc.dtype), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(head.scale, (sigma * scale[:, 0, 5:9]).to(head.loc.dtype), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(head.df, df[:, 0, 5:9].to(head.df.dtype), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(head.weights, logits[:, 0, 5:9].to(head.df.dtype), rtol=1e-5, atol=1e-5)


def test_the_value_log_density_is_the_mixture_of_student_ts():
    g = torch.Generator().manual_seed(0)
    shape = (3, 5, 4, 6)
    weights, loc = torch.randn(shape, generator=g), torch.randn(shape, generator=g)
    scale, df = torch.rand(shape, generator=g) + 0.2, 2 + 5 * torch.rand(shape, generator=g)
    x = 2 * torch.randn(shape[:-1], generator=g)
    reference = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(logits=weights.double()),
        torch.distributions.StudentT(df.double(), loc.double(), scale.double()),
    ).log_prob(x.double())
    torch.testing.assert_close(StudentTMixture(weights, loc, scale, df).value_log_prob(x), reference)


def test_patch_targets_are_the_next_patch_in_the_scale_of_the_one_before():
    cfg = _net_config()
    values = np.concatenate([np.full(3, np.nan), np.arange(1.0, 14.0), np.full(4, np.nan)])[None]  # 5 patches
    batch = scale_patches(values, cfg)
    assert batch.inputs.shape == (1, 1, 5, 4) and batch.targets.shape == (1, 1, 4, 4)
    assert batch.observed[0, 0].tolist() == [[True] * 4, [True] * 4, [True] * 4, [False] * 4]  # padding: no loss
    # patch 0 holds one value (1.0): its statistics are (1, sqrt(0.1)), patch 1's targets are 2..5 in that scale
    torch.testing.assert_close(batch.targets[0, 0, 0], (torch.arange(2.0, 6.0) - 1.0) / math.sqrt(0.1))


def test_own_draws_replace_whole_observed_patches_and_targets_stay_the_truth():
    """Parallel scheduled sampling: the first patch, patches with a missing value and padding are never replaced;
    with share 1 every other patch is a draw; the targets are the true next patches in the mixed inputs' scale."""
    cfg = _net_config()
    net = random_toto(cfg, seed=2).net
    rng = np.random.default_rng(0)
    values = 100 + np.cumsum(rng.normal(size=(2, 28)), axis=1)  # 7 patches
    values[0, 9] = np.nan  # patch 2 of series 0 has a missing value
    values[1, 20:] = np.nan  # series 1 ends after 5 patches: 2 of padding
    assert (own_draws(net, values, 0.0, 5.0, rng) == values)[~np.isnan(values)].all()
    mixed = own_draws(net, values, 1.0, 5.0, rng)
    same = np.isclose(mixed, values, equal_nan=True).reshape(2, 7, 4)
    changed = ~same.all(axis=-1)  # [B, L]: patches with a new value
    assert changed.tolist() == [
        [False, True, False, True, True, True, True],
        [False, True, True, True, True] + [False] * 2,
    ]
    assert np.array_equal(np.isnan(mixed), np.isnan(values))
    # with a clip of ~0 every draw is the mean of the patch before (its causal location): replaced in place
    pinned = own_draws(net, values, 1.0, 1e-9, np.random.default_rng(1)).reshape(2, 7, 4)
    loc = scale_patches(values, cfg).loc[:, 0, :, 0].double().numpy()  # [B, L]
    for b, j in zip(*np.nonzero(changed), strict=True):
        np.testing.assert_allclose(pinned[b, j], loc[b, j - 1], rtol=1e-6)
    with pytest.raises(ValueError, match="`truth` must have the shape of `values` and NaN"):
        scale_patches(values, cfg, truth=np.nan_to_num(values))
    batch, truth = scale_patches(mixed, cfg, truth=values), scale_patches(values, cfg)
    assert not torch.allclose(batch.inputs, truth.inputs)
    expected = (torch.from_numpy(np.nan_to_num(values)).float().view(2, 1, 7, 4)[:, :, 1:] - batch.loc[:, :, :-1]) / (
        batch.scale[:, :, :-1]
    )
    torch.testing.assert_close(batch.targets, torch.where(batch.observed, expected, 0.0))


def test_training_draws_follow_the_mixture():
    """``sample_mixture`` against torch's own mixture sampler, 200,000 draws each: the share below three points
    (a draw that ignored the weights or the degrees of freedom would miss by far more than 0.006); a component
    with infinite degrees of freedom is a Gaussian."""
    n = 200_000
    shape = (n, 1, 1, 2)
    parts = [torch.tensor(v).double() for v in ([0.3, 0.7], [-2.0, 3.0], [1.0, 0.5], [3.0, 8.0])]
    head = StudentTMixture(parts[0].log().expand(shape), *(t.expand(shape) for t in parts[1:]))
    x = sample_mixture(head, np.random.default_rng(0)).ravel()
    torch.manual_seed(0)
    reference = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(probs=parts[0]), torch.distributions.StudentT(parts[3], parts[1], parts[2])
    ).sample((n,))
    for point in (-2.0, 0.5, 3.0):
        assert abs((x < point).mean() - (reference < point).double().mean().item()) < 0.006, point
    one = (n, 1, 1, 1)
    gauss = StudentTMixture(
        torch.zeros(one, dtype=torch.float64), torch.ones(one), 2 * torch.ones(one), torch.full(one, math.inf)
    )
    g = sample_mixture(gauss, np.random.default_rng(1)).ravel()
    assert abs(g.mean() - 1.0) < 0.02 and abs(g.std() - 2.0) < 0.02
    assert abs((np.abs(g - 1.0) > 6.0).mean() - 0.0027) < 0.001  # three sigmas: Gaussian tails, not Student-T's


def test_the_loss_is_the_references_combined_loss():
    """lambda x NLL + (1 - lambda) x Barron's alpha-0 loss of the mean, as toto-ts's CombinedLoss computes it."""
    cfg = _net_config()
    net = random_toto(cfg, seed=1).net
    values = np.random.default_rng(1).normal(size=(3, 32))
    batch = scale_patches(values, cfg)
    loss = patch_loss(net, batch, lambda_nll=0.575, delta=0.1)
    logits, loc, scale, df = (t[:, 0, :-1] for t in net.distribution(net(batch.inputs)))
    mix = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(logits=logits), torch.distributions.StudentT(df, loc, scale)
    )
    target = batch.targets[:, 0]
    expected = 0.575 * -mix.log_prob(target) + 0.425 * torch.log1p(0.5 * ((mix.mean - target) / 0.1) ** 2)
    torch.testing.assert_close(loss, expected.mean(), rtol=1e-5, atol=1e-6)


def test_lag_heads_look_one_season_back_and_random_heads_do_not():
    cfg = _net_config(embed_dim=96, num_heads=2)  # head size 48
    model = random_toto(cfg, seed=0)
    h = model.net.embed(torch.randn(1, 1, 100, 4))

    @torch.no_grad()
    def attention(head: int) -> torch.Tensor:
        q, k, _ = model.net.layers[0].attention_inputs(h)
        index = torch.arange(100.0)
        rope = model.net.rope(index, torch.zeros_like(index))
        q, k = model.net.rotate(q, rope, keys=False), model.net.rotate(k, rope, keys=True)
        scores = (q @ k.transpose(-1, -2))[0, 0, head] / 48**0.5
        return scores.masked_fill(torch.ones(100, 100, dtype=torch.bool).triu(1), -math.inf).softmax(-1)

    lag = season_lag(SEASONS[1], 4)
    assert float(attention(1)[80, 80 - lag]) < 0.2  # random weights: spread out
    lag_heads(model.net, 2)
    for head in range(2):
        lag = season_lag(SEASONS[head], 4)
        assert float(attention(head)[80, 80 - lag]) > 0.7, head


def test_tiny_toto_pretraining_with_own_draws_learns(tmp_path):
    """A run with half the input patches the model's own draws trains (the loss falls) and saves a checkpoint."""
    pytest.importorskip("statsmodels")
    cfg = TotoTrainConfig.from_file(CONFIG, out_dir=str(tmp_path / "run"), steps=40, own_draws=0.5)
    last = train_toto(cfg, progress=False)
    log = json.loads((last / "log.json").read_text())
    first, final = sum(x["loss"] for x in log[:10]) / 10, sum(x["loss"] for x in log[-10:]) / 10
    assert len(log) == 40 and final < first - 0.2, (first, final)
    assert json.loads((tmp_path / "run" / "train_config.json").read_text())["own_draws"] == 0.5


def test_tiny_toto_pretraining_learns_resumes_and_forecasts(tmp_path):
    pytest.importorskip("statsmodels")
    cfg = TotoTrainConfig.from_file(CONFIG, out_dir=str(tmp_path / "run"), steps=60)
    last = train_toto(cfg, progress=False)
    log = json.loads((last / "log.json").read_text())
    assert len(log) == 60
    first, final = sum(x["loss"] for x in log[:10]) / 10, sum(x["loss"] for x in log[-10:]) / 10
    assert final < first - 0.3, (first, final)
    config = json.loads((last / "config.json").read_text())
    assert config["spacewise_every_n_layers"] == -1 and config["leapcast"]["context_length"] == 64
    assert config["leapcast"]["num_samples"] == cfg.num_samples == 100  # the paths a forecast draws unless told
    assert "spread" not in config["leapcast"] and cfg.spread == 1.0  # the mixture's scales as trained: no key
    assert (
        options(dataclasses.replace(cfg, spread=1.1)).spread == 1.1
    )  # a config's spread: the options checkpoints are saved with
    fc = Forecaster.from_pretrained(last)
    assert fc.sampling_config().num_samples == 100
    samples = fc.predict(torch.arange(40.0), 6, num_samples=3)
    assert samples.shape == (1, 3, 6) and torch.isfinite(samples).all()
    train_toto(TotoTrainConfig.from_file(CONFIG, out_dir=str(tmp_path / "run"), steps=70), progress=False)
    assert len(json.loads((last / "log.json").read_text())) == 70  # resumed, not restarted
    # a run may start from a trained checkpoint of its shape, and refuses one of another shape
    assert initial_toto(TotoTrainConfig.from_file(CONFIG, out_dir="x", init_from=str(last))).net.cfg == fc.model.cfg
    with pytest.raises(ValueError, match="init_from"):
        initial_toto(TotoTrainConfig.from_file(CONFIG, out_dir="x", init_from=str(last), embed_dim=48))


def test_the_cli_trains_the_family_its_config_names(tmp_path):
    pytest.importorskip("statsmodels")
    result = CliRunner().invoke(app, ["train", str(CONFIG), "--out-dir", str(tmp_path / "run"), "--steps", "2"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "run" / "last" / "config.json").read_text())["patch_size"] == 4
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"extends": str(CONFIG), "datasets": ["m3-monthly"]}))
    result = CliRunner().invoke(app, ["train", str(bad)])
    assert result.exit_code == 2 and "held-out" in result.output
    bad.write_text(json.dumps({"extends": str(CONFIG), "num_samples": 0}))
    result = CliRunner().invoke(app, ["train", str(bad)])
    assert result.exit_code == 2 and "num_samples" in result.output and "0" in result.output
    for value in (-1.1, "Infinity"):
        bad.write_text(json.dumps({"extends": str(CONFIG), "spread": float(value)}))
        result = CliRunner().invoke(app, ["train", str(bad)])
        assert result.exit_code == 2 and "spread" in result.output and str(value).lower()[:3] in result.output.lower()
    bad.write_text(json.dumps({"extends": str(CONFIG), "lag_heads": 9}))
    result = CliRunner().invoke(app, ["train", str(bad)])
    assert result.exit_code == 2 and "lag_heads" in result.output and "9" in result.output


def test_crops_pad_the_first_patch_and_end_in_whole_patches():
    cfg = TotoTrainConfig(out_dir="x", patch_size=4, max_patches=6, batch_size=64, min_context=3)
    sampler = PatchSampler(cfg, [np.arange(1.0, 11.0), np.arange(1.0, 101.0)], [])
    values = sampler.values()
    assert values.shape[1] % 4 == 0 and values.shape[1] <= 24
    for row in values:
        observed = np.flatnonzero(~np.isnan(row))
        assert observed[0] < 4  # at most P - 1 missing values in front
        assert (np.diff(row[observed]) == 1).all()  # one contiguous run of the series, in order


@pytest.mark.parametrize("share", [0.0, 0.5])
def test_short_crops_cut_that_share_of_long_series_short(share):
    """With ``short_crops`` 0 a crop of a long series is max_patches long unless it ends within that of the series'
    start (1.6% of end points here); with 0.5 about half are shorter."""
    cfg = TotoTrainConfig(out_dir="x", patch_size=4, max_patches=40, batch_size=400, min_context=3, short_crops=share)
    sampler = PatchSampler(cfg, [np.arange(1.0, 10_001.0)], [])
    lengths = (~np.isnan(sampler.values())).sum(axis=1)  # observed values per crop
    short = lengths < 40 * 4 - 3  # a full crop loses at most P - 1 values to the missing lead
    assert lengths.min() >= min(2 * 4 - 3, cfg.min_context + 1)  # a short crop, or an end near the series' start
    assert lengths.max() <= 40 * 4
    if share == 0:
        assert short.mean() < 0.05
    else:
        assert 0.4 < short.mean() < 0.6 and (lengths < 4 * 4).any()


def test_level_shifts_move_that_share_of_crops_from_one_point_on():
    """``level_shifts`` 0.5 on a straight line below zero (so shifts are added): about half the crops carry one
    break (a single jump in their differences), the rest none."""
    line = [np.arange(-2000.0, 0.0)]
    cfg = TotoTrainConfig(out_dir="x", patch_size=4, max_patches=10, batch_size=300, min_context=3, level_shifts=0.5)
    shifted = PatchSampler(cfg, line, []).values()
    breaks = [np.flatnonzero(np.abs(np.diff(row[~np.isnan(row)]) - 1) > 1e-9) for row in shifted]
    assert all(len(b) <= 1 for b in breaks) and 0.35 < np.mean([len(b) == 1 for b in breaks]) < 0.65


def test_crops_without_level_shifts_are_the_crops_of_before():
    """With ``level_shifts`` 0 (the default) no random number is drawn for it: the crops of a config with short
    crops and trends are those the sampler made before the option existed (sum and gaps recorded from that code)."""
    cfg = TotoTrainConfig(
        out_dir="x", patch_size=4, max_patches=10, batch_size=50, min_context=3, short_crops=0.5, trend_augmentation=0.3
    )
    pool = [np.sin(np.arange(300.0) / 7) * 10 + 20, np.arange(1.0, 200.0)]
    values = PatchSampler(cfg, pool, [np.cos(np.arange(500.0))]).values()
    assert values.shape == (50, 40) and np.isnan(values).sum() == 548
    assert np.nansum(values) == pytest.approx(38747.971229001014, rel=1e-12)


def test_a_level_shift_scales_non_negative_crops_and_moves_others():
    rng = np.random.default_rng(0)
    line = np.linspace(0.0, 2.0, 20)  # non-negative, one zero: scaled from a point on, the zero kept
    for _ in range(50):
        out = with_level_shift(line, rng)
        ratio = out[1:] / line[1:]
        at = np.flatnonzero(ratio != 1)
        assert out[0] == 0 and len(at) and np.allclose(ratio[at[0] :], ratio[-1]) and (ratio[: at[0]] == 1).all()
    crop = np.array([np.nan, -1.0, 2.0, np.nan, 1.0, 3.0])  # finite differences 3, -1, 2: median step 2
    for _ in range(20):
        moved = with_level_shift(crop, rng) - crop
        step = moved[np.isfinite(moved) & (moved != 0)]
        assert len(set(np.round(step, 12))) == 1 and 1.0 <= abs(step[0]) / 2.0 <= 10.0
    assert np.isnan(with_level_shift(np.full(4, np.nan), rng)).all()


def _gaussians(loc: torch.Tensor) -> StudentTMixture:
    """One near-Gaussian component (df 1e6) per value at ``loc`` [..., P], scale 1."""
    loc = loc[..., None]
    return StudentTMixture(torch.zeros_like(loc), loc, torch.ones_like(loc), torch.full_like(loc, 1e6))


def test_draws_follow_the_mixture():
    """Kolmogorov-Smirnov against the mixture's CDF; the same draws fail against a mixture with other weights."""
    stats = pytest.importorskip("scipy.stats")
    from leapcast.train.toto_distill import draw

    head = StudentTMixture(
        torch.tensor([[1.0, 2.0]]).log(),
        torch.tensor([[-2.0, 3.0]]),
        torch.tensor([[1.0, 0.5]]),
        torch.tensor([[3.0, 5.0]]),
    )  # [P=1, C=2]: weights 1/3, 2/3
    torch.manual_seed(0)
    x = draw(head, 20000)[:, 0].double().numpy()

    def cdf(w):
        return lambda v: w[0] * stats.t.cdf(v, 3.0, -2.0, 1.0) + w[1] * stats.t.cdf(v, 5.0, 3.0, 0.5)

    assert stats.kstest(x, cdf((1 / 3, 2 / 3))).pvalue > 1e-3
    assert stats.kstest(x, cdf((0.4, 0.6))).pvalue < 1e-6  # negative control


def test_acceptance_of_whole_patches_is_the_overlap_of_joint_densities():
    """Gaussians shifted by d in each of P values: a value's overlap is 2 Phi(-d / 2), a whole patch's 2 Phi(-d sqrt(P) / 2)."""
    from leapcast.train.toto_distill import acceptance

    torch.manual_seed(0)
    p, q = _gaussians(torch.zeros(50, 4)), _gaussians(torch.full((50, 4), 0.5))
    observed = torch.ones(50, 4, dtype=torch.bool)
    patch, value = acceptance(p, q, observed, draws=400)
    phi = torch.distributions.Normal(0.0, 1.0).cdf
    assert patch == pytest.approx(float(2 * phi(torch.tensor(-0.5))), abs=0.01)
    assert value == pytest.approx(float(2 * phi(torch.tensor(-0.25))), abs=0.01)
    assert acceptance(p, p, observed, draws=10) == (1.0, 1.0)


def test_distilling_a_toto_draft_lowers_its_kl_and_the_cli_runs_it(tmp_path):
    pytest.importorskip("statsmodels")
    from leapcast.models.toto_presets import save_toto
    from leapcast.train.config import TotoDistillConfig
    from leapcast.train.toto_distill import distill_toto

    target = save_toto(random_toto(_net_config(), seed=4, options=TotoOptions(context_length=64)), tmp_path / "t")
    data = {"datasets": ["nile", "co2"], "kernel_synth": 10, "mixup": 10, "seasonal_synth": 10, "max_patches": 16}
    cfg = TotoDistillConfig(
        target=str(target),
        out_dir=str(tmp_path / "d"),
        embed_dim=16,
        mlp_hidden_dim=16,
        k_components=3,
        steps=60,
        lr=3e-3,
        warmup=5,
        batch_size=16,
        threads=1,
        **data,
    )
    last = distill_toto(cfg, progress=False)
    log = json.loads((last / "log.json").read_text())
    first, final = sum(x["loss"] for x in log[:10]) / 10, sum(x["loss"] for x in log[-10:]) / 10
    assert final < 0.7 * first, (first, final)
    draft = Forecaster.from_pretrained(target, draft=str(last))  # it proposes for its target
    assert draft.predict(torch.arange(30.0), 8, num_samples=2).shape == (1, 2, 8)
    config = tmp_path / "draft.json"
    config.write_text(json.dumps({**data, "embed_dim": 16, "steps": 2, "batch_size": 4, "threads": 1}))
    result = CliRunner().invoke(
        app, ["distill", "--target", str(target), "--out-dir", str(tmp_path / "cli"), "--draft-config", str(config)]
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "cli" / "last" / "model.safetensors").is_file()
