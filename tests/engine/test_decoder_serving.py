"""The decode loop as the server drives it: series join far behind rows already decoding, and leave early."""

import pytest
import torch
from conftest import make_checkpoint

from leapcast.engine.loop import Decoder
from leapcast.engine.sampling import SamplingConfig
from leapcast.engine.streams import RowStreams
from leapcast.models.loading import load_model

GREEDY = SamplingConfig(num_samples=2, top_k=1)
SAMPLED = SamplingConfig(num_samples=3)


def _model(tmp_path):
    return load_model(make_checkpoint(tmp_path / "m", prediction_length=12, context_length=32))


def _contexts():
    return torch.randn(2, 30, generator=torch.Generator().manual_seed(0)).cumsum(-1)  # [2, 30]


def _alone(model, ctx, sampling, key):
    dec = Decoder(model)
    (sid,) = dec.add(ctx, 10, sampling, RowStreams.for_series(7, [key], sampling.num_samples))
    return dec.run()[sid]


def _join_late(model, ctx, sampling, catch_up):
    """A decodes 4 passes alone, then B joins at step 0; -> ({"a"/"b": values}, {"a"/"b": pass that returned it})."""
    dec = Decoder(model, catch_up=catch_up)
    (a,) = dec.add(ctx[:1], 10, sampling, RowStreams.for_series(7, [0], sampling.num_samples))
    passes, got, when = 0, {}, {}
    while dec.busy:
        if passes == 4:
            (b,) = dec.add(ctx[1:], 10, sampling, RowStreams.for_series(7, [1], sampling.num_samples))
        passes += 1
        for sid, values in dec.step().items():
            name = "a" if sid == a else "b"
            got[name], when[name] = values, passes
    return got, when


def test_without_catch_up_rows_ahead_keep_stepping_while_a_series_joins(tmp_path):
    model, ctx = _model(tmp_path), _contexts()
    got, when = _join_late(model, ctx, GREEDY, catch_up=False)
    assert when == {"a": 10, "b": 14}  # A is not held back by B: 10 passes for its 10 steps
    waited, when_waiting = _join_late(model, ctx, GREEDY, catch_up=True)
    assert when_waiting == {"a": 14, "b": 14}  # the default: A waits 4 passes for B to catch up (the control)
    for name, i in (("a", 0), ("b", 1)):
        want = _alone(model, ctx[i : i + 1], GREEDY, i)
        assert torch.equal(got[name], want)
        assert torch.equal(waited[name], want)


def test_sampled_rows_draw_their_own_numbers_at_any_position(tmp_path):
    model, ctx = _model(tmp_path), _contexts()
    got, _ = _join_late(model, ctx, SAMPLED, catch_up=False)
    for name, i in (("a", 0), ("b", 1)):
        want = _alone(model, ctx[i : i + 1], SAMPLED, i)
        same = (got[name] == want).float().mean().item()
        assert same >= 0.99, f"series {name}: {same:.1%} of values as alone"  # float rounding may move a rare bin
        assert not torch.equal(got[name], _alone(model, ctx[i : i + 1], SAMPLED, i + 5))  # another stream differs


def test_drop_removes_a_series_and_leaves_the_others_as_they_were(tmp_path):
    model, ctx = _model(tmp_path), _contexts()
    dec = Decoder(model, catch_up=False)
    a, b = dec.add(ctx, 10, GREEDY, RowStreams.for_series(7, [0, 1], GREEDY.num_samples))
    out = dec.step()
    dec.drop([a, 99])  # 99: not decoding, ignored
    assert dec.rows is not None and set(dec.rows.series.tolist()) == {b}
    out.update(dec.run())
    assert list(out) == [b]
    assert torch.equal(out[b], _alone(model, ctx[1:], GREEDY, 1))
    dec.add(ctx[:1], 10, GREEDY, RowStreams.for_series(7, [0], GREEDY.num_samples))
    dec.drop([dec.rows.series[0].item()])
    assert not dec.busy  # the last series dropped: idle, ready for the next


def test_one_join_with_a_horizon_and_first_step_per_series_is_the_same_as_one_join_each(tmp_path):
    model, ctx = _model(tmp_path), _contexts()
    streams = RowStreams.for_series(7, [0, 1], SAMPLED.num_samples)
    dec = Decoder(model, catch_up=False)
    ids = dec.add(ctx, [4, 9], SAMPLED, streams, first_step=[0, 3])
    got = dec.run()
    for i, (steps, first) in enumerate([(4, 0), (9, 3)]):
        alone = Decoder(model)
        (sid,) = alone.add(ctx[i : i + 1], steps, SAMPLED, streams.select(torch.arange(3) + 3 * i), first_step=first)
        want = alone.run()[sid]
        assert got[ids[i]].shape == want.shape == (3, steps)
        assert (got[ids[i]] == want).float().mean() >= 0.99
    shifted = Decoder(model)  # the control: another first step reads other numbers
    (sid,) = shifted.add(ctx[1:], 9, SAMPLED, streams.select(torch.arange(3) + 3), first_step=0)
    assert not torch.equal(shifted.run()[sid], got[ids[1]])


def test_finished_series_can_stay_until_compact(tmp_path):
    model, ctx = _model(tmp_path), _contexts()
    streams = RowStreams.for_series(7, [0, 1], GREEDY.num_samples)
    plain = Decoder(model, catch_up=False)
    want = plain.run() if plain.add(ctx, [4, 10], GREEDY, streams) else {}
    dec = Decoder(model, catch_up=False, keep_finished=True)
    a, b = dec.add(ctx, [4, 10], GREEDY, streams)
    got = {}
    for _ in range(4):
        got.update(dec.step())
    assert list(got) == [a] and dec.finished_rows == 2 and len(dec.rows.series) == 4  # A returned, its rows stay
    dec.step()
    assert dec.finished_rows == 2  # reported once, riding along
    dec.compact()
    assert dec.finished_rows == 0 and len(dec.rows.series) == 2
    got.update(dec.run())
    assert not dec.busy and (a, b) == (0, 1)  # ids as the plain decoder's
    assert torch.equal(got[a], want[0]) and torch.equal(got[b], want[1])


