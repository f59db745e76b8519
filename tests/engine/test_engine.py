"""The KV-cached decoder: per-row positions, rollback, and shared cross-attention."""

import torch
from conftest import make_checkpoint

from leapcast.engine.loop import Decoder
from leapcast.engine.sampling import SamplingConfig
from leapcast.models.loading import load_model


def _model(tmp_path, **kw):
    return load_model(make_checkpoint(tmp_path, d_model=32, d_kv=8, layers=2, heads=4, ff="gated-gelu", **kw))


def _batch(model, b=3):
    ctx = torch.randn(b, 30, generator=torch.Generator().manual_seed(0)).cumsum(-1)
    ctx[0, :10] = float("nan")
    return model.tokenize(ctx)


def test_rollback_by_moving_the_position(tmp_path):
    model = _model(tmp_path)
    batch = _batch(model)
    steps = torch.randint(2, 4096, (3, 6))
    steps[:, 0] = 0
    clean = model.decode(steps, 0, model.setup(batch, 1, 10))
    state = model.setup(batch, 1, 10)
    model.decode(steps[:, :3], 0, state)
    model.decode(torch.randint(2, 4096, (3, 4)), 3, state)  # a rejected proposal written at 3..6
    again = model.decode(steps[:, 3:], torch.tensor([3, 3, 3]), state)  # rolled back: overwrite from 3
    assert torch.allclose(again, clean[:, 3:], atol=1e-5)


def test_rows_at_different_positions(tmp_path):
    model = _model(tmp_path)
    batch = _batch(model)
    steps = torch.randint(2, 4096, (3, 7))
    steps[:, 0] = 0
    clean = model.decode(steps, 0, model.setup(batch, 1, 10))
    state = model.setup(batch, 1, 10)
    model.decode(steps[:, :4], 0, state)
    # row r continues from position start[r] with 2 steps; the rows' caches are independent
    start = torch.tensor([1, 2, 4])
    nxt = torch.stack([steps[r, s : s + 2] for r, s in enumerate(start.tolist())])
    got = model.decode(nxt, start, state)
    for r, s in enumerate(start.tolist()):
        assert torch.allclose(got[r], clean[r, s : s + 2], atol=1e-5), r


def test_sample_rows_share_their_series_encoding(tmp_path):
    """Rows of one series read the series' cross-attention K/V: S rows fed the
    same steps give the logits of that series decoded alone."""
    model = _model(tmp_path)
    batch = _batch(model)
    steps = torch.randint(2, 4096, (3, 4))
    steps[:, 0] = 0
    alone = model.decode(steps, 0, model.setup(batch, 1, 4))  # [3, 4, V]
    state = model.setup(batch, 5, 4)
    assert state.caches.layers[0].cross_k.shape[0] == 3  # one K/V per series, not per row
    grouped = model.decode(steps.repeat_interleave(5, dim=0), 0, state).view(3, 5, 4, -1)
    assert torch.allclose(grouped, alone[:, None].expand_as(grouped), atol=1e-5)


def test_a_series_decodes_the_same_alone_and_among_others(tmp_path):
    from leapcast.engine.streams import RowStreams

    model = _model(tmp_path)
    ctx = torch.randn(3, 30, generator=torch.Generator().manual_seed(0)).cumsum(-1)
    cfg = SamplingConfig(num_samples=4)
    together = Decoder(model)
    ids = together.add(ctx, 6, cfg, RowStreams.for_series(3, [0, 1, 2], 4))
    all_rows = together.run()
    alone = Decoder(model)
    padded = torch.cat([torch.full((1, 5), float("nan")), ctx[1:2]], dim=1)  # another padding width too
    one = alone.add(padded, 6, cfg, RowStreams.for_series(3, [1], 4))
    assert torch.allclose(alone.run()[one[0]], all_rows[ids[1]], rtol=1e-5)


def test_rollout_appends_the_lower_median_of_each_window(tmp_path):
    """Past prediction_length (8 here) the context grows by the per-series
    median of the window's samples (torch's lower median, as chronos-forecasting)
    and is re-tokenized with a new scale."""
    from leapcast.engine.rollout import rollout
    from leapcast.engine.streams import RowStreams

    model = _model(tmp_path)
    ctx = torch.randn(2, 30, generator=torch.Generator().manual_seed(0)).cumsum(-1)
    cfg = SamplingConfig(num_samples=6)
    streams = RowStreams.for_series(5, [0, 1], 6)
    full, _ = rollout(model, ctx, 11, cfg, streams)
    first, _ = rollout(model, ctx, 8, cfg, streams)
    grown = torch.cat([ctx, first.sort(dim=1).values[:, 2]], dim=-1)  # lower median of 6 = 3rd smallest
    second, _ = rollout(model, grown, 3, cfg, streams, first_step=8)
    assert torch.equal(full, torch.cat([first, second], dim=-1))


def test_select_series_keeps_exactly_their_rows_and_encodings(tmp_path):
    model = _model(tmp_path)
    batch = _batch(model)
    steps = torch.randint(2, 4096, (3 * 2, 5))
    steps[:, 0] = 0
    state = model.setup(batch, 2, 8)
    model.decode(steps[:, :3], 0, state)
    kept = model.select_series(state, torch.tensor([0, 2]))
    assert kept.num_rows == 4 and kept.caches.layers[0].cross_k.shape[0] == 2
    got = model.decode(steps[[0, 1, 4, 5], 3:], 3, kept)
    full = model.decode(steps[:, 3:], 3, state)
    assert torch.allclose(got, full[[0, 1, 4, 5]], atol=1e-5)
