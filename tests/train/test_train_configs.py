"""Staged training configs: each stage, resolved through `extends`, is the config the bundled models were trained with.

The oracle, tests/fixtures/bundled_train_configs.json, holds the flat config files
the bundled house-target and house-draft were trained from (as of commit
0c6ecd3, before `extends`), keyed by the file that replaced each. Run folders
were renamed with the files (`runs/house-target-stage0` is now
`runs/target-0-base`); every other field must match exactly.
"""

import json
import re
from dataclasses import asdict
from pathlib import Path

import pytest
from conftest import FIXTURES

from leapcast.registry import BUNDLED_DIR
from leapcast.train.config import DistillConfig, TotoTrainConfig, TrainConfig, pipeline_options

ROOT = Path(__file__).parents[2]
CONFIGS = ROOT / "leapcast" / "train" / "configs"
EXPERIMENTS = ROOT / "benchmarks" / "experiments"
RECORDED = json.loads((FIXTURES / "bundled_train_configs.json").read_text())
RUN_RENAMES = {"runs/" + Path(entry["was"]).stem: "runs/" + Path(name).stem for name, entry in RECORDED.items()}
DRAFT_TARGET = {
    "draft-1-base": "target-2-stacked",
    "draft-2-fine": "target-3-fine",
    "draft-3-season": "target-4-season",
    "draft-4-adjusted": "target-5-adjusted",
    "draft-5-trend": "target-6-trend",
}  # the target each draft stage distilled


def config_path(name: str) -> Path:
    return CONFIGS / name if (CONFIGS / name).is_file() else EXPERIMENTS / name


def renamed(value):
    for old, new in RUN_RENAMES.items():
        if isinstance(value, str) and (value == old or value.startswith(old + "/")):
            return new + value[len(old) :]
    return value


def load(path: Path, **overrides) -> TrainConfig | DistillConfig:
    if path.name.startswith("draft-"):
        return DistillConfig.from_file(
            path, **{"target": "runs/target/last", "out_dir": "runs/" + path.stem, **overrides}
        )
    return TrainConfig.from_file(path, **overrides)


def test_the_configs_folder_holds_the_recorded_stages_and_nothing_else():
    """Besides the patch-model stages (their own chain, tested below)."""
    assert sorted(p.name for p in CONFIGS.glob("*.json") if not p.name.startswith("patch-")) == sorted(
        n for n in RECORDED if not (EXPERIMENTS / n).is_file()
    )
    assert all(config_path(name).is_file() for name in RECORDED)


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_every_stage_resolves_to_the_config_it_was_trained_with(name):
    recorded = {key: renamed(value) for key, value in RECORDED[name]["config"].items()}
    got = asdict(load(config_path(name)))
    if name.startswith("draft-"):
        want = asdict(DistillConfig(target="runs/target/last", out_dir="runs/" + Path(name).stem, **recorded))
    else:
        want = asdict(TrainConfig(**recorded))
    assert list(got) == list(want)
    for field in want:
        assert got[field] == want[field], f"{name}: `{field}` resolves to {got[field]!r}, trained with {want[field]!r}"


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_a_stage_lists_only_what_it_changes(name):
    raw = json.loads(config_path(name).read_text())
    if "extends" not in raw:
        return
    parent = load(config_path(name).parent / raw.pop("extends"))
    same = [key for key, value in raw.items() if getattr(parent, key) == (tuple(value) if key == "datasets" else value)]
    assert not same, f"{name} repeats its parent's {same}"


def test_each_stage_starts_from_the_one_before():
    targets = sorted(n for n in RECORDED if re.fullmatch(r"target-\d-[a-z]+\.json", n) and (CONFIGS / n).is_file())
    drafts = sorted(n for n in RECORDED if n.startswith("draft-"))
    assert [n[7] for n in targets] == [str(i) for i in range(7)] and [n[6] for n in drafts] == [
        str(i) for i in range(1, 6)
    ]
    for chain in (targets, drafts):
        first = load(CONFIGS / chain[0])
        assert first.init_from is None
        for before, after in zip(chain, chain[1:]):
            assert load(CONFIGS / after).init_from == f"runs/{Path(before).stem}/last", after


