"""The models shipped inside the package: loadable by name, documented, small, and trained."""

import json

import numpy as np
import pandas as pd
import torch
from typer.testing import CliRunner

from leapcast import Forecaster, SpecConfig
from leapcast.cli import app
from leapcast.models.loading import load_model
from leapcast.registry import BUNDLED_DIR, DEFAULT_MODEL, bundled_models

EXAMPLE = "leapcast/data/examples/monthly.csv"


def test_the_pair_ships_with_cards_and_fits_the_size_budget():
    assert {"house-target", "house-draft"} <= set(bundled_models()) and DEFAULT_MODEL == "house-patch-target"
    total = 0
    for name in ("house-target", "house-draft"):
        folder = BUNDLED_DIR / name
        assert (folder / "MODEL_CARD.md").is_file() and (folder / "model.safetensors").is_file()
        assert not list(folder.glob("*.bin")) and not list(folder.glob("*.pt"))
        total += sum(f.stat().st_size for f in folder.iterdir())
    assert total < 40 * 2**20


def test_the_draft_shares_the_tokenizer_and_costs_at_most_a_tenth_per_step():
    target, draft = load_model(BUNDLED_DIR / "house-target"), load_model(BUNDLED_DIR / "house-draft")
    assert target.chronos == draft.chronos

    def per_step(model):  # multiply-adds per decoding step: decoder layers (cross K/V once per series) and head
        cfg = model.net.cfg
        layers = (
            sum(p.numel() for p in model.net.dec_layers.parameters())
            - cfg.num_decoder_layers * 2 * cfg.d_model * cfg.num_heads * cfg.d_kv
        )
        return layers + model.net.embed.weight.numel()

    assert per_step(draft) <= per_step(target) / 10


def test_forecast_with_no_model_argument_uses_house_patch_target(tmp_path):
    out = tmp_path / "fcst.csv"
    result = CliRunner().invoke(
        app, ["forecast", "--input", EXAMPLE, "--h", "12", "--level", "80", "--output", str(out), "--seed", "0"]
    )
    assert result.exit_code == 0, result.output
    fcst = pd.read_csv(out)
    assert "house-patch-target" in fcst.columns and np.isfinite(fcst["house-patch-target"]).all()
    assert len(fcst) == 12 * pd.read_csv(EXAMPLE)["unique_id"].nunique()
    assert Forecaster.from_pretrained().name == "house-patch-target"


def test_forecast_with_the_bundled_draft_prints_and_writes_the_stats(tmp_path):
    base = ["forecast", "--model", "house-target", "--input", EXAMPLE, "--h", "12", "--seed", "0", "--top-k", "1"]
    plain = CliRunner().invoke(app, base + ["--output", str(tmp_path / "plain.csv")])
    stats = tmp_path / "stats.json"
    spec = CliRunner().invoke(
        app,
        base
        + [
            "--output",
            str(tmp_path / "spec.csv"),
            "--draft",
            "house-draft",
            "--k",
            "2",
            "--fixed-k",
            "--stats-json",
            str(stats),
        ],
    )
    assert plain.exit_code == 0 and spec.exit_code == 0, spec.output
    assert "accept" in spec.output  # the stats table
    written = json.loads(stats.read_text())
    assert written["k"] == 2 and written["drafts"] > 0 and 0 < written["acceptance_rate"] <= 1
    assert written["drafted_steps"] <= 2 * written["drafts"] and len(written["accepted_per_position"]) == 2
    pd.testing.assert_frame_equal(
        pd.read_csv(tmp_path / "plain.csv"), pd.read_csv(tmp_path / "spec.csv")
    )  # greedy: identical


def test_house_target_reads_where_the_series_is_now():
    """A trained model, not noise, and not the context's average: after a rising and a falling
    ramp with the same mean, it continues from each ramp's end (an untrained model gives both the same)."""
    fc = Forecaster.from_pretrained("house-target")
    up, down = torch.linspace(10, 100, 60), torch.linspace(100, 10, 60)
    median = fc.predict_quantiles([up, down], 4, quantile_levels=[0.5], seed=0)[0][:, :, 0]
    assert (median[0] > 80).all() and (median[1] < 30).all(), median


def test_house_draft_speculation_keeps_greedy_forecasts():
    df = pd.read_csv(EXAMPLE)
    series = [torch.tensor(g["y"].to_numpy(), dtype=torch.float32) for _, g in df.groupby("unique_id")]
    plain = Forecaster.from_pretrained("house-target").predict(series, 24, top_k=1, num_samples=2)
    fc = Forecaster.from_pretrained("house-target", draft="house-draft", spec=SpecConfig(k=4, adaptive=False))
    assert torch.equal(fc.predict(series, 24, top_k=1, num_samples=2), plain)
    # a distilled draft, not a random one: judged on sampled paths, which is what exact speculation
    # accepts (greedy argmax agreement over 1%-wide bins is far stricter: 0.20 for this pair)
    fc.predict(series, 24, num_samples=20, seed=0)
    assert fc.last_stats.acceptance_rate > 0.4


def test_model_cards_state_data_steps_time_and_scores():
    for name in ("house-target", "house-draft"):
        card = (BUNDLED_DIR / name / "MODEL_CARD.md").read_text()
        for word in ("## data", "## steps and wall time", "## evaluation", "leapcast "):
            assert word in card.lower(), (name, word)
    config = json.loads((BUNDLED_DIR / "house-target" / "config.json").read_text())
    assert "auto_map" not in config


def test_house_target_keeps_a_monthly_season_through_its_seasonal_adjustment():
    """Monthly dates -> season 12 -> adjusted history -> the season comes back in the forecast
    (without the adjustment the model's forecast keeps little of it: README, zero-shot section)."""
    rng = np.random.default_rng(0)
    pattern = np.array([0.6, 0.7, 0.9, 1.0, 1.2, 1.5, 1.6, 1.4, 1.1, 0.9, 0.7, 0.5])
    y = 100 * pattern[np.arange(96) % 12] * np.exp(rng.normal(0, 0.03, 96))
    df = pd.DataFrame({"unique_id": "a", "ds": pd.date_range("2010-01-01", periods=96, freq="MS"), "y": y})
    fc = Forecaster.from_pretrained("house-target")
    assert fc.seasonal_adjustment
    median = fc.forecast(df, 12, seed=0)["house-target"].to_numpy()
    assert np.corrcoef(median, pattern)[0, 1] > 0.95
    assert np.abs(median / (100 * pattern) - 1).max() < 0.15


def test_house_target_continues_a_steep_growth():
    """A context that ends five times above its mean level (10% a step for 52 steps): the
    forecast keeps growing from the last value (before trend augmentation, stage 5 gave
    0.93 and 1.06 times the last value at steps 1 and 6; README, "Training the house models")."""
    rng = np.random.default_rng(0)
    t = np.arange(52)
    series = [np.exp(0.1 * t + np.cumsum(rng.normal(0, 0.02, 52))) for _ in range(20)]
    samples = Forecaster.from_pretrained("house-target").predict(series, 6, num_samples=50, seed=0)
    ratio = (samples.median(dim=1).values / torch.tensor([y[-1] for y in series])[:, None].float()).mean(0)  # [6]
    assert ratio[0] > 1.0 and ratio[5] > 1.15
    assert (ratio.diff() > 0).all()