@pytest.mark.parametrize("proposer", [None, "early-exit:1"])
def test_rows_from_the_end_fill_the_places_of_series_that_leave(tmp_path, proposer):
    """Four series of 4, 10, 6 and 10 steps: the first and third leave early, the fourth's rows move into their
    places in the caches (the early-exit draft shares the target's cross-attention caches and moves them too);
    every forecast is still the one each series gets alone."""
    from leapcast.engine.proposers.early_exit import EarlyExitProposer
    from leapcast.engine.speculative import SpecConfig

    model = load_model(make_checkpoint(tmp_path / "m", layers=2, prediction_length=12, context_length=32))
    ctx = torch.randn(4, 30, generator=torch.Generator().manual_seed(1)).cumsum(-1)
    steps = [4, 10, 6, 10]

    def decoder():
        if proposer is None:
            return Decoder(model)
        return Decoder(model, EarlyExitProposer(model, 1, k=2, sampling=SAMPLED), SpecConfig(k=2, adaptive=False))

    dec = decoder()
    ids = dec.add(ctx, steps, SAMPLED, RowStreams.for_series(7, [0, 1, 2, 3], SAMPLED.num_samples))
    moved = []
    got = {}
    while dec.busy:
        before = dec.rows.series.clone() if dec.rows is not None else None
        got.update(dec.step())
        if dec.rows is not None and before is not None and len(dec.rows.series) < len(before):
            moved.append(dec.rows.series.tolist())
    assert any(order != sorted(order) for order in moved)  # rows from the end took the places of those that left
    for i, sid in enumerate(ids):
        alone = decoder()
        (one,) = alone.add(ctx[i : i + 1], steps[i], SAMPLED, RowStreams.for_series(7, [i], SAMPLED.num_samples))
        assert torch.equal(got[sid], alone.run()[one])


@pytest.mark.parametrize("proposer", [None, "early-exit:2"])
def test_toto_series_that_leave_move_only_the_context_keys_of_series_that_change_place(proposer):
    """Toto's twin of the test above: four series of 2, 5, 3 and 5 patches; when the first and third leave, the
    fourth's rows and its context keys (``prefix_k``, moved in place, shared with the early-exit draft) take their
    places; every forecast is still the one each series gets alone."""
    from leapcast.engine.proposers.early_exit import EarlyExitProposer
    from leapcast.engine.speculative import SpecConfig
    from leapcast.models.toto_net import TotoConfig
    from leapcast.models.toto_presets import random_toto

    cfg = TotoConfig(
        patch_size=4,
        stride=4,
        embed_dim=16,
        num_layers=3,
        num_heads=2,
        mlp_hidden_dim=32,
        spacewise_every_n_layers=-1,
        k_components=2,
    )
    model = random_toto(cfg)
    ctx = torch.randn(4, 30, generator=torch.Generator().manual_seed(2)).cumsum(-1)
    steps = [2, 5, 3, 5]

    def decoder():
        if proposer is None:
            return Decoder(model)
        return Decoder(model, EarlyExitProposer(model, 2, k=2, sampling=SAMPLED), SpecConfig(k=2, adaptive=False))

    dec = decoder()
    ids = dec.add(ctx, steps, SAMPLED, RowStreams.for_series(7, [0, 1, 2, 3], SAMPLED.num_samples))
    moved, got = [], {}
    while dec.busy:
        before = dec.rows.series.clone() if dec.rows is not None else None
        got.update(dec.step())
        if dec.rows is not None and before is not None and len(dec.rows.series) < len(before):
            moved.append(dec.rows.series.tolist())
    assert any(order != sorted(order) for order in moved)  # the last series took the place of one that left
    for i, sid in enumerate(ids):
        alone = decoder()
        (one,) = alone.add(ctx[i : i + 1], steps[i], SAMPLED, RowStreams.for_series(7, [i], SAMPLED.num_samples))
        assert torch.equal(got[sid], alone.run()[one])


def test_series_of_other_sample_counts_attend_in_groups_and_forecast_as_alone(tmp_path):
    """Rows of series with 5 and 7 paths in one decoder (a server's requests of other num_samples): cross-attention
    runs per row count (``rows.row_groups``) instead of copying every row's keys, and each series' paths are the
    ones it gets alone."""
    from leapcast.models.rows import row_groups

    rows, series, s = zip(*row_groups(torch.tensor([0, 0, 1, 1, 1, 2, 2, 0])))  # series 0 and 2: scattered rows
    assert [r.tolist() for r in rows] == [[5, 6], [0, 1, 7, 2, 3, 4]]
    assert [x.tolist() for x in series] == [[2], [0, 1]] and s == (2, 3)
    model, ctx = _model(tmp_path), torch.randn(3, 30, generator=torch.Generator().manual_seed(1)).cumsum(-1)
    dec = Decoder(model, catch_up=False)
    first = dec.add(ctx[:2], 10, SamplingConfig(num_samples=5), RowStreams.for_series(7, [0, 1], 5))
    second = dec.add(ctx[2:3], 10, SamplingConfig(num_samples=7), RowStreams.for_series(7, [2], 7))
    mixed = dec.run()
    for sid, key, s in [(first[0], 0, 5), (first[1], 1, 5), (second[0], 2, 7)]:
        assert torch.equal(mixed[sid], _alone(model, ctx[key : key + 1], SamplingConfig(num_samples=s), key))
