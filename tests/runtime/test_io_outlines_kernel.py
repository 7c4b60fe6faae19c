"""The numba outer-contour kernel behind masks_to_outlines against an obvious slow version
(scipy hole filling per label). Re-run in a subprocess with NUMBA_DISABLE_JIT=1."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from cp3rt.runtime.io import masks_to_outlines

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ holds nojit_testutil

CROSS = ndimage.generate_binary_structure(2, 1)


def slow_outlines(masks: np.ndarray) -> np.ndarray:
    """A pixel is an outline pixel iff one of its 4 neighbours (or the outside of the image)
    is background of its label that is not enclosed by the label (holes excluded)."""
    out = np.zeros(masks.shape, bool)
    for label in np.unique(masks[masks > 0]):
        obj = np.pad(masks == label, 1)
        solid = ndimage.binary_fill_holes(obj, structure=CROSS)
        out |= (obj & ~ndimage.binary_erosion(solid, CROSS))[1:-1, 1:-1]
    return out


def cases():
    rng = np.random.default_rng(3)
    yield "single pixel", np.pad(np.ones((1, 1), int), 2)
    yield "full image", np.full((4, 5), 2)
    ring = np.ones((9, 9), int)
    ring[3:6, 3:6] = 0
    ring[4, 4] = 1  # island inside the hole: not an outer contour
    yield "ring with island", ring
    diag = np.zeros((6, 6), int)
    diag[1, 1] = diag[2, 2] = diag[3, 3] = 4  # 8-connected diagonal line, label 1-3 absent
    yield "diagonal", diag
    nested = np.zeros((12, 12), int)
    nested[1:11, 1:11] = 1
    nested[4:8, 4:8] = 2
    yield "nested", nested
    for it in range(25):
        shape = tuple(rng.integers(3, 30, size=2))
        m = rng.integers(0, int(rng.integers(1, 5)) + 1, size=shape)
        if it % 2:
            m = ndimage.median_filter(m, 3)
        yield f"random {it}", m


@pytest.mark.parametrize("name,masks", list(cases()), ids=lambda v: v if isinstance(v, str) else "")
def test_kernel_matches_slow(name, masks):
    got = masks_to_outlines(masks)
    want = slow_outlines(masks)
    bad = got != want
    assert not bad.any(), f"{name}: mismatch rate {bad.mean():.3%} at {np.argwhere(bad)[:3]}"


def test_dtypes_agree():
    m = ndimage.median_filter(np.random.default_rng(0).integers(0, 4, (20, 20)), 3)
    want = slow_outlines(m)
    for dtype in (np.uint8, np.uint16, np.int32, np.uint32, np.int64, np.uint64):
        np.testing.assert_array_equal(masks_to_outlines(m.astype(dtype)), want, err_msg=dtype)


def test_jit_state_is_as_requested():
    from cp3rt.runtime.io._outlines import outer_contours

    is_python = type(outer_contours).__name__ == "function"
    assert is_python == (os.environ.get("NUMBA_DISABLE_JIT") == "1")


def test_kernel_without_jit():
    from nojit_testutil import assert_pass_without_jit, jit_disabled

    if jit_disabled():
        pytest.fail("the no-JIT re-run must deselect this test")
    assert_pass_without_jit(__file__, select="not kernel_without_jit", timeout=300,
                            min_passed=len(list(cases())) + 2)
