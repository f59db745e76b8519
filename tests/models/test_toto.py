"""Native Toto against the reference (toto-ts) on tiny random weights, and through every API.

Oracle tests (marked ``oracle``) need ``toto-ts``, installed without its torch pin as .ci/run does.
Inputs are of order 1, where float32 rounding stays below 1e-6 relative; the tolerances are 1e-5.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from leapcast.cli import app
from leapcast.forecaster import Forecaster
from leapcast.models import toto_net
from leapcast.models.loading import CheckpointError, load_model
from leapcast.models.toto import Toto, TotoOptions
from leapcast.models.toto_net import TotoConfig
from leapcast.models.toto_presets import random_toto, save_toto, to_reference

TOL = 1e-5

CONFIGS = {  # name -> (config, context length, variates)
    "univariate": (
        TotoConfig(
            patch_size=8,
            stride=8,
            embed_dim=32,
            num_layers=2,
            num_heads=2,
            mlp_hidden_dim=64,
            spacewise_every_n_layers=2,
            spacewise_first=False,
            k_components=3,
        ),
        48,
        1,
    ),
    "ragged-context": (
        TotoConfig(
            patch_size=8,
            stride=8,
            embed_dim=32,
            num_layers=2,
            num_heads=2,
            mlp_hidden_dim=64,
            spacewise_every_n_layers=2,
            spacewise_first=False,
            k_components=3,
        ),
        45,
        1,
    ),
    "multivariate": (
        TotoConfig(
            patch_size=8,
            stride=8,
            embed_dim=32,
            num_layers=4,
            num_heads=4,
            mlp_hidden_dim=64,
            spacewise_every_n_layers=2,
            spacewise_first=True,
            k_components=5,
        ),
        61,
        3,
    ),
    "unstabilised": (
        TotoConfig(
            patch_size=4,
            stride=4,
            embed_dim=16,
            num_layers=3,
            num_heads=2,
            mlp_hidden_dim=24,
            spacewise_every_n_layers=-1,
            k_components=2,
            stabilize_with_global=False,
        ),
        30,
        2,
    ),
}


def reference_of(model: Toto):
    """toto-ts' own module with the same weights (loaded strictly)."""
    toto = pytest.importorskip("toto.model.toto")
    cfg = model.cfg.to_dict()
    cfg["use_memory_efficient_attention"] = False  # no xFormers here; the same attention
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = toto.Toto(**cfg).eval()
    ref.load_state_dict(to_reference(model.net), strict=True)
    return ref


def context(seed: int, v: int, t: int) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).normal(size=(v, t)).cumsum(-1) * 0.3).float()


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a.double() - b.double()).abs() / b.double().abs().clamp_min(1.0)).max())


# --- parity with the reference ----------------------------------------------------------------------------


@pytest.mark.oracle
@pytest.mark.parametrize("centers", ["cached", "relative"])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_mixture_parameters_match_the_reference_patch_by_patch(name, centers):
    """Weights, df, loc and scale (value space) of every value of the next patch, over 5 patches fed the same
    values: ``cached`` against the reference with its KV cache, ``relative`` against it without."""
    from toto.inference.forecaster import TotoForecaster

    cfg, t, v = CONFIGS[name]
    model = random_toto(cfg, seed=1, options=TotoOptions(xpos_centers=centers))
    ref = reference_of(model)
    p = cfg.patch_size
    x = context(2, v, t)
    series, observed, _, _ = _padded(x, p)
    width = series.shape[-1]
    ids = torch.zeros(1, v, width, dtype=torch.int)
    steps = 5
    cache = (
        ref.model.allocate_kv_cache(1, v, width + steps * p, series.device, series.dtype)
        if centers == "cached"
        else None
    )
    feeds = torch.from_numpy(np.random.default_rng(3).normal(size=(steps, 1, v, p))).float()
    state = model.prefix(x[None] if v > 1 else x, 1, steps + 1)
    step_input = model.start_inputs(state)
    for s in range(steps):
        with torch.no_grad():
            out = ref.model(
                inputs=series, input_padding_mask=observed, id_mask=ids, kv_cache=cache, scaling_prefix_length=width
            )
        dist = TotoForecaster.create_affine_transformed(out.distribution, out.loc, out.scale)
        mixture = dist.base_dist
        comp = mixture.component_distribution
        shift, spread = out.loc[..., -p:, None], out.scale[..., -p:, None]
        want = {
            "weights": mixture.mixture_distribution.probs[0, :, -p:],
            "loc": (shift + spread * comp.loc[:, :, -p:])[0],
            "scale": (spread * comp.scale[:, :, -p:])[0],
            "df": comp.df[0, :, -p:],
        }
        head = model.step(state, step_input[:, None], s)
        got = {"weights": head.weights.softmax(-1), "loc": head.loc, "scale": head.scale, "df": head.df}
        for key in want:
            err = relative_error(got[key][0, 0].view(v, p, -1), want[key])
            assert err < TOL, f"{key} at patch {s}: {err:.2e}"
        assert relative_error(head.mean()[0, 0].view(v, p), dist.mean[0, :, -p:]) < TOL
        series = torch.cat([series, feeds[s]], dim=-1)
        observed = torch.cat([observed, torch.ones(1, v, p, dtype=torch.bool)], dim=-1)
        ids = torch.cat([ids, torch.zeros(1, v, p, dtype=torch.int)], dim=-1)
        step_input = feeds[s].reshape(1, v * p)


