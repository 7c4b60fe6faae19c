"""The numba label-overlap kernel against an obvious slow implementation.

The same tests run a second time in a subprocess with NUMBA_DISABLE_JIT=1, so the Python body
of the kernel is checked too (test_kernel_without_jit).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

from cp3rt.errors import InputError
from cp3rt.runtime.quality.metrics import label_overlap

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ holds nojit_testutil


def slow_label_overlap(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    table = np.zeros((int(x.max()) + 1, int(y.max()) + 1), dtype=np.int64)
    for a, b in zip(x.ravel().tolist(), y.ravel().tolist()):
        table[a, b] += 1
    return table


@pytest.mark.parametrize("shape,nx,ny,dtype", [
    ((7, 9), 3, 5, np.int32), ((1, 1), 1, 1, np.uint16), ((12, 5, 6), 8, 2, np.uint32),
    ((30, 31), 40, 40, np.int64), ((5, 5), 0, 3, np.uint8),
])
def test_kernel_matches_slow(shape, nx, ny, dtype):
    rng = np.random.default_rng(sum(shape) + nx)
    x = rng.integers(0, nx + 1, size=shape).astype(dtype)
    y = rng.integers(0, ny + 1, size=shape).astype(dtype)
    got = label_overlap(x, y)
    want = slow_label_overlap(x, y)
    assert got.shape == want.shape
    np.testing.assert_array_equal(got, want)
    assert got.sum() == x.size


def test_kernel_on_non_contiguous_and_bool():
    rng = np.random.default_rng(5)
    x = rng.integers(0, 4, size=(20, 30))[:, ::3]
    y = rng.random((20, 30))[:, ::3] > 0.5
    np.testing.assert_array_equal(label_overlap(x, y), slow_label_overlap(x, y.astype(int)))


def test_kernel_rejects_bad_labels():
    with pytest.raises(InputError, match="shape"):
        label_overlap(np.zeros((3, 3), int), np.zeros((3, 4), int))
    with pytest.raises(InputError, match="negative"):
        label_overlap(np.full((2, 2), -1), np.zeros((2, 2), int))
    with pytest.raises(InputError, match="non-integer"):
        label_overlap(np.full((2, 2), 0.5), np.zeros((2, 2), int))


def test_jit_state_is_as_requested():
    from cp3rt.runtime.quality.labels import _label_overlap_kernel

    # Inner run: the kernel must be the plain Python function; normal run: a numba dispatcher.
    is_python = type(_label_overlap_kernel).__name__ == "function"
    assert is_python == (os.environ.get("NUMBA_DISABLE_JIT") == "1")


def test_kernel_without_jit():
    from nojit_testutil import assert_pass_without_jit, jit_disabled

    if jit_disabled():
        pytest.fail("the no-JIT re-run must deselect this test")
    assert_pass_without_jit(__file__, select="not kernel_without_jit", timeout=300, min_passed=8)
