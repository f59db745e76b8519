"""Compiled decoding steps (``compile=True``): the same logits as eager decoding, used where they apply, eager where
compiling fails, refused where there is nothing to compile."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from conftest import make_checkpoint
from torch._dynamo.exc import TorchDynamoException

import leapcast.models.chronos_t5 as chronos_t5
import leapcast.models.compiled as compiled
from leapcast import Forecaster, SpecConfig
from leapcast.models.loading import load_model

LIGHT = {"freezing": True}  # without max_autotune: seconds to compile instead of tens (the kernels are inductor's)


@pytest.fixture(scope="module")
def compiler():
    """Skip where torch.compile cannot build CPU code (no C++ compiler): leapcast decodes eagerly there."""
    try:
        torch.compile(lambda x: x * 2 + 1)(torch.ones(3))
    except TorchDynamoException as err:
        pytest.skip(f"torch.compile does not run here ({type(err).__name__})")


compiles = pytest.mark.usefixtures("compiler")  # the tests that run compiled code (the fallback and refusals need none)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("compiled") / "tiny", layers=2, vocab=256, prediction_length=12)


def contexts(n: int = 3, length: int = 40) -> torch.Tensor:
    return torch.randn(n, length, generator=torch.Generator().manual_seed(1)).cumsum(-1)


def greedy_steps(model, state, steps: int, inputs: torch.Tensor | None = None):
    """Logits of ``steps`` plain steps from the start token, each step's input the argmax before it, or the given
    ``inputs`` [R, steps - 1] (teacher forcing) -> ([R, 1, V] per step, the argmaxes [R, steps])."""
    tokens = model.start_inputs(state)[:, None]
    logits, chosen = [], []
    for position in range(steps):
        out = model.decode(tokens, position, state)
        logits.append(out)
        chosen.append(out[:, -1].argmax(-1, keepdim=True))
        tokens = chosen[-1] if inputs is None or position + 1 == steps else inputs[:, position : position + 1]
    return logits, torch.cat(chosen, 1)


def decoded_twins(folder, monkeypatch, dtype: str):
    """An eager model and a compiled one (light options) whose states (3 series x 4 rows, room for both cache spans)
    hold the same 20 greedy positions -> (eager, fast, (eager state, fast state), the greedy tokens [12, 20]); the
    steps read their caches in several spans (``compiled.SPAN``)."""
    monkeypatch.setattr(compiled, "COMPILE_OPTIONS", LIGHT)
    eager, fast = load_model(folder, dtype=dtype), load_model(folder, dtype=dtype)
    fast.compile()
    ctx, capacity = contexts(), 24
    assert compiled.SPAN < 20
    states = eager.prefix(ctx, 4, capacity), fast.prefix(ctx, 4, capacity)
    _, tokens = greedy_steps(eager, states[0], 20)
    greedy_steps(fast, states[1], 20, inputs=tokens)  # both caches hold the same 20 positions
    return eager, fast, states, tokens


@compiles
@pytest.mark.parametrize("options", [compiled.COMPILE_OPTIONS, LIGHT], ids=["autotuned", "light"])
def test_compiled_steps_give_eager_logits_float32(folder, monkeypatch, options):
    monkeypatch.setattr(compiled, "COMPILE_OPTIONS", options)
    eager, fast = load_model(folder), load_model(folder)
    fast.compile()
    ctx = contexts()
    steps = compiled.SPAN + 4  # the step reads SPAN cache positions, then the whole cache but its spare one, then all
    want, want_tokens = greedy_steps(eager, eager.prefix(ctx, 5, steps), steps)
    got, got_tokens = greedy_steps(fast, fast.prefix(ctx, 5, steps), steps, inputs=want_tokens)
    assert fast.compiled and fast._compiled.calls == steps  # every step ran compiled
    for a, b in zip(want, got):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-5 * float(a.abs().max()))
    assert torch.equal(got_tokens, want_tokens)


@compiles
@pytest.mark.parametrize("options", [compiled.COMPILE_OPTIONS, LIGHT], ids=["autotuned", "light"])
def test_compiled_bfloat16_within_the_tiers_rounding(folder, monkeypatch, options):
    """bfloat16 products round their results to 8 bits, eager and compiled, but accumulate in other orders, and
    the compiled cross-attention runs in bfloat16: the two agree within that rounding (2**-8 of the largest
    logit)."""
    monkeypatch.setattr(compiled, "COMPILE_OPTIONS", options)
    eager, fast = load_model(folder, dtype="bfloat16"), load_model(folder, dtype="bfloat16")
    fast.compile()
    ctx = contexts()
    want, _ = greedy_steps(eager, eager.prefix(ctx, 4, 6), 6)
    state = fast.prefix(ctx, 4, 6)
    tokens = fast.start_inputs(state)[:, None]
    for position, a in enumerate(want):
        b = fast.decode(tokens, position, state)
        assert float((b - a).abs().max()) <= 2**-8 * float(a.abs().max())
        tokens = a[:, -1].argmax(-1, keepdim=True)  # eager's choices, so both read the same inputs
    assert fast._compiled.calls == 6


@compiles
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_rows_at_their_own_positions_match_eager(folder, monkeypatch, dtype):
    """As a draft's proposals after a speculative pass: every row at its own position (some before positions
    already written: what lies past a row's position must not count), across both cache spans."""
    eager, fast, states, tokens = decoded_twins(folder, monkeypatch, dtype)
    start = torch.tensor([3, 19, 7, 20, 0, 12, 16, 15, 9, 20, 1, 18])  # [R]: 3 series x 4 rows
    step = tokens[torch.arange(12), start.clamp(max=19)][:, None]
    want = eager.decode(step, start, states[0])
    calls = fast._compiled.calls
    got = fast.decode(step, start, states[1])
    assert fast._compiled.calls == calls + 1
    bound = 1e-5 if dtype == "float32" else 2**-8
    assert float((got - want).abs().max()) <= bound * float(want.abs().max())