def _reference_forecaster(ref):
    from toto.inference.forecaster import TotoForecaster

    return TotoForecaster(ref.model)


def _padded(x: torch.Tensor, p: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """x [V, T] -> the reference's padded batch of one: series, observed, timestamps, intervals."""
    v, t = x.shape
    width = -(-t // p) * p
    series = torch.zeros(1, v, width)
    series[..., -t:] = x
    observed = torch.zeros(1, v, width, dtype=torch.bool)
    observed[..., -t:] = True
    return series, observed, torch.zeros(1, v, width, dtype=torch.long), torch.ones(1, v, dtype=torch.long)


@pytest.mark.oracle
@pytest.mark.parametrize("centers", ["cached", "relative"])
@pytest.mark.parametrize("name", ["ragged-context", "multivariate"])
def test_mean_forecast_matches_the_references_mean_path(name, centers):
    cfg, t, v = CONFIGS[name]
    model = random_toto(cfg, seed=4, options=TotoOptions(xpos_centers=centers))
    ref = reference_of(model)
    x = context(5, v, t)
    h = 3 * cfg.patch_size - 3  # not whole patches
    series, observed, stamps, intervals = _padded(x, cfg.patch_size)
    want = _reference_forecaster(ref).generate_mean(
        series, h, stamps, intervals, input_padding_mask=observed, use_kv_cache=centers == "cached"
    )[0]  # [V, h]
    fc = Forecaster(model, name="toto")
    got = fc.predict(x[None].numpy() if v > 1 else x[0].numpy(), h, top_k=1)
    got = got[0, :, 0] if v > 1 else got[0]  # [V, h]
    assert relative_error(got, want) < TOL


def _ks_bonferroni(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov per horizon step (columns), Bonferroni over steps -> the smallest adjusted p."""
    from scipy import stats

    return min(1.0, min(stats.ks_2samp(a[:, j], b[:, j]).pvalue for j in range(a.shape[1])) * a.shape[1])


@pytest.mark.oracle
def test_sampled_paths_follow_the_reference_sampler_and_a_5_percent_scale_error_does_not(monkeypatch):
    cfg, t, v = CONFIGS["ragged-context"]
    model = random_toto(cfg, seed=6)
    ref = reference_of(model)
    x = context(7, 1, t)
    n, h = 5000, 2 * cfg.patch_size
    series, observed, stamps, intervals = _padded(x, cfg.patch_size)
    torch.manual_seed(0)
    want = (
        _reference_forecaster(ref)
        .generate_samples(
            series, h, n, stamps, intervals, input_padding_mask=observed, sampling_batch_size=n, use_kv_cache=True
        )[0, 0]
        .T.numpy()
    )  # [n, h]
    fc = Forecaster(model, name="toto")
    got = fc.predict(x[0].numpy(), h, num_samples=n, seed=1)[0].numpy()  # [n, h]
    assert _ks_bonferroni(got, want) > 0.01
    mixture = toto_net.TotoNet.mixture
    monkeypatch.setattr(
        toto_net.TotoNet, "mixture", lambda self, hidden, loc, scale: mixture(self, hidden, loc, scale * 1.05)
    )
    off = fc.predict(x[0].numpy(), h, num_samples=n, seed=1)[0].numpy()
    assert _ks_bonferroni(off, want) < 1e-3


# --- ragged batches ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("toto") / "tiny-toto"
    save_toto(random_toto(CONFIGS["ragged-context"][0], seed=8), folder)
    return folder


def _series(seed: int, lengths) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(size=n).cumsum() * 0.4 for n in lengths]


def test_a_series_in_a_ragged_batch_forecasts_as_it_does_alone(tiny):
    """Padding is masked and positions count from each series' own first patch: the batch changes nothing but
    float32 rounding (BLAS blocks products by batch shape: bitwise identity would need batch-invariant kernels)."""
    fc = Forecaster.from_pretrained(tiny)
    series = _series(0, (50, 13, 80, 5))
    mean = fc.predict(series, 20, top_k=1)
    paths = fc.predict(series, 20, num_samples=8, seed=3)
    for i, x in enumerate(series):
        alone_mean = fc.predict([x], 20, top_k=1)
        alone_paths = fc.predict([x], 20, num_samples=8, seed=3, series_keys=[i])
        assert relative_error(mean[i], alone_mean[0]) < TOL
        assert relative_error(paths[i], alone_paths[0]) < 1e-4  # the same uniforms drawn through rounding-close heads


@pytest.mark.oracle
def test_the_references_own_ragged_batch_moves_the_short_series(tiny):
    """The control for the test above: toto-ts pads with zeros it attends to, so its short series change in a batch."""
    model = load_model(tiny)
    ref = reference_of(model)
    long, short = (torch.from_numpy(x).float() for x in _series(0, (80, 13)))
    p = model.patch_size
    batch = torch.zeros(2, 1, 80)
    batch[0, 0], batch[1, 0, -13:] = long, short
    observed = torch.zeros(2, 1, 80, dtype=torch.bool)
    observed[0], observed[1, 0, -13:] = True, True
    stamps, intervals = torch.zeros(2, 1, 80, dtype=torch.long), torch.ones(2, 1, dtype=torch.long)
    together = _reference_forecaster(ref).generate_mean(
        batch, 2 * p, stamps, intervals, input_padding_mask=observed, use_kv_cache=True
    )
    series, obs, st, iv = _padded(short[None], p)
    alone = _reference_forecaster(ref).generate_mean(series, 2 * p, st, iv, input_padding_mask=obs, use_kv_cache=True)
    assert relative_error(together[1], alone[0]) > 1e-3


def test_series_join_a_running_batch_and_leave_it(tiny):
    """The engine's continuous batching on Toto: series added between iterations decode as they would alone."""
    from leapcast.engine.loop import Decoder
    from leapcast.engine.sampling import SamplingConfig
    from leapcast.engine.streams import RowStreams

    model = load_model(tiny)
    a, b, c = (torch.from_numpy(x).float() for x in _series(1, (40, 17, 60)))
    greedy = SamplingConfig(num_samples=2, top_k=1)
    dec = Decoder(model)
    first = dec.add(torch.stack([a[-17:], b]), 4, greedy, RowStreams.for_series(0, [0, 1], 2))
    dec.step()
    later = dec.add(c[None], 2, SamplingConfig(num_samples=3, top_k=1), RowStreams.for_series(0, [2], 3))
    out = dec.run()
    for sid, x, steps, rows in [(first[1], b, 4, 2), (later[0], c, 2, 3)]:
        alone = Decoder(model)
        ids = alone.add(x[None], steps, SamplingConfig(num_samples=rows, top_k=1), RowStreams.for_series(0, [0], rows))
        assert relative_error(out[sid], alone.run()[ids[0]]) < TOL


# --- loading ----------------------------------------------------------------------------------------------


def test_both_feed_forward_layouts_load_to_the_same_model(tmp_path):
    model = random_toto(CONFIGS["univariate"][0], seed=9)
    x = context(1, 1, 40)[0]
    forecasts = []
    for fused in (False, True):
        folder = save_toto(model, tmp_path / f"fused-{fused}", fused=fused)
        forecasts.append(Forecaster.from_pretrained(folder).predict(x, 16, top_k=1))
    assert torch.equal(forecasts[0], forecasts[1])


def test_missing_and_unexpected_tensors_are_named(tmp_path):
    from safetensors.torch import load_file, save_file

    folder = save_toto(random_toto(CONFIGS["univariate"][0]), tmp_path / "t")
    weights = load_file(str(folder / "model.safetensors"))
    weights.pop("model.unembed.bias")
    weights["model.extra.weight"] = torch.zeros(2)
    save_file(weights, str(folder / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"model\.unembed\.bias.*model\.extra\.weight"):
        load_model(folder)


def test_config_fields_toto_does_not_take_are_refused(tmp_path):
    folder = save_toto(random_toto(CONFIGS["univariate"][0]), tmp_path / "t")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "num_experts": 4}))
    with pytest.raises(CheckpointError, match="num_experts"):
        load_model(folder)
    (folder / "config.json").write_text(json.dumps({**config, "scaler_cls": "<class 'model.scaler.StdMeanScaler'>"}))
    with pytest.raises(CheckpointError, match="scaler_cls"):
        load_model(folder)


def test_weights_of_another_size_are_refused_by_shape(tmp_path):
    folder = save_toto(random_toto(CONFIGS["univariate"][0]), tmp_path / "t")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "embed_dim": 64}))
    with pytest.raises(CheckpointError, match="other shapes"):
        load_model(folder)


