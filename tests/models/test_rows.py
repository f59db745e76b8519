"""Row buffers: joins write into room after the rows decoding, leaving rows are replaced by rows from the end."""

from __future__ import annotations

import pytest
import torch

from leapcast.models.rows import append_rows, fill_order, overlapping, series_of, take_rows, zeros_view


def test_fill_order_keeps_rows_in_place_and_fills_holes_from_the_end():
    keep = torch.tensor([0, 1, 4, 5, 6, 8, 9])
    assert fill_order(keep, 10).tolist() == [0, 1, 8, 9, 4, 5, 6]
    assert fill_order(torch.tensor([0, 1, 2]), 5).tolist() == [0, 1, 2]  # rows left at the end: nothing moves
    assert fill_order(torch.tensor([3, 4]), 5).tolist() == [3, 4]  # every kept row past the end moves


def test_take_rows_moves_only_the_filling_rows_within_the_buffer():
    x = torch.arange(40.0).view(10, 4)
    want = x.clone()
    order = fill_order(torch.tensor([0, 1, 4, 5, 6, 8, 9]), 10)
    buffer = x
    got, kept = take_rows(x, order, buffer)
    assert torch.equal(got, want[order])
    assert got.data_ptr() == x.data_ptr() and kept is buffer  # in place: still the front of its buffer


def test_take_rows_copies_an_order_that_would_overwrite_its_sources():
    x = torch.arange(40.0).view(10, 4)
    want = x.clone()
    order = torch.tensor([3, 0, 1])  # row 0 would be overwritten by row 3 before row 1 reads it
    got, kept = take_rows(x, order, x)
    assert torch.equal(got, want[order]) and kept is None
    assert torch.equal(x, want)  # x untouched


def test_append_rows_writes_into_room_and_equals_a_concatenation():
    a, b, c = torch.randn(8, 3, 2), torch.randn(4, 3, 2), torch.randn(1, 3, 2)
    ab, buffer = append_rows(a, b)
    assert buffer.shape[0] > 12  # a new buffer has room to grow
    abc, buffer2 = append_rows(ab, c, buffer)
    assert buffer2 is buffer and abc.data_ptr() == ab.data_ptr()  # written into the room
    assert torch.equal(abc, torch.cat([a, b, c]))
    # after rows leave in place, a join still lands in the same buffer
    kept, buffer3 = take_rows(abc, fill_order(torch.tensor([0, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]), 13), buffer2)
    d = torch.randn(2, 3, 2)
    both, buffer4 = append_rows(kept, d, buffer3)
    assert buffer4 is buffer and torch.equal(both[-2:], d)
    assert torch.equal(both[:12], torch.cat([a, b, c])[[0, 12, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]])


def test_append_rows_writes_only_into_a_buffer_the_rows_are_the_front_of():
    a, buffer = torch.zeros(4, 2), torch.full((10, 2), 7.0)  # a is not in that buffer
    out, made = append_rows(a, torch.ones(2, 2), buffer)
    assert torch.equal(out, torch.cat([torch.zeros(4, 2), torch.ones(2, 2)]))
    assert made is not buffer and torch.equal(buffer, torch.full((10, 2), 7.0))
    ab, room = append_rows(torch.zeros(8, 2), torch.zeros(2, 2))  # room for 12 rows
    more, bigger = append_rows(ab, torch.ones(30, 2), room)  # past its room: a new buffer
    assert bigger is not room and bigger.shape[0] >= 40
    assert torch.equal(more, torch.cat([torch.zeros(10, 2), torch.ones(30, 2)]))


def test_append_rows_refuses_rows_of_another_shape():
    with pytest.raises(ValueError, match="cannot be appended"):
        append_rows(torch.zeros(2, 3), torch.zeros(2, 4))


def test_series_of_numbers_series_in_order_of_their_first_row():
    series, rows = series_of(torch.tensor([3, 3, 1, 1, 0, 0]))
    assert series.tolist() == [3, 1, 0] and rows.tolist() == [0, 0, 1, 1, 2, 2]


def test_zeros_view_takes_no_memory_until_copied_and_joins_as_zeros():
    """The caches of joining rows: one zero expanded; appended into a buffer's room over stale rows they are zeros
    there, selected they are a copy, and in place they cannot be written (whoever writes makes them contiguous)."""
    z = zeros_view((3, 2, 5), torch.float32, "cpu")
    assert overlapping(z) and z.untyped_storage().nbytes() == 4 and not overlapping(torch.zeros(1, 2, 5))
    a, buffer = append_rows(torch.ones(2, 2, 5), torch.ones(2, 2, 5))  # a buffer with room after 4 rows
    front, _ = take_rows(a, torch.arange(2), buffer)  # two rows leave: rows 2-3 of the buffer hold stale ones
    joined, kept = append_rows(front, z, buffer)
    assert kept is buffer and torch.equal(joined, torch.cat([torch.ones(2, 2, 5), torch.zeros(3, 2, 5)]))
    taken, room = take_rows(z, torch.tensor([2, 0]))
    assert room is None and not overlapping(taken) and torch.equal(taken, torch.zeros(2, 2, 5))
    with pytest.raises(RuntimeError):
        z[:, :, 0] = 1.0