@compiles
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_passes_over_several_positions_match_eager(folder, monkeypatch, dtype):
    """A verify pass (k + 1 positions per row, from one position or from each row's own) runs compiled and gives
    eager's logits; past ``MAX_POSITIONS`` a pass runs eagerly."""
    eager, fast, states, tokens = decoded_twins(folder, monkeypatch, dtype)
    bound = 1e-5 if dtype == "float32" else 2**-8
    calls = fast._compiled.calls
    for start in (14, torch.tensor([3, 19, 7, 20, 0, 12, 16, 15, 9, 20, 1, 18])):  # one position; each row its own
        verify = tokens[:, 5:9]  # [R, 4]: a draft's 3 proposals after the pending step
        want = eager.decode(verify, start, states[0])
        got = fast.decode(verify, start, states[1])
        assert got.shape == want.shape == (12, 4, 256)
        assert float((got - want).abs().max()) <= bound * float(want.abs().max())
    assert fast._compiled.calls == calls + 2
    long = tokens[:, : compiled.MAX_POSITIONS + 1]
    fast.decode(long, 0, states[1])
    assert fast._compiled.calls == calls + 2  # eager


@compiles
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_position_zero_decoded_once_per_series(folder, monkeypatch, dtype):
    """Position 0 reads the start token in every row of a series, so two rows a series decode it and the others
    take their keys, values and logits (``ChronosT5._compiled_pass``): every logit and cache entry of the steps
    after it equal to decoding every row, and the pass at position 0 ran on two rows a series."""
    monkeypatch.setattr(compiled, "COMPILE_OPTIONS", LIGHT)
    fast = load_model(folder, dtype=dtype)
    fast.compile()
    rows = []
    real = compiled.CompiledDecoder.__call__
    monkeypatch.setattr(
        compiled.CompiledDecoder,
        "__call__",
        lambda self, steps, *args: rows.append(len(steps)) or real(self, steps, *args),
    )
    ctx, paths = contexts(), 5
    later = torch.randint(5, 250, (len(ctx) * paths, 3), generator=torch.Generator().manual_seed(2))
    runs = {}
    for share in (False, True):
        monkeypatch.setattr(chronos_t5, "SHARE_FIRST", share)
        rows.clear()
        state = fast.prefix(ctx, paths, 8)
        logits, _ = greedy_steps(fast, state, 4, inputs=later)  # rows apart from position 1 on
        caches = [c.float().clone() for layer in state.caches.layers for c in (layer.k, layer.v)]
        runs[share] = (logits, caches, list(rows))
    assert runs[False][2] == [len(ctx) * paths] * 4 and runs[True][2] == [len(ctx) * 2] + [len(ctx) * paths] * 3
    for want, got in zip(runs[False][0] + runs[False][1], runs[True][0] + runs[True][1]):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


