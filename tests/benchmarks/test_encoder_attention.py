"""benchmarks/encoder_attention.py: both encoder versions run, differ, stay near float64, and the library's is
put back."""

import importlib.util
import sys
from pathlib import Path

from conftest import make_checkpoint

from leapcast.models import t5

spec = importlib.util.spec_from_file_location(
    "encoder_attention", Path(__file__).parents[2] / "benchmarks" / "encoder_attention.py"
)
encoder_attention = importlib.util.module_from_spec(spec)
sys.modules["encoder_attention"] = encoder_attention
spec.loader.exec_module(encoder_attention)


def test_both_versions_timed_near_float64_and_the_library_restored(tmp_path):
    folder = make_checkpoint(tmp_path / "tiny", layers=2, d_model=64, d_kv=16, heads=4, d_ff=128, vocab=256)
    row = encoder_attention.measure(str(folder), batch=2, length=80, repeats=2, tmp=tmp_path)
    assert row["before_ms"] > 0 and row["after_ms"] > 0 and row["speedup"] > 0
    assert row["max_error_before"] != row["max_error_after"]  # two versions that round differently
    assert max(row["max_error_before"], row["max_error_after"]) < 0.05 * row["scale"]
    assert t5.EncoderLayer.forward is encoder_attention.LIBRARY
