"""Pretraining: a tiny configuration trains for a few steps, the loss falls, and a run resumes."""

import json

import pytest
import torch
from conftest import FIXTURES

from leapcast import Forecaster
from leapcast.train.config import TrainConfig
from leapcast.train.loss import loss_on
from leapcast.train.pretrain import train

CONFIG = FIXTURES / "tiny-smoke.json"


def test_tiny_pretraining_lowers_the_loss_and_resumes(tmp_path):
    pytest.importorskip("statsmodels")
    cfg = TrainConfig.from_file(CONFIG, out_dir=str(tmp_path / "run"), steps=60)
    last = train(cfg, progress=False)
    log = json.loads((last / "log.json").read_text())
    assert len(log) == 60
    first, final = sum(x["loss"] for x in log[:10]) / 10, sum(x["loss"] for x in log[-10:]) / 10
    assert final < first - 0.5, (first, final)
    # the checkpoint is an ordinary leapcast/Chronos folder
    from leapcast import Forecaster

    fc = Forecaster.from_pretrained(last)
    samples = fc.predict(torch.arange(40.0), 5, num_samples=3)
    assert samples.shape == (1, 3, 5) and torch.isfinite(samples).all()
    assert fc.seasonal_adjustment is False  # trained on raw series: no leapcast block in config.json
    # resuming continues the step count instead of starting over
    cfg_more = TrainConfig.from_file(CONFIG, out_dir=str(tmp_path / "run"), steps=70)
    train(cfg_more, progress=False)
    assert len(json.loads((last / "log.json").read_text())) == 70


@pytest.mark.parametrize("name", ["m3-monthly", "M3-Yearly", "Tourism-monthly", " ETTh1"])
def test_held_out_data_is_refused_in_any_case(name):
    with pytest.raises(ValueError, match="held-out"):  # the data loader reads names case-insensitively
        TrainConfig(out_dir="x", datasets=(name,))


def test_unknown_data_sets_are_refused_when_the_config_is_read():
    with pytest.raises(ValueError, match=r"unknown data sets \['nope'\]; choose from \[.*'m1-monthly'"):
        TrainConfig(out_dir="x", datasets=("m1-monthly", "nope"))