def commands(text: str) -> list[tuple[str, dict[str, str]]]:
    """(config path, options) of each `leapcast train` / `leapcast distill` line of a markdown file."""
    found = []
    for line in text.splitlines():
        words = line.split("#")[0].split()
        if words[:2] == ["leapcast", "train"] and Path(words[2]).name.startswith("patch-"):
            continue  # the patch models' stages: test_the_patch_stages_chain_and_are_documented_in_order
        if words[:2] == ["leapcast", "train"]:
            found.append((words[2], {}))
        elif words[:2] == ["leapcast", "distill"]:
            options = dict(zip(words[2::2], words[3::2]))
            if Path(options["--draft-config"]).name.startswith("patch-"):
                continue
            found.append((options.pop("--draft-config"), options))
    return found


@pytest.mark.parametrize(
    "doc",
    [
        "docs/training.md",
        "leapcast/checkpoints/house-target/MODEL_CARD.md",
        "leapcast/checkpoints/house-draft/MODEL_CARD.md",
    ],
)
def test_the_documented_commands_train_every_stage_in_order(doc):
    """Each command names a stage config that resolves to its recorded config; a draft distils from the target it was
    trained against, after that target's command, into the folder the next draft stage starts from."""
    trained = []
    listed = []
    for config, options in commands((ROOT / doc).read_text()):
        path = ROOT / config
        name = path.name
        assert name in RECORDED and config_path(name) == path, f"{doc}: {config} is not a recorded stage config"
        listed.append(name)
        if options:
            assert options == {"--target": f"runs/{DRAFT_TARGET[path.stem]}/last", "--out-dir": f"runs/{path.stem}"}, (
                f"{doc}: {config}"
            )
            assert not trained or DRAFT_TARGET[path.stem] + ".json" in trained, (
                f"{doc}: {config} runs before its target is trained"
            )
            cfg = load(path, target=options["--target"], out_dir=options["--out-dir"])
        else:
            trained.append(name)
            cfg = load(path)
            assert cfg.out_dir == f"runs/{path.stem}", f"{doc}: {config} writes to {cfg.out_dir}"
        recorded = {key: renamed(value) for key, value in RECORDED[name]["config"].items()}
        assert {key: getattr(cfg, key) for key in recorded} == {
            k: tuple(v) if k == "datasets" else v for k, v in recorded.items()
        }
    stages = sorted(n for n in RECORDED if (CONFIGS / n).is_file())
    kind = {"house-target": "target-", "house-draft": "draft-"}.get(Path(doc).parent.name, "")
    assert sorted(n for n in listed if n.startswith(kind) and n in stages) == [n for n in stages if n.startswith(kind)]
    assert len(listed) == len(set(listed)), f"{doc} trains a stage twice"


@pytest.mark.parametrize("model", ["house-target", "house-draft"])
def test_the_model_cards_tables_match_the_stage_configs(model):
    """Steps, batch and peak learning rate of each stage row of the bundled model's card."""
    card = BUNDLED_DIR / model / "MODEL_CARD.md"  # the repository ships both models: a missing card fails
    rows = [line.split("|")[1:-1] for line in card.read_text().splitlines() if re.match(r"\| \d \| \S+\.json \|", line)]
    assert len(rows) == (7 if model == "house-target" else 5)
    for row in rows:
        cells = [c.strip() for c in row]
        cfg = load(CONFIGS / cells[1])
        steps, batch, lr = cells[3:6] if model == "house-target" else cells[4:7]
        assert (cfg.steps, cfg.batch_size, cfg.lr) == (int(steps), int(batch), float(lr)), cells[1]


def test_the_last_stages_are_the_bundled_checkpoints():
    """The last target and draft stages have the shape, bins and pipeline options the bundled config.json files record."""
    target = load(CONFIGS / "target-6-trend.json")
    for name, cfg in (("house-target", target), ("house-draft", load(CONFIGS / "draft-5-trend.json"))):
        recorded = json.loads((BUNDLED_DIR / name / "config.json").read_text())
        shape = {
            key: recorded[key] for key in ("d_model", "d_kv", "d_ff", "num_layers", "num_decoder_layers", "num_heads")
        }
        assert shape == {
            **{key: getattr(cfg, key) for key in ("d_model", "d_kv", "d_ff", "num_layers", "num_heads")},
            "num_decoder_layers": cfg.num_layers,
        }, name
        chronos = recorded["chronos_config"]  # a draft takes its target's tokenizer whole
        assert (
            recorded["vocab_size"],
            chronos["n_tokens"],
            chronos["tokenizer_kwargs"],
            chronos["context_length"],
            chronos["prediction_length"],
        ) == (
            target.n_tokens,
            target.n_tokens,
            {"low_limit": target.low_limit, "high_limit": target.high_limit},
            target.context_length,
            target.prediction_length,
        ), name
        assert recorded.get("leapcast", {}) == pipeline_options(cfg), name
    assert (
        json.loads((BUNDLED_DIR / "house-target" / "config.json").read_text())["relative_attention_num_buckets"]
        == target.relative_attention_num_buckets
    )


