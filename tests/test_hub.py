"""Models by hub id, from a hand-built huggingface_hub cache, offline: nothing downloads here."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import make_checkpoint
from typer.testing import CliRunner

from leapcast.cli import app
from leapcast.forecaster import Forecaster
from leapcast.hub import HubId, parse_hub_id
from leapcast.registry import resolve

COMMIT = "0123456789abcdef0123456789abcdef01234567"
OLDER = "89abcdef0123456789abcdef0123456789abcdef"


def cache_model(cache: Path, repo: str, source: Path, commit: str = COMMIT, ref: str | None = "main") -> Path:
    """Lay ``source``'s files out as huggingface_hub caches a download: models--owner--name/snapshots/<commit>/...,
    refs/<ref> holding the commit."""
    root = cache / ("models--" + repo.replace("/", "--"))
    snapshot = root / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for file in source.iterdir():
        shutil.copy(file, snapshot / file.name)
    if ref is not None:
        (root / "refs").mkdir(exist_ok=True)
        (root / "refs" / ref).write_text(commit)
    return snapshot


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An offline hub cache holding owner/tiny-chronos at main (seed 0) and at an older commit (seed 1)."""
    cache = tmp_path / "hub"
    cache_model(cache, "owner/tiny-chronos", make_checkpoint(tmp_path / "w0", seed=0))
    cache_model(cache, "owner/tiny-chronos", make_checkpoint(tmp_path / "w1", seed=1), commit=OLDER, ref=None)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def test_hub_ids_are_told_from_paths():
    assert parse_hub_id("amazon/chronos-t5-small") == HubId("amazon/chronos-t5-small")
    assert parse_hub_id("amazon/chronos-t5-small@v1.0") == HubId("amazon/chronos-t5-small", "v1.0")
    assert parse_hub_id("amazon/chronos-t5-small@refs/pr/3") == HubId("amazon/chronos-t5-small", "refs/pr/3")
    for path in ("./amazon/x", "/abs/x", "~/x", "a/b/c", "house-target", "a/", "/x"):
        assert parse_hub_id(path) is None, path


def test_a_cached_hub_model_loads_offline_by_id_and_revision(hub_cache, tmp_path):
    folder = resolve("owner/tiny-chronos")
    assert folder == hub_cache / "models--owner--tiny-chronos" / "snapshots" / COMMIT
    assert resolve(f"owner/tiny-chronos@{OLDER}").name == OLDER
    history = np.sin(np.arange(40.0)) + 5
    fc = Forecaster.from_pretrained("owner/tiny-chronos")
    assert fc.name == "tiny-chronos"  # the model's name, not its snapshot's commit
    same = Forecaster.from_pretrained(make_checkpoint(tmp_path / "again", seed=0))
    older = Forecaster.from_pretrained(f"owner/tiny-chronos@{OLDER}")
    out = fc.predict(history, 6, num_samples=4, seed=0)
    assert np.array_equal(out, same.predict(history, 6, num_samples=4, seed=0))
    assert not np.array_equal(out, older.predict(history, 6, num_samples=4, seed=0))  # seed-1 weights


def test_offline_and_not_cached_is_named(hub_cache):
    with pytest.raises(FileNotFoundError) as err:
        Forecaster.from_pretrained("amazon/chronos-t5-small")
    message = str(err.value)
    assert "`model` 'amazon/chronos-t5-small' is a model hub id that is not in the local model cache" in message
    assert (
        str(hub_cache) in message and "HF_HUB_OFFLINE" in message and "hf download amazon/chronos-t5-small" in message
    )
    with pytest.raises(FileNotFoundError, match="`draft` 'amazon/chronos-t5-tiny@v2' is a model hub id"):
        Forecaster.from_pretrained("owner/tiny-chronos", draft="amazon/chronos-t5-tiny@v2")


@pytest.mark.parametrize("revision", [".", "..", "../../../outside/ref", "v1//x"])
def test_a_revision_with_dot_parts_is_refused(hub_cache, revision):
    """Offline, huggingface_hub reads refs/<revision> under the cache: '..' would leave it."""
    with pytest.raises(FileNotFoundError, match=r"has an empty, '\.' or '\.\.' part"):
        Forecaster.from_pretrained(f"owner/tiny-chronos@{revision}")


def test_a_hub_model_with_only_pickle_weights_is_refused(hub_cache, tmp_path):
    source = tmp_path / "pickled"
    source.mkdir()
    (source / "config.json").write_text(json.dumps({"chronos_config": {}}))
    (source / "pytorch_model.bin").write_bytes(b"not loaded")
    cache_model(hub_cache, "owner/pickled", source)
    with pytest.raises(FileNotFoundError, match=r"'owner/pickled' has no \*\.safetensors weights.*pickle is refused"):
        resolve("owner/pickled")


def test_remote_code_in_a_hub_model_is_refused(hub_cache, tmp_path):
    from leapcast.models.loading import CheckpointError

    source = make_checkpoint(tmp_path / "remote")
    config = json.loads((source / "config.json").read_text())
    (source / "config.json").write_text(json.dumps({**config, "auto_map": {"AutoModel": "modeling.Model"}}))
    cache_model(hub_cache, "owner/remote-code", source)
    with pytest.raises(CheckpointError, match="asks for remote code"):
        Forecaster.from_pretrained("owner/remote-code")


def test_a_local_folder_wins_over_a_hub_id_of_the_same_spelling(hub_cache, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_checkpoint(tmp_path / "owner" / "tiny-chronos", seed=3)
    assert resolve("owner/tiny-chronos") == Path("owner/tiny-chronos")


def test_cli_model_and_draft_by_hub_id(hub_cache, tmp_path):
    src = tmp_path / "m.csv"
    ids = np.repeat(["a", "b"], 30)
    ds = np.tile(np.arange(30), 2)
    y = np.r_[np.sin(np.arange(30.0)) + 3, np.cos(np.arange(30.0)) + 3]
    import pandas as pd

    pd.DataFrame({"unique_id": ids, "ds": ds, "y": y}).to_csv(src, index=False)
    runner = CliRunner()
    common = ["forecast", "--input", str(src), "--h", "4", "--num-samples", "4", "--seed", "0"]
    out = runner.invoke(app, [*common, "--model", "owner/tiny-chronos", "--draft", f"owner/tiny-chronos@{OLDER}"])
    assert out.exit_code == 0, out.output
    assert out.stdout.splitlines()[0].startswith("unique_id,ds,tiny-chronos")
    refused = runner.invoke(app, [*common, "--model", "amazon/chronos-t5-small"])
    assert refused.exit_code == 2
    assert "`--model` 'amazon/chronos-t5-small' is a model hub id that is not in the local model cache" in " ".join(
        refused.output.split()
    )
    info = runner.invoke(app, ["info", "owner/tiny-chronos"])
    assert info.exit_code == 0 and COMMIT in " ".join(info.output.split()).replace(" ", "")
