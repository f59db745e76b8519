"""Checkpoint folders: what is refused (pickle, remote code, wrong layouts) and exact save -> load round trips."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from leapcast import registry
from leapcast.forecaster import Forecaster
from leapcast.models.chronos_tokenizer import ChronosTokenizerConfig
from leapcast.models.loading import CheckpointError, load_model, read_checkpoint
from leapcast.models.presets import random_chronos_t5, save_chronos_t5, to_hf_t5
from leapcast.models.t5 import T5Config
from leapcast.registry import resolve

CHRONOS = ChronosTokenizerConfig(prediction_length=8, context_length=64)


def tiny(ff: str = "relu", seed: int = 0, **overrides):
    cfg = T5Config(
        vocab_size=4096,
        d_model=32,
        d_kv=8,
        d_ff=64,
        num_layers=2,
        num_decoder_layers=1,
        num_heads=4,
        feed_forward_proj=ff,
        **overrides,
    )
    return random_chronos_t5(cfg, CHRONOS, seed=seed)


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    return save_chronos_t5(tiny(), tmp_path_factory.mktemp("ckpt") / "good")


@pytest.fixture
def copy(good, tmp_path):
    """A writable copy of the good checkpoint."""
    return shutil.copytree(good, tmp_path / "copy")


def edit_config(folder, **changes):
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    for key in [k for k, v in changes.items() if v is None]:
        del config[key]
    (folder / "config.json").write_text(json.dumps(config))


def edit_weights(folder, edit):
    weights = load_file(str(folder / "model.safetensors"))
    edit(weights)
    save_file(weights, str(folder / "model.safetensors"))


# --- refused ---------------------------------------------------------------------------------


def test_pickle_weights_are_refused_unread(copy, monkeypatch):
    (copy / "model.safetensors").unlink()
    (copy / "pytorch_model.bin").write_bytes(b"not a pickle: loading it would fail differently")
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load was called on a pickle"))
    with pytest.raises(CheckpointError, match=r"pickle.*pytorch_model\.bin|pytorch_model\.bin.*pickle"):
        load_model(copy)
    with pytest.raises(CheckpointError, match="pickle"):
        Forecaster.from_pretrained(copy)


def test_folder_without_weights(copy):
    (copy / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"has no \*\.safetensors weights"):
        load_model(copy)


def test_remote_code_is_refused(copy):
    edit_config(copy, auto_map={"AutoModel": "modeling_evil.EvilModel"})
    with pytest.raises(CheckpointError, match=r"remote code \(`auto_map`\)"):
        load_model(copy)


def test_missing_config(copy):
    (copy / "config.json").unlink()
    with pytest.raises(CheckpointError, match=r"has no config\.json"):
        read_checkpoint(copy)


def test_path_that_is_not_a_folder(tmp_path):
    with pytest.raises(CheckpointError, match=r"is not a folder"):
        load_model(tmp_path / "absent")
    (tmp_path / "file").write_text("x")
    with pytest.raises(CheckpointError, match=r"is not a folder"):
        load_model(tmp_path / "file")


def test_non_chronos_config(copy):
    edit_config(copy, chronos_config=None)
    with pytest.raises(
        CheckpointError,
        match=r"neither a Chronos-T5 checkpoint \(config.json with a chronos_config block.*nor a Toto one",
    ):
        load_model(copy)


def test_other_architecture(copy):
    edit_config(copy, architectures=["LlamaForCausalLM"])
    with pytest.raises(CheckpointError, match=r"architecture 'LlamaForCausalLM' is not supported"):
        load_model(copy)


def test_missing_weight(copy):
    name = "decoder.block.0.layer.1.EncDecAttention.k.weight"
    edit_weights(copy, lambda w: w.pop(name))
    with pytest.raises(CheckpointError, match=rf"lack '{name}'"):
        load_model(copy)


def test_extra_unknown_weight(copy):
    edit_weights(copy, lambda w: w.update({"encoder.block.0.adapter.weight": torch.zeros(2, 2)}))
    with pytest.raises(CheckpointError, match=r"does not use: \['encoder\.block\.0\.adapter\.weight'\]"):
        load_model(copy)


def test_layers_past_the_config_are_refused_not_dropped(copy):
    """config.json says 2 encoder layers; weights of a third would be dropped, and the forecasts with them."""
    edit_config(copy, num_layers=1)
    with pytest.raises(CheckpointError, match=r"does not use: \[.*encoder\.block\.1\..*1 encoder and 1 decoder"):
        load_model(copy)


def test_a_tokenizer_of_another_size_than_the_vocabulary_is_refused(copy):
    config = json.loads((copy / "config.json").read_text())
    edit_config(copy, chronos_config={**config["chronos_config"], "n_tokens": 1024})
    with pytest.raises(CheckpointError, match=r"n_tokens \(1024\) must equal vocab_size \(4096\)"):
        load_model(copy)


def test_a_boolean_written_as_text_is_refused(copy):
    edit_config(copy, tie_word_embeddings="false")  # bool("false") is True
    with pytest.raises(CheckpointError, match="`tie_word_embeddings` must be true or false, got 'false'"):
        load_model(copy)


def test_weights_of_the_wrong_shape(copy):
    edit_config(copy, d_ff=48)
    with pytest.raises(CheckpointError, match="do not match its config.json"):
        load_model(copy)


def test_gated_config_on_relu_weights(copy):
    edit_config(copy, feed_forward_proj="gated-gelu")
    with pytest.raises(CheckpointError, match=r"wi_0"):
        load_model(copy)


def test_unsupported_feed_forward(copy):
    edit_config(copy, feed_forward_proj="swiglu")
    with pytest.raises(ValueError, match=r"`feed_forward_proj` 'swiglu' is not supported"):
        load_model(copy)


# --- round trips -----------------------------------------------------------------------------


@pytest.mark.parametrize("ff", ["relu", "gated-gelu"])
def test_save_load_round_trip_is_exact(tmp_path, ff):
    model = tiny(ff, seed=3)
    loaded = load_model(save_chronos_t5(model, tmp_path / ff))
    assert loaded.net.cfg == model.net.cfg
    assert loaded.chronos == model.chronos
    before, after = to_hf_t5(model.net), to_hf_t5(loaded.net)
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    state = loaded.net.state_dict()
    assert all(torch.equal(v, state[k]) for k, v in model.net.state_dict().items())
    x = torch.randn(25).double()
    forecasts = [Forecaster(m).predict(x, 10, num_samples=3, seed=0) for m in (model, loaded)]
    assert torch.equal(*forecasts)


def test_untied_lm_head_round_trip(tmp_path):
    model = tiny(tie_word_embeddings=False)
    folder = save_chronos_t5(model, tmp_path / "untied")
    assert "lm_head.weight" in load_file(str(folder / "model.safetensors"))
    loaded = load_model(folder)
    assert torch.equal(loaded.net.state_dict()["lm_head.weight"], model.net.state_dict()["lm_head.weight"])


@pytest.mark.oracle
def test_transformers_reads_the_saved_layout(good):
    """The official reader loads our folder with no missing or unexpected weights."""
    transformers = pytest.importorskip("transformers")
    transformers.logging.set_verbosity_error()
    hf, info = transformers.T5ForConditionalGeneration.from_pretrained(good, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    ours = to_hf_t5(load_model(good).net)
    theirs = hf.state_dict()
    assert all(torch.equal(v, theirs[k]) for k, v in ours.items())


# --- names -----------------------------------------------------------------------------------


def test_resolve_unknown_name():
    with pytest.raises(FileNotFoundError, match=r"`model` 'chronos-t5-nonesuch' is neither a checkpoint folder"):
        resolve("chronos-t5-nonesuch")
    with pytest.raises(FileNotFoundError, match="chronos-t5-nonesuch"):
        Forecaster.from_pretrained("chronos-t5-nonesuch")


def test_resolve_folder_and_bundled_name(good, tmp_path, monkeypatch):
    assert resolve(good) == good
    assert resolve(str(good)) == good
    monkeypatch.setattr(registry, "BUNDLED_DIR", tmp_path)
    shutil.copytree(good, tmp_path / "chronos-t5-bundled")
    assert registry.bundled_models() == ["chronos-t5-bundled"]
    assert resolve("chronos-t5-bundled") == tmp_path / "chronos-t5-bundled"
    assert Forecaster.from_pretrained("chronos-t5-bundled").name == "chronos-t5-bundled"


def test_no_model_uses_the_bundled_default_or_says_what_to_do(tmp_path, monkeypatch):
    import leapcast.registry as registry

    monkeypatch.setattr(registry, "BUNDLED_DIR", tmp_path / "none")
    with pytest.raises(FileNotFoundError, match="bundles no 'house-patch-target'; pass a checkpoint folder"):
        registry.resolve(None)
    bundled = tmp_path / "bundled"
    for name in ("house-target", "house-patch-target"):
        (bundled / name).mkdir(parents=True)
        (bundled / name / "config.json").write_text("{}")
    monkeypatch.setattr(registry, "BUNDLED_DIR", bundled)
    assert registry.resolve(None) == bundled / "house-patch-target"