def test_the_patch_stages_chain_and_are_documented_in_order():
    """Each patch-target stage resolves as a Toto config writing to runs/<its name> and starts from an earlier
    stage's last or kept checkpoint (stage 0 from random weights; stage 3 from stage 1, stage 2 being a dead end;
    stage 5 from stage 4's step 1200, the one bundled); docs/training.md trains
    them in that order."""
    stages = sorted(p for p in CONFIGS.glob("patch-target-*.json"))
    assert [p.name[13] for p in stages] == [str(i) for i in range(len(stages))] and stages
    for i, path in enumerate(stages):
        cfg = TotoTrainConfig.from_file(path)
        assert cfg.out_dir == f"runs/{path.stem}"
        if i == 0:
            assert cfg.init_from is None
        else:
            start = Path(str(cfg.init_from))  # an earlier stage's last checkpoint, or one it kept (checkpoint-N)
            assert start.parent in {Path("runs") / p.stem for p in stages[:i]}, path.name
            assert start.name == "last" or re.fullmatch(r"checkpoint-\d+", start.name), path.name
    text = (ROOT / "docs" / "training.md").read_text()
    documented = [w[2] for w in (line.split() for line in text.splitlines()) if w[:2] == ["leapcast", "train"]]
    assert [d for d in documented if "patch-target" in d] == [str(p.relative_to(ROOT)) for p in stages]


# --- refusals: each names the file (and the key) responsible


def write(folder: Path, name: str, content: dict) -> Path:
    path = folder / name
    path.write_text(json.dumps(content))
    return path


def test_a_cycle_is_refused_naming_the_files(tmp_path):
    write(tmp_path, "a.json", {"extends": "b.json", "out_dir": "x"})
    write(tmp_path, "b.json", {"extends": "c", "steps": 3})
    write(tmp_path, "c.json", {"extends": "a.json"})
    with pytest.raises(
        ValueError, match=r"a\.json: `extends` makes a cycle \(a\.json -> b\.json -> c\.json -> a\.json\)"
    ):
        TrainConfig.from_file(tmp_path / "a.json")
    write(tmp_path, "self.json", {"extends": "self.json"})
    with pytest.raises(ValueError, match=r"self\.json: `extends` makes a cycle"):
        TrainConfig.from_file(tmp_path / "self.json")


def test_a_missing_parent_is_refused_naming_the_child(tmp_path):
    write(tmp_path, "child.json", {"extends": "nowhere.json", "out_dir": "x"})
    with pytest.raises(
        FileNotFoundError, match=r"child\.json: `extends` names 'nowhere\.json', but .*nowhere\.json does not exist"
    ):
        TrainConfig.from_file(tmp_path / "child.json")
    with pytest.raises(FileNotFoundError, match=r"config file .*absent\.json does not exist"):
        TrainConfig.from_file(tmp_path / "absent.json")


def test_an_unknown_key_is_refused_naming_the_file_and_the_key(tmp_path):
    write(tmp_path, "base.json", {"out_dir": "x", "extra": {}})
    write(tmp_path, "child.json", {"extends": "base.json", "steps": 3})
    with pytest.raises(ValueError, match=r"base\.json: unknown key `extra`; a config sets some of batch_size, "):
        TrainConfig.from_file(tmp_path / "child.json")
    with pytest.raises(
        ValueError, match=r"draft-1-base\.json: unknown key `on_policy`"
    ):  # a draft config read as a train config
        TrainConfig.from_file(CONFIGS / "draft-1-base.json", out_dir="x")
    write(tmp_path, "typo.json", {"extends": "base.json", "stepz": 3})
    with pytest.raises(ValueError, match=r"typo\.json: unknown key `stepz`; did you mean `steps`\?"):
        TrainConfig.from_file(tmp_path / "typo.json")