@compiles
@pytest.mark.parametrize("dtype,bound", [("float32", 1e-5), ("bfloat16", 1e-2)])
def test_compiled_encoder_gives_eager_output_in_one_graph_for_every_shape(folder, dtype, bound):
    """``compile=True`` encodes through inductor too (``leapcast.models.compiled_encoder``): the output of eager
    encoding within float32 rounding (3e-7 of its largest value here) or the tier's (bfloat16: 2e-7 on this net,
    2e-3 on house-target, where the tier itself is 5e-3 off float32), padding included, and one graph with dynamic
    sizes for every batch size and context length: no compile per new history length."""
    eager, fast = load_model(folder, dtype=dtype), load_model(folder, dtype=dtype)
    fast.compile()
    g = torch.Generator().manual_seed(0)
    graphs = []
    for b, length in ((3, 40), (5, 17), (2, 64), (7, 33)):
        tokens = torch.randint(3, 256, (b, length), generator=g)
        mask = torch.ones(b, length, dtype=torch.bool)
        mask[0, : length // 2] = False  # a shorter history, padded on the left
        with torch.inference_mode():
            want, got = eager.net.encode(tokens, mask), fast.net.encode(tokens, mask, run=fast._encoder)
        torch.testing.assert_close(got, want, rtol=0, atol=bound * float(want.abs().max()))
        graphs.append(compiled.graphs_built())
    assert fast._encoder.calls == 4 and graphs[1:] == graphs[:1] * 3


@compiles
def test_two_nets_of_one_shape_each_run_their_own_weights(folder, tmp_path, monkeypatch):
    """Every net's compiled step shares one code object and the guards on the nets' modules are cut
    (``_guard_options``): a second net of the same shapes must still get a graph of its own, not run the first
    net's frozen weights (a second checkpoint compared in one process, a server holding two)."""
    monkeypatch.setattr(compiled, "COMPILE_OPTIONS", LIGHT)
    other = make_checkpoint(tmp_path / "other", layers=2, vocab=256, prediction_length=12, seed=1)
    ctx = contexts()
    for path in (folder, other):
        eager, fast = load_model(path), load_model(path)
        fast.compile()
        want, tokens = greedy_steps(eager, eager.prefix(ctx, 5, 8), 4)
        got, _ = greedy_steps(fast, fast.prefix(ctx, 5, 8), 4, inputs=tokens)
        assert fast._compiled.calls == 4 and fast._encoder.calls == 1  # the encoder's graph: its own weights too
        for a, b in zip(want, got):
            torch.testing.assert_close(b, a, rtol=0, atol=1e-5 * float(a.abs().max()))


@compiles
def test_forecaster_compile_runs_compiled_and_matches_eager(folder, monkeypatch):
    monkeypatch.setattr(compiled, "COMPILE_OPTIONS", LIGHT)
    series = [np.asarray(c) for c in contexts(4, 30).numpy()]
    eager = Forecaster.from_pretrained(folder)
    fast = Forecaster.from_pretrained(folder, compile=True)
    want = eager.predict(series, 12, num_samples=1, top_k=1, seed=0, progress=False)
    got = fast.predict(series, 12, num_samples=1, top_k=1, seed=0, progress=False)
    assert fast.model._compiled.calls == 12
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


@compiles
def test_settings_patched_only_for_inputs_not_seen_before(folder, monkeypatch):
    """The compile settings are patched around a call whose input signature is new (dynamo may compile there), not
    around a repeat of one (``CompiledDecoder.seen``: x1.08 on house-target at batch 1): a
    repeated forecast patches nothing, gives what one patching every call gives, and a new batch size patches
    again."""
    monkeypatch.setattr(compiled, "COMPILE_OPTIONS", LIGHT)
    patches = []
    real = compiled.inductor_config

    class Counting:  # the config module, its patches counted (a config module's attributes can't be replaced)
        def __getattr__(self, name):
            return getattr(real, name)

        def patch(self, *args, **kwargs):
            patches.append(1)
            return real.patch(*args, **kwargs)

    monkeypatch.setattr(compiled, "inductor_config", Counting())
    series = [np.asarray(c) for c in contexts(4, 30).numpy()]
    kw = dict(num_samples=3, seed=0, progress=False)
    fast, every = Forecaster.from_pretrained(folder, compile=True), Forecaster.from_pretrained(folder, compile=True)
    first = fast.predict(series, 12, **kw)
    # one per new signature (each cache span, position 0 decoded once per series), not one per call
    assert len(patches) == len(fast.model._compiled.seen) and fast.model._compiled.calls == 12
    patches.clear()
    again = fast.predict(series, 12, **kw)
    assert patches == [] and fast.model._compiled.calls == 24
    every.model._compiled.seen = type("Never", (set,), {"__contains__": lambda self, key: False})()
    patched = every.predict(series, 12, **kw)
    assert len(patches) == 12  # every call of the twin patched
    np.testing.assert_array_equal(np.asarray(again), np.asarray(first))
    np.testing.assert_array_equal(np.asarray(patched), np.asarray(first))
    patches.clear()
    fast.predict(series[:3], 12, **kw)
    assert patches  # new rows: patched again
    patches.clear()
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1 if threads > 1 else 2)  # a guard of dynamo's on the process: a new signature too
        fast.predict(series, 12, **kw)
    finally:
        torch.set_num_threads(threads)
    assert patches