@pytest.mark.oracle
def test_the_reference_loads_what_leapcast_writes(tmp_path):
    """``Toto.load_from_checkpoint`` of toto-ts reads a folder written by ``save_toto`` into the same weights."""
    toto = pytest.importorskip("toto.model.toto")
    model = random_toto(CONFIGS["multivariate"][0], seed=2)
    folder = save_toto(model, tmp_path / "t")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = toto.Toto.load_from_checkpoint(str(folder))
    mine = to_reference(model.net)
    theirs = {k: v for k, v in ref.state_dict().items() if not k.endswith("rotary_emb.freqs")}
    assert set(theirs) == set(mine)
    assert all(torch.equal(theirs[k], mine[k]) for k in mine)


# --- the APIs ---------------------------------------------------------------------------------------------


def test_multivariate_items_through_the_array_api(tiny):
    fc = Forecaster.from_pretrained(tiny)
    items = np.random.default_rng(2).normal(size=(3, 2, 30)).cumsum(-1)
    items[1, :, :7] = np.nan  # a shorter item, left-padded
    out = fc.predict(items, 12, num_samples=4, seed=0)
    assert out.shape == (3, 2, 4, 12) and torch.isfinite(out).all()
    alone = fc.predict(items[1:2, :, 7:], 12, num_samples=4, seed=0, series_keys=[1])
    assert relative_error(out[1], alone[0]) < 1e-4