def test_a_save_is_whole_or_not_there(tmp_path):
    """A stop while saving: an unfinished save is dropped and the previous one kept; a finished one whose swap was
    cut short is put in place. The optimizer's state goes through safetensors and JSON, nothing pickled."""
    from leapcast.train.loop import load_optimizer, recover, save_optimizer, write_whole

    net = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(net.parameters(), lr=0.1)
    net(torch.ones(4, 3)).sum().backward()
    opt.step()
    last = tmp_path / "last"

    def write(into, step=7):
        save_optimizer(into, opt.state_dict(), step)

    write_whole(last, write)
    state, step = load_optimizer(last)
    assert step == 7 and sorted(p.name for p in last.iterdir()) == ["complete", "trainer_state"]
    assert sorted(p.name for p in (last / "trainer_state").iterdir()) == ["optimizer.safetensors", "state.json"]
    fresh = torch.optim.AdamW(torch.nn.Linear(3, 2).parameters(), lr=0.1)
    fresh.load_state_dict(state)
    assert torch.equal(fresh.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    (tmp_path / "last.partial").mkdir()  # a save stopped half-way: dropped, the last whole one stays
    (tmp_path / "last.partial" / "config.json").write_text("half")
    recover(last)
    assert not (tmp_path / "last.partial").exists() and load_optimizer(last)[1] == 7
    last.rename(tmp_path / "last.partial")  # a whole save whose swap stopped after the old one moved aside
    recover(last)
    assert load_optimizer(last)[1] == 7


def distill_target(tmp_path):
    """The tiny target the distillation tests distill from."""
    from conftest import make_checkpoint

    return make_checkpoint(
        tmp_path / "target",
        vocab=256,
        d_model=32,
        d_kv=8,
        d_ff=64,
        layers=1,
        context_length=64,
        prediction_length=16,
        seed=1,
    )


def test_chronos_distillation_resumes_where_it_stopped(tmp_path):
    pytest.importorskip("statsmodels")
    from leapcast.train.distill import DistillConfig, distill

    target_dir = distill_target(tmp_path)
    settings = dict(
        target=str(target_dir),
        out_dir=str(tmp_path / "draft"),
        d_model=16,
        d_kv=4,
        d_ff=32,
        batch_size=8,
        lr=5e-3,
        warmup=2,
        datasets=("nile",),
        kernel_synth=4,
        mixup=4,
        save_every=5,
    )
    last = distill(DistillConfig(steps=10, **settings), progress=False)
    before = json.loads((last / "log.json").read_text())
    assert len(before) == 10 and (last / "trainer_state" / "optimizer.safetensors").is_file()
    distill(DistillConfig(steps=15, **settings), progress=False)  # the same command, more steps: it goes on
    after = json.loads((last / "log.json").read_text())
    assert [x["step"] for x in after] == list(range(1, 16)) and after[:10] == before
    wider = DistillConfig(steps=20, **{**settings, "d_model": 32})
    with pytest.raises(ValueError, match=r"another config .* `d_model`: 16 there, 32 now"):
        distill(wider, progress=False)  # a draft of another shape: not trained on from this one's save
    assert json.loads((tmp_path / "draft" / "distill_config.json").read_text())["d_model"] == 16  # record kept
    with pytest.raises(ValueError, match="holds the target"):
        distill(DistillConfig(steps=2, **{**settings, "out_dir": str(target_dir)}), progress=False)


def test_a_loss_that_is_no_longer_a_number_stops_the_run(tmp_path):
    pytest.importorskip("statsmodels")
    cfg = TrainConfig.from_file(CONFIG, out_dir=str(tmp_path / "run"), steps=6)
    sane = TrainConfig(**{**cfg.__dict__, "save_every": 2, "warmup": 1})
    train(TrainConfig(**{**sane.__dict__, "steps": 2}), progress=False)  # a good save at step 2
    wild = TrainConfig(**{**sane.__dict__, "lr": 1e30})
    with pytest.raises(ValueError, match=r"(the loss became nan|the weights are no longer numbers).* lower `lr`"):
        train(wild, progress=False)
    last = tmp_path / "run" / "last"
    weights = Forecaster.from_pretrained(last).model.net.parameters()
    assert all(torch.isfinite(w).all() for w in weights)  # the kept save is the good one
    train(sane, progress=False)  # and the same command with a sane lr resumes from it to the end
    assert len(json.loads((last / "log.json").read_text())) == 6


def test_loss_ignores_missing_labels():
    from leapcast.models.presets import random_chronos_t5
    from leapcast.models.t5 import T5Config

    net = random_chronos_t5(
        T5Config(vocab_size=64, d_model=16, d_kv=4, d_ff=32, num_layers=1, num_decoder_layers=1, num_heads=4)
    ).net
    tokens, mask = torch.randint(2, 64, (2, 10)), torch.ones(2, 10, dtype=torch.bool)
    labels = torch.randint(2, 64, (2, 5))
    masked = labels.clone()
    masked[0, 2:] = -100
    assert not torch.isclose(loss_on(net, tokens, mask, labels), loss_on(net, tokens, mask, masked))
    assert torch.isfinite(loss_on(net, tokens, mask, masked))


def test_distillation_brings_the_draft_closer_to_the_target(tmp_path):
    pytest.importorskip("statsmodels")
    from conftest import make_checkpoint

    from leapcast.engine.sampling import SamplingConfig
    from leapcast.models.loading import load_model
    from leapcast.train.crops import CropSampler, series_pool
    from leapcast.train.distill import DistillConfig, distill, expected_acceptance

    target_dir = distill_target(tmp_path)
    cfg = DistillConfig(
        target=str(target_dir),
        out_dir=str(tmp_path / "draft"),
        d_model=16,
        d_kv=4,
        d_ff=32,
        steps=40,
        batch_size=16,
        lr=5e-3,
        warmup=5,
        datasets=("nile", "co2"),
        kernel_synth=10,
        mixup=10,
        save_every=40,
    )
    last = distill(cfg, progress=False)
    log = json.loads((last / "log.json").read_text())
    assert sum(x["kl"] for x in log[-8:]) < sum(x["kl"] for x in log[:8])
    target, draft = load_model(target_dir), load_model(last)

    data = TrainConfig(
        out_dir=str(tmp_path),
        n_tokens=256,
        context_length=64,
        prediction_length=16,
        batch_size=32,
        datasets=("nile",),
        kernel_synth=10,
        mixup=0,
        seed=9,
    )
    tokens, mask, labels = CropSampler(data, *series_pool(data)).batch()
    inputs = torch.cat([torch.zeros_like(labels[:, :1]), labels[:, :-1].clamp(min=0)], dim=1)
    sampling = SamplingConfig(top_k=50)
    untrained = load_model(
        make_checkpoint(
            tmp_path / "untrained",
            vocab=256,
            d_model=16,
            d_kv=4,
            d_ff=32,
            layers=1,
            context_length=64,
            prediction_length=16,
            seed=0,
        )
    )
    assert expected_acceptance(target, draft, tokens, mask, inputs, sampling) > expected_acceptance(
        target, untrained, tokens, mask, inputs, sampling
    )
    # a draft made for coarser bins is re-binned to the target's and trained on from there
    coarse = make_checkpoint(
        tmp_path / "coarse", vocab=128, d_model=16, d_kv=4, d_ff=32, layers=1, context_length=64, prediction_length=16
    )
    again = distill(
        DistillConfig(
            **{
                **cfg.__dict__,
                "out_dir": str(tmp_path / "again"),
                "steps": 2,
                "save_every": 2,
                "init_from": str(coarse),
            }
        ),
        progress=False,
    )
    assert load_model(again).vocab_size == 256 and load_model(again).net.cfg.d_model == 16


def test_soft_labels_reduce_to_cross_entropy_and_prefer_near_bins():
    import torch.nn.functional as F

    from leapcast.train.loss import soft_label_loss

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 60, generator=g)
    labels = torch.randint(2, 60, (2, 5), generator=g)
    labels[0, 0], labels[1, 4] = -100, 1  # ignored; a special token (EOS) stays one-hot
    hard = F.cross_entropy(logits.reshape(-1, 60), labels.reshape(-1), ignore_index=-100)
    assert torch.allclose(soft_label_loss(logits, labels, 0.01, 2), hard)
    target = torch.tensor([[30]])
    near, far = torch.full((1, 1, 60), -10.0), torch.full((1, 1, 60), -10.0)
    near[0, 0, 31], far[0, 0, 45] = 10.0, 10.0  # both miss bin 30; one by a bin, one by 15
    assert soft_label_loss(near, target, 2.0, 2) < soft_label_loss(far, target, 2.0, 2)
    assert F.cross_entropy(near[0], target[0]) == F.cross_entropy(
        far[0], target[0]
    )  # one-hot labels can't tell them apart