@compiles
def test_a_call_that_compiles_unpatched_turns_the_skipping_off(tmp_path, monkeypatch):
    """Should dynamo compile on a call whose signature was seen (a guard ``_signature`` does not cover; here every
    signature counts as seen once the graphs are made), the step notices and patches every call from then on. A
    net of its own: no graph of another test's fits it."""
    monkeypatch.setattr(compiled, "COMPILE_OPTIONS", LIGHT)
    series = [np.asarray(c) for c in contexts(4, 30).numpy()]
    own = make_checkpoint(tmp_path / "own", layers=2, vocab=256, prediction_length=12, seed=3)
    fast = Forecaster.from_pretrained(own, compile=True)
    fast.predict(series, 12, num_samples=3, seed=0, progress=False)  # its graphs: a static span, then a dynamic one
    monkeypatch.setattr(compiled, "_signature", lambda args: ())
    fast.model._compiled.seen = {()}
    fast.predict(series, 12, num_samples=3, seed=0, progress=False)
    assert fast.model._compiled.seen == {()}  # nothing compiled: the skipping stays on
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1 if threads > 1 else 2)  # dynamo guards the thread count: it compiles again, unpatched
        fast.predict(series, 12, num_samples=3, seed=0, progress=False)
    finally:
        torch.set_num_threads(threads)
    assert fast.model._compiled.seen is None and fast.model._compiled.calls == 36


@compiles
def test_speculative_with_compile_drafts_compiled(folder, tmp_path, monkeypatch):
    """A draft's proposals are plain steps of the draft, the target's verify passes a few positions per row: both
    compiled. Greedy speculative decoding still gives plain greedy decoding's forecast."""
    monkeypatch.setattr(compiled, "COMPILE_OPTIONS", LIGHT)
    draft = make_checkpoint(tmp_path / "draft", layers=1, vocab=256, prediction_length=12, seed=3)
    series = [np.asarray(c) for c in contexts(2, 30).numpy()]
    plain = Forecaster.from_pretrained(folder).predict(series, 12, num_samples=1, top_k=1, progress=False)
    fc = Forecaster.from_pretrained(folder, draft=str(draft), spec=SpecConfig(k=3, adaptive=False), compile=True)
    got = fc.predict(series, 12, num_samples=1, top_k=1, progress=False)
    assert fc.proposer.draft._compiled.calls > 0 and fc.model._compiled.calls > 0  # proposals and verify passes
    np.testing.assert_array_equal(np.asarray(got), np.asarray(plain))