def test_sampling_settings_of_categorical_heads_are_refused(tiny):
    fc = Forecaster.from_pretrained(tiny)
    for kwargs, name in [({"temperature": 0.7}, "temperature"), ({"top_p": 0.9}, "top_p"), ({"top_k": 50}, "top_k")]:
        with pytest.raises(ValueError, match=f"`{name}`"):
            fc.predict(np.arange(20.0), 8, **kwargs)
    with pytest.raises(ValueError, match="probability zero"):
        Forecaster.from_pretrained(tiny, draft="seasonal")


def test_values_are_read_as_given_in_range_and_rescaled_beyond_it(tiny):
    """Toto's scaler has an absolute floor, so scaling a series changes its forecast: leapcast does not rescale
    in range (parity with the reference), and brings series beyond 2**100 (or below 2**-100) to a largest |value| of
    about 1,000 by a power of two (exactly back): there the floor is small against the series' variation."""
    fc = Forecaster.from_pretrained(tiny)
    x = _series(4, (40,))[0] + 3
    base = fc.predict(x, 8, top_k=1)
    with pytest.warns(UserWarning, match="vary by less than 0.1"):  # the floor shows, and the user is told
        assert not torch.allclose(fc.predict(x * 1e-3, 8, top_k=1) * 1e3, base, rtol=1e-3)
    huge, tiny_scale = 2.0**200, 2.0**-200
    shift = 10 - int(
        np.floor(np.log2(np.abs(x).max()))
    )  # beyond the range, read with largest |value| in [2**10, 2**11)
    at_target = fc.predict(x * 2.0**shift, 8, top_k=1) / 2.0**shift
    for c in (huge, tiny_scale):
        assert torch.allclose(fc.predict(x * c, 8, top_k=1) / c, at_target, rtol=1e-6)