def test_stacking_doubles_the_depth_and_reuses_the_layers(tmp_path):
    from conftest import make_checkpoint

    from leapcast.models.loading import load_model
    from leapcast.train.grow import stack_layers

    small = load_model(make_checkpoint(tmp_path / "s", layers=2, d_model=32, d_kv=8))
    grown = stack_layers(small, 2)
    assert len(grown.net.enc_layers) == 4 and len(grown.net.dec_layers) == 4
    assert grown.net.cfg.num_layers == 4 and grown.net.cfg.num_decoder_layers == 4
    for i in range(4):
        assert torch.equal(grown.net.dec_layers[i].qkv.weight, small.net.dec_layers[i % 2].qkv.weight)
    grown.net.dec_layers[2].qkv.weight.data.add_(1.0)  # copies, not shared tensors
    assert not torch.equal(grown.net.dec_layers[0].qkv.weight, grown.net.dec_layers[2].qkv.weight)
    ctx = [torch.randn(40).cumsum(0)]
    from leapcast import Forecaster

    assert Forecaster(grown).predict(ctx, 5, num_samples=3, seed=0).shape == (1, 3, 5)


def test_rebinning_keeps_what_the_model_predicts_on_finer_bins(tmp_path):
    from conftest import make_checkpoint

    from leapcast.models.loading import load_model
    from leapcast.train.grow import rebin
    from leapcast.train.initial import starting_point

    coarse = starting_point(
        load_model(make_checkpoint(tmp_path / "c", layers=1, d_model=64, d_kv=16))
    )  # smooth bin embeddings
    fine = rebin(
        coarse, 2 * coarse.vocab_size - 4, coarse.chronos.low_limit, coarse.chronos.high_limit
    )  # halves the bin width
    assert fine.net.cfg.vocab_size == fine.vocab_size == 2 * coarse.vocab_size - 4
    old_centers, new_centers = coarse.tokenizer.centers, fine.tokenizer.centers
    assert torch.allclose(new_centers[::2], old_centers, atol=1e-5)  # every old value is a new bin; one new bin between
    assert torch.equal(fine.net.embed.weight[:3], coarse.net.embed.weight[:3])  # special tokens untouched
    assert torch.allclose(
        fine.net.embed.weight[3::2], coarse.net.embed.weight[3:], atol=1e-4
    )  # old values keep their rows
    between = (coarse.net.embed.weight[3:-1] + coarse.net.embed.weight[4:]) / 2
    assert torch.allclose(fine.net.embed.weight[4::2], between, atol=1e-4)  # new ones interpolate
    # tied embeddings: from the same decoder state, old-value bins keep their logits exactly
    h = torch.randn(5, coarse.net.cfg.d_model)
    with torch.no_grad():
        assert torch.allclose(fine.net.head(h)[:, 3::2], coarse.net.head(h)[:, 3:], atol=1e-4)
    x = 5 + torch.sin(torch.arange(60.0) / 3)
    assert Forecaster(fine).predict([x], 4, num_samples=2, seed=0).shape == (1, 2, 4)
    # a training config starting from a checkpoint with other bins re-bins it
    from leapcast.train.initial import initial_model

    folder = tmp_path / "c"
    same = initial_model(TrainConfig(out_dir=str(tmp_path / "r"), init_from=str(folder), n_tokens=coarse.vocab_size))
    assert same.vocab_size == coarse.vocab_size
    moved = initial_model(
        TrainConfig(out_dir=str(tmp_path / "r"), init_from=str(folder), n_tokens=1024, low_limit=-10.0, high_limit=10.0)
    )
    assert moved.vocab_size == 1024 and moved.chronos.high_limit == 10.0


