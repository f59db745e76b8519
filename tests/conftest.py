import os
import warnings
from pathlib import Path

import pytest
import torch

from leapcast.models.chronos_tokenizer import ChronosTokenizerConfig
from leapcast.models.presets import random_chronos_t5, save_chronos_t5
from leapcast.models.t5 import T5Config

# Nothing downloads in tests: model hub ids resolve from the local cache only (tests/test_hub.py builds one)
os.environ["HF_HUB_OFFLINE"] = "1"

FIXTURES = (
    Path(__file__).parent / "fixtures"
)  # files the tests read: pinned outputs, recorded configs, the smoke config


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "oracle: compares leapcast with a reference implementation (chronos-forecasting, "
        "toto-ts, transformers, statsmodels, statsforecast, utilsforecast); under CI=true a skip fails",
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under CI (CI=true, where .ci/run installs every reference) an oracle test that skips fails, naming itself:
    a missing extra must not quietly turn the key correctness tests into skips. Elsewhere a skip stays a skip."""
    outcome = yield
    report = outcome.get_result()
    if (
        report.skipped
        and item.get_closest_marker("oracle")
        and os.environ.get("CI", "").lower() in ("1", "true", "yes")
    ):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = (
            f"oracle test {item.nodeid} skipped under CI ({reason}); install the references as .ci/run does "
            "(pip install -e '.[test,data]' and toto-ts with --no-deps)"
        )


def make_checkpoint(
    folder: Path,
    *,
    vocab=4096,
    d_model=32,
    d_kv=8,
    d_ff=64,
    layers=1,
    heads=4,
    ff="relu",
    context_length=64,
    prediction_length=8,
    seed=0,
    decoder_layers=None,
    buckets=32,
) -> Path:
    """A tiny random-weight Chronos-T5 checkpoint in the official folder layout."""
    cfg = T5Config(
        vocab_size=vocab,
        d_model=d_model,
        d_kv=d_kv,
        d_ff=d_ff,
        num_layers=layers,
        num_decoder_layers=decoder_layers or layers,
        num_heads=heads,
        feed_forward_proj=ff,
        relative_attention_num_buckets=buckets,
    )
    chronos = ChronosTokenizerConfig(n_tokens=vocab, context_length=context_length, prediction_length=prediction_length)
    return save_chronos_t5(random_chronos_t5(cfg, chronos, seed=seed), folder)


def official_pipeline(folder: Path, dtype=torch.float32):
    """chronos-forecasting's ChronosPipeline on the same folder (the test oracle)."""
    chronos = pytest.importorskip("chronos")
    import transformers

    transformers.logging.set_verbosity_error()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return chronos.ChronosPipeline.from_pretrained(str(folder), dtype=dtype)
