"""The bundled patch pair (Toto architecture): shipped, small, documented, seasonal without adjustment, and a draft
that proposes for its target."""

import numpy as np
import pandas as pd
import torch

from leapcast import Forecaster, SpecConfig
from leapcast.models.loading import load_model
from leapcast.models.toto import Toto
from leapcast.registry import BUNDLED_DIR, bundled_models

PAIR = ("house-patch-target", "house-patch-draft")


def test_the_patch_pair_ships_with_cards_and_fits_the_size_budget():
    assert set(PAIR) <= set(bundled_models())
    total = 0
    for name in PAIR:
        folder = BUNDLED_DIR / name
        assert (folder / "MODEL_CARD.md").is_file() and (folder / "model.safetensors").is_file()
        assert not list(folder.glob("*.bin")) and not list(folder.glob("*.pt"))
        card = (folder / "MODEL_CARD.md").read_text().lower()
        for word in ("## data", "## steps and wall time", "## evaluation", "leapcast "):
            assert word in card, (name, word)
        total += sum(f.stat().st_size for f in folder.iterdir())
    assert total < 40 * 2**20


def test_the_patch_draft_reads_its_targets_patches_and_is_far_smaller():
    target, draft = load_model(BUNDLED_DIR / PAIR[0]), load_model(BUNDLED_DIR / PAIR[1])
    assert isinstance(target, Toto) and isinstance(draft, Toto)
    target.check_draft(draft)  # raises where the patches, scaler or context differ
    assert draft.num_parameters() < 0.15 * target.num_parameters()


def test_house_patch_target_keeps_a_monthly_season_without_adjustment():
    """No season length, no adjustment: the season comes back from the context alone."""
    rng = np.random.default_rng(0)
    pattern = np.array([0.6, 0.7, 0.9, 1.0, 1.2, 1.5, 1.6, 1.4, 1.1, 0.9, 0.7, 0.5])
    y = 100 * pattern[np.arange(96) % 12] * np.exp(rng.normal(0, 0.03, 96))
    fc = Forecaster.from_pretrained(PAIR[0])
    median = fc.predict_quantiles(torch.tensor(y, dtype=torch.float32), 12, quantile_levels=[0.5], seed=0)[0]
    median = median[0, :, 0].numpy()
    assert np.corrcoef(median, pattern)[0, 1] > 0.95
    assert np.abs(median / (100 * pattern) - 1).max() < 0.2


def test_house_patch_target_reads_where_the_series_is_now():
    fc = Forecaster.from_pretrained(PAIR[0])
    up, down = torch.linspace(10, 100, 60), torch.linspace(100, 10, 60)
    median = fc.predict_quantiles([up, down], 4, quantile_levels=[0.5], seed=0)[0][:, :, 0]
    assert (median[0] > 80).all() and (median[1] < 30).all(), median


def test_house_patch_draft_speculation_keeps_mean_forecasts():
    df = pd.read_csv("leapcast/data/examples/monthly.csv")
    series = [torch.tensor(g["y"].to_numpy(), dtype=torch.float32) for _, g in df.groupby("unique_id")]
    plain = Forecaster.from_pretrained(PAIR[0]).predict(series, 24, top_k=1, num_samples=2)
    fc = Forecaster.from_pretrained(PAIR[0], draft=PAIR[1], spec=SpecConfig(k=2, adaptive=False))
    # the same mean path; verifying k + 1 positions in one pass sums in another order (float32 rounding)
    torch.testing.assert_close(fc.predict(series, 24, top_k=1, num_samples=2), plain, rtol=1e-5, atol=1e-5)


def test_missing_values_inside_a_series_read_as_their_patch_mean_not_as_zero():
    """A level-1000 series whose last three values are missing: fed as 0, the model saw a crash and its median sat
    at the clip floor (965); read as the patch's mean, the forecast stays at the level. A gap in the middle (an
    earlier patch) moves the forecast little either way."""
    fc = Forecaster.from_pretrained("house-patch-target")
    y = 1000 + 10 * np.sin(np.arange(60) / 3)

    def median(values):
        return fc.predict(values, 8, num_samples=50, seed=0).median(dim=1).values[0]

    trailing = median(np.r_[y, [np.nan] * 3])
    assert (trailing - 1000).abs().max() < 15, trailing
    clean, gap = median(y), median(np.r_[y[:30], [np.nan] * 5, y[35:]])
    assert (gap - clean).abs().max() < 5, (gap, clean)


