"""benchmarks/by_length.py: its groups cover every series once, in half-open ranges, empty ones left out."""

import importlib.util
import sys
from pathlib import Path

import numpy as np

spec = importlib.util.spec_from_file_location("by_length", Path(__file__).parents[2] / "benchmarks" / "by_length.py")
by_length = importlib.util.module_from_spec(spec)
sys.modules["by_length"] = by_length
spec.loader.exec_module(by_length)


def test_groups_split_lengths_at_the_edges_and_skip_empty_ranges():
    lengths = np.array([11, 19, 20, 29, 47, 300])
    out = by_length.groups(lengths, [20, 30, 60, 120])
    assert [label for label, _ in out] == ["0-19", "20-29", "30-59", "120+"]  # nothing in 60-119
    assert [lengths[m].tolist() for _, m in out] == [[11, 19], [20, 29], [47], [300]]
    assert sum(m for _, m in out).tolist() == [1] * len(lengths)  # each series in exactly one group