def test_a_bad_value_is_refused_naming_the_file_that_set_it(tmp_path):
    write(tmp_path, "base.json", {"out_dir": "x", "lr": 0})
    write(tmp_path, "child.json", {"extends": "base", "steps": 3})
    with pytest.raises(ValueError, match=r"base\.json: train config `lr` must be a finite number > 0, got 0"):
        TrainConfig.from_file(tmp_path / "child.json")
    write(tmp_path, "typed.json", {"extends": "base", "lr": 1e-3, "seasonal_adjustment": "yes"})
    with pytest.raises(
        ValueError, match=r"typed\.json: train config `seasonal_adjustment` must be true or false, got 'yes'"
    ):
        TrainConfig.from_file(tmp_path / "typed.json")
    for bad in ([], "", None, 3):
        write(tmp_path, "bad.json", {"extends": bad})
        with pytest.raises(ValueError, match=r"bad\.json: `extends` must name a config file"):
            TrainConfig.from_file(tmp_path / "bad.json")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ValueError, match=r"broken\.json: not valid JSON"):
        TrainConfig.from_file(tmp_path / "broken.json")
    with pytest.raises(
        ValueError, match=r"^train config `steps` must be >= 1, got 0$"
    ):  # the caller's value: no file to name
        TrainConfig.from_file(CONFIGS / "target-0-base.json", steps=0)


@pytest.mark.parametrize(
    "cls, required", [(TrainConfig, {"out_dir": "x"}), (DistillConfig, {"target": "t", "out_dir": "x"})]
)
@pytest.mark.parametrize(
    "field, value, message",
    [
        ("steps", 0, "must be >= 1, got 0"),
        ("batch_size", 2.5, "must be an integer, got 2.5"),
        ("num_heads", True, "must be an integer, got True"),
        ("lr", -1e-3, "must be a finite number > 0, got -0.001"),
        ("lr", float("inf"), "must be a finite number > 0, got inf"),
        ("warmup", 0, "must be >= 1, got 0"),
        ("kernel_synth", -1, "must be >= 0, got -1"),
        ("trend_augmentation", 1.5, "must be in [0, 1], got 1.5"),
        ("seasonal_adjustment", 1, "must be true or false, got 1"),
        ("datasets", ("nile", "m3-monthly"), "includes held-out evaluation data ['m3-monthly']"),
        ("datasets", "nile", "must be a list of data set names, got 'nile'"),
        ("init_from", 3, "must be a string or null, got 3"),
    ],
)
def test_train_and_distill_configs_share_one_validation(cls, required, field, value, message):
    kind = "train" if cls is TrainConfig else "distill"
    with pytest.raises(ValueError, match=re.escape(f"{kind} config `{field}` {message}")):
        cls(**required, **{field: value})


def test_field_specific_checks():
    with pytest.raises(ValueError, match=re.escape("distill config `on_policy` must be in [0, 1], got -0.5")):
        DistillConfig(target="t", out_dir="x", on_policy=-0.5)
    with pytest.raises(
        ValueError, match=re.escape("train config `embedding_init` must be 'fourier' or 'random', got 'zeros'")
    ):
        TrainConfig(out_dir="x", embedding_init="zeros")
    with pytest.raises(
        ValueError, match=re.escape("train config `low_limit` must be below `high_limit` (1.0), got 1.0")
    ):
        TrainConfig(out_dir="x", low_limit=1.0, high_limit=1.0)
    assert TrainConfig(out_dir="x", datasets=["nile"]).datasets == ("nile",)  # a JSON list becomes a tuple
    assert TrainConfig(out_dir="x", lr=1).lr == 1  # a JSON number without a point is a number


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"relative_attention_num_buckets": 1}, "`relative_attention_num_buckets` must be >= 2"),
        ({"n_tokens": 3}, "`n_tokens` must be >= 8"),
        ({"low_limit": -1e308, "high_limit": float("inf")}, "`low_limit` must be a finite number within +-1e6"),
        ({"min_context": 100, "context_length": 40}, "`min_context` must be at most `context_length` (40), got 100"),
        ({"stack": 3}, "`stack` stacks the layers of `init_from`, which is not set"),
        ({"datasets": (), "kernel_synth": 0, "mixup": 0}, "`datasets` is empty and no synthetic series"),
        ({"label_sigma": 1e9}, "`label_sigma` must be in [0, 1000]"),
        ({"family": "toto"}, "`family` must be 'chronos-t5' for this config"),
    ],
)
def test_values_that_would_fail_deep_in_a_run_are_refused_up_front(fields, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        TrainConfig(out_dir="x", **fields)
    assert TrainConfig(out_dir="x", family="chronos-t5").family == "chronos-t5"  # written out, as family_of reads it
