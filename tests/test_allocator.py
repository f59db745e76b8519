"""glibc malloc tuning (``leapcast.allocator``): set once when a model loads, off on request, effective."""

import os
import subprocess
import sys

import pytest

from leapcast.allocator import _glibc

# the tuning is glibc's mallopt: other C libraries (macOS, musl) have nothing to tune, and leapcast leaves them be
glibc_only = pytest.mark.skipif(_glibc("mallopt") is None, reason="the tuning applies to glibc's malloc only")

# tensors of 1-29 MB allocated and freed in turn, as decode steps do: minor page faults of the second round
FAULTS = """
import resource, sys, torch
from leapcast.allocator import tune_malloc
tuned = tune_malloc()
sizes = (torch.randint(1, 30, (200,), generator=torch.Generator().manual_seed(0)) * 2**18).tolist()
def run():
    keep = []
    for n in sizes:
        keep.append(torch.ones(n))
        if len(keep) > 3:
            keep.pop(0)
run()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
run()
print(tuned, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _run(**env: str) -> tuple[bool, int]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "LEAPCAST_MALLOC"))}
    out = subprocess.run(
        [sys.executable, "-c", FAULTS], env=clean | env, capture_output=True, text=True, check=True
    ).stdout.split()
    return out[0] == "True", int(out[1])


@glibc_only
def test_tuned_malloc_reuses_freed_blocks_instead_of_faulting_them_in():
    tuned, faults = _run()
    untouched, faults_system = _run(LEAPCAST_MALLOC="system")
    assert tuned and not untouched
    assert faults_system > 10_000  # 200 blocks of 1-29 MB mapped afresh: pages faulted in again
    assert faults < faults_system / 20


@glibc_only
def test_glibc_variables_set_by_the_user_are_left_alone():
    tuned, _ = _run(MALLOC_TRIM_THRESHOLD_="1000000")
    assert not tuned


def test_an_unknown_setting_is_refused_by_name(monkeypatch):
    from leapcast.allocator import tune_malloc

    tune_malloc.cache_clear()
    monkeypatch.setenv("LEAPCAST_MALLOC", "fast")
    with pytest.raises(ValueError, match="LEAPCAST_MALLOC='fast'"):
        tune_malloc()
    tune_malloc.cache_clear()