def test_rebucketing_keeps_the_function_and_makes_far_offsets_exact(tmp_path):
    from conftest import make_checkpoint

    from leapcast.models.loading import load_model
    from leapcast.models.t5 import relative_position_bucket
    from leapcast.train.grow import rebucket
    from leapcast.train.initial import initial_model

    folder = make_checkpoint(tmp_path / "c", layers=1, d_model=64, d_kv=16)
    model = load_model(folder)
    with torch.no_grad():  # distinct biases per bucket, so a wrong mapping shows
        model.net.enc_bias.weight.copy_(torch.randn_like(model.net.enc_bias.weight))
        model.net.dec_bias.weight.copy_(torch.randn_like(model.net.dec_bias.weight))
    wide = rebucket(model, 128)
    assert wide.net.cfg.relative_attention_num_buckets == 128 and wide.net.enc_bias.weight.shape[0] == 128
    assert rebucket(model, 32) is model
    tokens = torch.randint(3, model.vocab_size, (2, 150))  # offsets beyond max_distance too
    mask = torch.ones_like(tokens, dtype=torch.bool)
    dec = torch.randint(3, model.vocab_size, (2, 40))
    with torch.no_grad():
        assert torch.allclose(model.net(tokens, mask, dec), wide.net(tokens, mask, dec), atol=1e-5)
    # offsets 12 and 13 shared a bucket before and have their own now
    old = relative_position_bucket(torch.tensor([-12, -13]), True, 32, 128)
    new = relative_position_bucket(torch.tensor([-12, -13]), True, 128, 128)
    assert old[0] == old[1] and new[0] != new[1]
    with pytest.raises(ValueError, match="num_buckets"):
        rebucket(model, 7)
    cfg = TrainConfig(
        out_dir=str(tmp_path / "r"), init_from=str(folder), n_tokens=model.vocab_size, relative_attention_num_buckets=64
    )
    assert initial_model(cfg).net.cfg.relative_attention_num_buckets == 64


def test_starting_point_orders_the_bins_and_points_heads_at_neighbours(tmp_path):
    from leapcast.models.t5 import relative_position_bucket
    from leapcast.train.initial import build_model

    cfg = TrainConfig(
        out_dir=str(tmp_path / "m"),
        d_model=256,
        d_kv=16,
        d_ff=128,
        n_tokens=1024,
        context_length=32,
        prediction_length=8,
    )
    net = build_model(cfg).net
    e = torch.nn.functional.normalize(net.embed.weight[3:].detach(), dim=-1)  # bin tokens, 0.03 of the scale apart
    similarity = [float((e[540] * e[540 + d]).sum()) for d in (1, 5, 30)]
    assert similarity[0] > 0.6 and similarity[0] > similarity[1] > similarity[2] and abs(similarity[2]) < 0.2
    assert abs(e.norm(dim=-1).mean() - 1) < 1e-5 and 0.8 < net.embed.weight[3:].std() < 1.2  # T5's N(0, 1) scale
    b = relative_position_bucket(
        torch.tensor([-1, 1, 0]), True, net.cfg.relative_attention_num_buckets, net.cfg.relative_attention_max_distance
    )
    table = net.enc_bias.weight
    assert table[b[0], 0] == table[:, 0].max() > 0 and table[b[1], 1] == table[:, 1].max() > 0 and table[b[2], 0] == 0