def test_histories_shorter_than_min_context_forecast_with_a_warning_naming_one():
    import warnings

    import pytest

    fc = Forecaster.from_pretrained("house-patch-target")
    assert fc.model.options.min_context == 6  # benchmarks/short_histories.py: from 6 values on, few draws clip
    df = pd.DataFrame(
        {"unique_id": ["long"] * 8 + ["short"] * 3, "ds": list(range(8)) + list(range(3)), "y": np.arange(11.0) + 50}
    )
    with pytest.warns(
        UserWarning, match=r"1 series have fewer than 6 observed values of history.*\(e.g. series 'short'\)"
    ):
        out = fc.forecast(df, 4, seed=0, num_samples=8)
    assert len(out) == 8  # forecast all the same
    with pytest.warns(UserWarning, match=r"\(e.g. series 1\)") as caught:
        fc.predict([np.arange(8.0), np.arange(5.0)], 4, seed=0, num_samples=8)
    assert caught[0].filename == __file__  # the line that called predict, not leapcast's
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fc.predict([np.arange(6.0)], 4, seed=0, num_samples=8)


def test_what_the_patch_model_cannot_see_is_warned_about():
    """It reads values as given (as the reference does): a spread under its scaler's floor, one below float32's
    resolution at the series' level, and missing values at the end (read as a flat stretch) each warn, naming a
    series; observed values are counted for the short-history warning, for [N, V, T] items too."""
    import pytest

    fc = Forecaster.from_pretrained("house-patch-target")
    t = np.arange(120.0)
    y = 50 + 10 * np.sin(t / 5) + np.random.default_rng(0).normal(size=120)
    for x, words in [
        (y * 1e-8, r"vary by less than 0.1 .*series 0"),
        (1e8 + 10 * np.sin(t / 2), r"less than float32 resolves .*series 0"),
        (np.r_[y[:100], [np.nan] * 20], r"end in 4 or more missing values \(e.g. series 0: 20\)"),
        (np.where(t % 30 == 29, y, np.nan), r"fewer than 6 observed values"),  # 4 values, the last observed
    ]:
        with pytest.warns(UserWarning, match=words):
            fc.predict(x, 4, seed=0, num_samples=4)
    with pytest.warns(UserWarning, match=r"fewer than 6 observed values.*item 0, variate 0"):
        fc.predict(np.stack([[y[-3:], y[-3:]]]), 4, seed=0, num_samples=4)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # ordinary, constant and slightly gappy series: nothing to say
        fc.predict([y, np.full(50, 3.0), np.r_[y[:100], [np.nan] * 3]], 4, seed=0, num_samples=4)


def test_a_batch_whose_caches_would_not_fit_decodes_fewer_series_at_a_time(monkeypatch):
    """Toto's caches grow with the horizon; where a batch's would take more than half the free memory, fewer
    series decode at a time (a warning says so), and each series' forecast is what that batch size gives."""
    import pytest

    import leapcast.forecaster as forecaster

    fc = Forecaster.from_pretrained("house-patch-target")
    series = [np.sin(np.arange(60.0) / 3) * 10 + 50 + i for i in range(3)]
    one_at_a_time = fc.predict(series, 40, seed=0, num_samples=4, batch_size=1)
    per_series = fc.model.row_cache_bytes(10 + fc.spec.k + 1) * 4  # h 40 = 10 patches, 4 paths
    monkeypatch.setattr(forecaster, "available_memory", lambda device: 2.5 * per_series)  # half of it: one series
    with pytest.warns(UserWarning, match=r"decoding 1 series at a time instead of 3") as caught:
        got = fc.predict(series, 40, seed=0, num_samples=4)
    assert caught[0].filename == __file__  # the caller's line
    assert torch.equal(got, one_at_a_time)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one series: nothing to split, nothing to say
        fc.predict(series[:1], 40, seed=0, num_samples=4)