def test_cli_forecast_info_and_init(tmp_path, tiny):
    runner = CliRunner()
    frame = tmp_path / "y.csv"
    rows = [f"s{i},2024-01-{d + 1:02d},{v:.4f}" for i, x in enumerate(_series(5, (30, 20))) for d, v in enumerate(x)]
    frame.write_text("unique_id,ds,y\n" + "\n".join(rows) + "\n")
    result = runner.invoke(
        app,
        [
            "forecast",
            "--model",
            str(tiny),
            "--input",
            str(frame),
            "--h",
            "10",
            "--num-samples",
            "16",
            "--seed",
            "0",
            "--level",
            "80",
        ],
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "unique_id,ds,tiny-toto,tiny-toto-lo-80,tiny-toto-hi-80"
    assert len(lines) == 21 and all(len(line.split(",")) == 5 for line in lines[1:])
    info = runner.invoke(app, ["info", str(tiny)])
    assert info.exit_code == 0 and "toto" in info.output and "Student-T" in info.output
    made = runner.invoke(app, ["init", str(tmp_path / "small"), "--family", "toto", "--size", "small"])
    assert made.exit_code == 0, made.output
    small = load_model(tmp_path / "small")
    assert (small.cfg.embed_dim, small.cfg.num_layers, small.patch_size) == (256, 4, 16)


# --- the house clip -----------------------------------------------------------------------------------------


def _decode(model, x: torch.Tensor, steps: int, sampling, proposer=None, spec=None) -> torch.Tensor:
    from leapcast.engine.loop import Decoder
    from leapcast.engine.streams import RowStreams

    dec = Decoder(model, proposer, spec)
    ids = dec.add(x, steps, sampling, RowStreams.for_series(0, list(range(len(x))), sampling.num_samples))
    out = dec.run()
    return torch.stack([out[i] for i in ids])  # [B, S, steps * P]


def test_clip_scales_keeps_drawn_values_within_the_contexts_band_and_speculation_exact():
    """clip_scales c: every drawn value lies within the context's mean +- c x its scale (the clip
    binds: values reach the band's edge, and without it they leave the band); mean decoding with a draft equal
    to the target still gives plain mean decoding's path."""
    from leapcast.engine.proposers.draft_model import DraftModelProposer
    from leapcast.engine.sampling import SamplingConfig
    from leapcast.engine.speculative import SpecConfig

    cfg = CONFIGS["ragged-context"][0]
    x = torch.from_numpy(np.stack(_series(5, (48, 48)))).float()  # [2, 48]
    mean = x.double().mean(-1, keepdim=True)
    std = (x.double().var(-1, unbiased=False, keepdim=True) + toto_net.MINIMUM_SCALE).sqrt()  # context_scale
    sampled = SamplingConfig(num_samples=50)
    free = _decode(random_toto(cfg, seed=8), x, 6, sampled).double()  # [2, 50, 48]
    c = 0.5
    clipped_model = random_toto(cfg, seed=8, options=TotoOptions(clip_scales=c))
    clipped = _decode(clipped_model, x, 6, sampled).double()
    low, high = (mean - c * std)[:, None], (mean + c * std)[:, None]  # [2, 1, 1]
    slack = 1e-4 * std[:, None]
    assert bool(((free < low - slack) | (free > high + slack)).any())  # the control: unclipped draws leave the band
    assert bool(((clipped >= low - slack) & (clipped <= high + slack)).all())
    assert bool(((clipped - high).abs() < slack).any() and ((clipped - low).abs() < slack).any())
    greedy = SamplingConfig(num_samples=1, top_k=1)
    plain = _decode(clipped_model, x, 6, greedy)
    spec = _decode(
        clipped_model, x, 6, greedy, DraftModelProposer(clipped_model, clipped_model), SpecConfig(k=3, adaptive=False)
    )
    assert relative_error(spec, plain) < TOL


@pytest.mark.parametrize("value", [0, -1.0, "5", True, float("inf")])
def test_a_bad_clip_scales_is_refused_naming_it(value):
    with pytest.raises(ValueError, match=r"`leapcast\.clip_scales` must be a positive number or null"):
        TotoOptions(clip_scales=value)


def test_spread_multiplies_every_components_scale_and_leaves_the_mean_path():
    """spread w: the heads' component scales are w times the reference's and nothing else moves, so mean decoding
    is unchanged while sampled paths spread wider (the control: the same model and numbers at spread 1)."""
    from leapcast.engine.sampling import SamplingConfig

    cfg = CONFIGS["ragged-context"][0]
    x = torch.from_numpy(np.stack(_series(6, (48, 48)))).float()  # [2, 48]
    base, wide = random_toto(cfg, seed=8), random_toto(cfg, seed=8, options=TotoOptions(spread=1.3))
    heads = []
    for model in (base, wide):
        state = model.prefix(x, 1, 4)
        heads.append(model.step(state, model.start_inputs(state)[:, None], 0))
    a, b = heads
    assert torch.allclose(b.scale, 1.3 * a.scale, rtol=1e-6)
    for name in ("weights", "loc", "df"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    greedy = SamplingConfig(num_samples=1, top_k=1)
    assert torch.equal(_decode(base, x, 6, greedy), _decode(wide, x, 6, greedy))
    sampled = SamplingConfig(num_samples=50)
    spread_of = [_decode(model, x, 6, sampled).double().std(dim=1).mean() for model in (base, wide)]
    assert float(spread_of[1] / spread_of[0]) > 1.15


@pytest.mark.parametrize("value", [0, -1.0, "1.1", True, float("nan"), float("inf")])
def test_a_bad_spread_is_refused_naming_it(value):
    with pytest.raises(ValueError, match=r"`leapcast\.spread` must be a positive finite number"):
        TotoOptions(spread=value)
