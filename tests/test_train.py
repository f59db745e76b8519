"""Pretraining: a tiny configuration trains for a few steps, the loss falls, and a run resumes."""

import json
from pathlib import Path

import pytest
import torch

from leapcast.train.pretrain import TrainConfig, loss_on, train

CONFIG = Path(__file__).parents[1] / "leapcast" / "train" / "configs" / "tiny-smoke.json"


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

    samples = Forecaster.from_pretrained(last).predict(torch.arange(40.0), 5, num_samples=3)
    assert samples.shape == (1, 3, 5) and torch.isfinite(samples).all()
    # resuming continues the step count instead of starting over
    cfg_more = TrainConfig.from_file(CONFIG, out_dir=str(tmp_path / "run"), steps=70)
    train(cfg_more, progress=False)
    assert len(json.loads((last / "log.json").read_text())) == 70


def test_held_out_data_is_refused():
    with pytest.raises(ValueError, match="held-out"):
        TrainConfig(out_dir="x", datasets=("m3-monthly",))


def test_loss_ignores_missing_labels():
    from leapcast.models.presets import random_chronos_t5
    from leapcast.models.t5 import T5Config

    net = random_chronos_t5(T5Config(vocab_size=64, d_model=16, d_kv=4, d_ff=32, num_layers=1, num_decoder_layers=1, num_heads=4)).net
    tokens, mask = torch.randint(2, 64, (2, 10)), torch.ones(2, 10, dtype=torch.bool)
    labels = torch.randint(2, 64, (2, 5))
    masked = labels.clone()
    masked[0, 2:] = -100
    assert not torch.isclose(loss_on(net, tokens, mask, labels), loss_on(net, tokens, mask, masked))
    assert torch.isfinite(loss_on(net, tokens, mask, masked))