def test_seasonal_adjustment_of_the_training_series():
    """Real series train adjusted (whole-history indices: crops come from anywhere); TSMixup still mixes the raw series."""
    import numpy as np

    from leapcast.data import load
    from leapcast.deseason import seasonal_index
    from leapcast.train.crops import series_pool

    ds = load("air-passengers")
    raw = ds.full()["y"].to_numpy(float)
    base = dict(out_dir="unused", datasets=("air-passengers",), kernel_synth=0, mixup=0)
    (plain,), _ = series_pool(TrainConfig(**base))
    (adjusted,), _ = series_pool(TrainConfig(**base, seasonal_adjustment=True))
    np.testing.assert_array_equal(plain, raw)
    np.testing.assert_allclose(adjusted, seasonal_index(raw, ds.season_length, seasons=None).adjust(raw))
    assert ds.season_length == 12 and not np.allclose(adjusted, raw)


def test_a_model_trained_on_adjusted_series_forecasts_with_adjustment(tmp_path):
    cfg = TrainConfig.from_file(
        CONFIG, out_dir=str(tmp_path / "run"), steps=2, datasets=("air-passengers",), seasonal_adjustment=True
    )
    last = train(cfg, progress=False)
    assert json.loads((last / "config.json").read_text())["leapcast"] == {"seasonal_adjustment": True}
    assert Forecaster.from_pretrained(last).seasonal_adjustment is True


def test_trend_augmentation_lays_one_steady_trend_over_context_and_horizon():
    """Growth is exp(trend) on positive crops and a ramp otherwise, damped in the horizon when asked; the horizon stops at e^2."""
    import numpy as np

    from leapcast.train.crops import CropSampler, with_trend

    past, future = np.full(50, 3.0), np.full(64, 3.0)
    grown, ahead = with_trend(past, future, np.random.default_rng(0), max_rate=0.12)
    rate = np.log(ahead[0] / grown[-1])
    assert 0.12 / 40 <= abs(rate) <= 0.12
    np.testing.assert_allclose(np.diff(np.log(np.concatenate([grown, ahead]))), rate)
    assert len(ahead) == min(64, int(2.0 / abs(rate)))
    grown, ahead = with_trend(past, future, np.random.default_rng(0), max_rate=0.12, min_damping=0.8)
    steps = np.diff(np.log(np.concatenate([grown, ahead])))
    np.testing.assert_allclose(steps[: len(grown) - 1], rate)  # the same draw: the context keeps its full rate
    phi = steps[len(grown)] / steps[len(grown) - 1]
    assert 0.8 <= phi < 1.0
    np.testing.assert_allclose(
        steps[len(grown) - 1 :], rate * phi ** np.arange(1, len(ahead) + 1)
    )  # damped in the horizon
    ramp, more = with_trend(np.linspace(-1.0, 1.0, 50), np.ones(10), np.random.default_rng(1), max_rate=0.12)
    steps = (
        np.diff(np.concatenate([ramp, more]))
        - np.diff(np.concatenate([np.linspace(-1.0, 1.0, 50), np.ones(10)]))[: len(ramp) + len(more) - 1]
    )
    np.testing.assert_allclose(steps, steps[0])  # one added slope throughout
    assert steps[0] != 0
    crops = [with_trend(past, future, np.random.default_rng(s), 0.12) for s in range(400)]
    assert 0.7 < np.mean([a[0] > p[-1] for p, a in crops]) < 0.9  # four in five grow

    def end_over_scale(augmentation):  # how far above its mean |y| a context ends, on average
        cfg = TrainConfig(
            out_dir="unused",
            context_length=64,
            prediction_length=8,
            batch_size=64,
            n_tokens=512,
            trend_augmentation=augmentation,
        )
        sampler = CropSampler(cfg, [np.ones(400) + 0.01 * np.random.default_rng(2).standard_normal(400)], [])
        tokens, mask, _ = sampler.batch()
        values, valid = tokens[:, :-1].float(), mask[:, :-1].float()  # the context's last token is EOS
        return (values[:, -1] - (values * valid).sum(1) / valid.sum(1)).abs().mean().item()

    assert end_over_scale(1.0) > end_over_scale(0.0) + 10  # trended contexts end further from their mean, in bins


def test_a_run_resumes_under_another_spelling_of_its_folder_and_from_an_older_record(tmp_path, monkeypatch):
    pytest.importorskip("statsmodels")
    cfg = TrainConfig.from_file(CONFIG, out_dir=str(tmp_path / "run"), steps=2)
    train(cfg, progress=False)
    record = tmp_path / "run" / "train_config.json"
    older = json.loads(record.read_text())
    del older["family"]  # written before the field existed: its default
    record.write_text(json.dumps(older))
    monkeypatch.chdir(tmp_path)
    for spelling in ("run/", "./run"):
        again = TrainConfig.from_file(CONFIG, out_dir=spelling, steps=3)
        train(again, progress=False)
    assert len(json.loads((tmp_path / "run" / "last" / "log.json").read_text())) == 3