def test_a_failing_compiler_falls_back_to_eager_with_a_warning(folder):
    fast, eager = load_model(folder), load_model(folder)
    fast.compile()

    def broken(*args, **kwargs):
        raise TorchDynamoException("no C++ compiler found")

    fast._compiled.step = fast._encoder.step = broken
    ctx = contexts()
    want, _ = greedy_steps(eager, eager.prefix(ctx, 2, 4), 4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got, _ = greedy_steps(fast, fast.prefix(ctx, 2, 4), 4)
        fast.prefix(ctx, 2, 4)
    assert not fast.compiled and "no C++ compiler found" in fast._compiled.failed
    assert "no C++ compiler found" in fast._encoder.failed
    assert sum("decoding eagerly" in str(w.message) for w in caught) == 1  # once, not once a step
    assert sum("encoding eagerly" in str(w.message) for w in caught) == 1  # once, not once a batch
    for a, b in zip(want, got):
        assert torch.equal(a, b)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_caches_in_the_compiled_tier_and_eager_passes_over_them(folder, dtype):
    """Compiled in bfloat16, the self-attention caches are bfloat16 (the step reads them all: half the bytes).
    Eager passes over them (a verify pass over several positions, rows at their own positions, the fallback) read
    them as float32 and give eager decoding's logits exactly: the tier's products round keys and values to
    bfloat16 already, so storing them in it loses nothing."""
    eager, fast = load_model(folder, dtype=dtype), load_model(folder, dtype=dtype)
    fast.compile()
    assert fast.cache_dtype == getattr(torch, dtype) and eager.cache_dtype == torch.float32

    def broken(*args, **kwargs):
        raise TorchDynamoException("no C++ compiler found")

    fast._compiled.step = fast._encoder.step = broken  # every pass eager, over the compiled tier's caches
    ctx = contexts()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        states = eager.prefix(ctx, 4, 12), fast.prefix(ctx, 4, 12)
        assert states[1].caches.layers[0].k.dtype == fast.cache_dtype
        want, tokens = greedy_steps(eager, states[0], 5)
        got, _ = greedy_steps(fast, states[1], 5, inputs=tokens)
        for a, b in zip(want, got):
            assert torch.equal(a, b)
        verify = tokens[:, 2:5]  # a pass over 3 positions from position 5, then rows at their own positions
        assert torch.equal(fast.decode(verify, 5, states[1]), eager.decode(verify, 5, states[0]))
        start = torch.tensor([1, 4, 2, 6, 0, 3, 5, 7, 2, 2, 4, 1])
        assert torch.equal(fast.decode(verify, start, states[1]), eager.decode(verify, start, states[0]))
    # a compiled model's caches keep a spare position (its span never covers them whole): joining a state made
    # with other capacities (the server's merge) keeps every position of both
    assert states[1].caches.layers[0].k.shape[2] == 13
    joined = fast.merge(states[1], fast.prefix(ctx[:1], 2, 9))
    assert joined.caches.layers[0].k.shape[:3] == (14, 4, 13) and joined.caches.layers[0].k.dtype == fast.cache_dtype


def test_compile_refused_for_toto_and_non_flags():
    with pytest.raises(ValueError, match=r"`compile`=True compiles Chronos-T5 decoders only; 'house-patch-target'"):
        Forecaster.from_pretrained("house-patch-target", compile=True)
    with pytest.raises(ValueError, match=r"`compile` must be True or False, got 'yes'"):
        Forecaster.from_pretrained("house-target", compile="yes")


@compiles
def test_cli_compile_forecasts_as_the_api(folder, tmp_path, monkeypatch):
    import pandas as pd
    from typer.testing import CliRunner

    from leapcast.cli import app

    monkeypatch.setattr(compiled, "COMPILE_OPTIONS", LIGHT)
    rng = np.random.default_rng(0)
    frame = pd.concat(
        pd.DataFrame({"unique_id": uid, "ds": np.arange(n), "y": rng.normal(50, 5, n)})
        for uid, n in (("a", 30), ("b", 24))
    )
    frame.to_csv(tmp_path / "in.csv", index=False)
    args = ["forecast", "--model", str(folder), "--input", str(tmp_path / "in.csv"), "--h", "5", "--seed", "0"]
    result = CliRunner().invoke(app, [*args, "--num-samples", "6", "--output", str(tmp_path / "out.csv"), "--compile"])
    assert result.exit_code == 0, result.output
    want = Forecaster.from_pretrained(folder, compile=True).forecast(frame, 5, seed=0, num_samples=6)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "out.csv"), want, check_dtype=False)

    refused = CliRunner().invoke(app, ["forecast", "--input", str(tmp_path / "in.csv"), "--h", "5", "--compile"])
    assert refused.exit_code != 0
    assert "compilesChronos-T5decodersonly" in "".join(refused.output.split())  # rich wraps at the console width
