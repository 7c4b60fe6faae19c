"""Every dynamics kernel against its slow, obvious twin in ``naive.py`` on small inputs.

This module is also re-run with NUMBA_DISABLE_JIT=1 (test_dynamics_nojit.py), so the kernels'
Python semantics are checked too; keep inputs small. No reference oracle here.
"""

from __future__ import annotations

import os
import types

import numpy as np
import pytest

from cp3rt.runtime.dynamics import (
    fill_holes_and_remove_small_masks,
    flow_error,
    follow_flows,
    get_masks,
    masks_to_flows,
    remove_bad_flow_masks,
    resize_nearest,
)
from cp3rt.runtime.dynamics._prepare import prepare

from . import naive

# Tolerances. The kernels repeat the reference's float operations in the same order, so the
# flows and end points are expected to be bit-identical; the flow errors are sums taken in the
# same order too, but numpy's mean may use pairwise summation, hence a tiny tolerance there.
FLOW_ATOL = 0.0
FLOW_ERROR_RTOL = 1e-12


def _report(name: str, got: np.ndarray, want: np.ndarray) -> str:
    diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
    worst = np.unravel_index(np.argmax(diff), diff.shape)
    return (f"{name}: worst element {worst}: got {got[worst]!r}, want {want[worst]!r}; "
            f"mismatch rate {np.mean(diff > 0):.3%}")


def blobs(shape: tuple[int, int], n: int, seed: int, rmax: int = 5) -> np.ndarray:
    """Random overlapping discs and rectangles with non-consecutive labels."""
    rng = np.random.default_rng(seed)
    lab = np.zeros(shape, np.int32)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    for k in range(n):
        value = int(rng.integers(1, 3 * n))  # gaps and repeats (-> disconnected labels)
        cy, cx = rng.integers(0, shape[0]), rng.integers(0, shape[1])
        r = rng.integers(1, rmax + 1)
        if k % 3 == 0:
            lab[max(0, cy - r):cy + r, max(0, cx - 1):cx + r + 2] = value
        else:
            lab[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = value
    lab[rng.integers(0, shape[0]), rng.integers(0, shape[1])] = 3 * n + 1  # a single pixel
    return lab


def test_jit_mode_matches_environment():
    """Guards the NUMBA_DISABLE_JIT re-run: there the kernels must be plain Python functions."""
    from cp3rt.runtime.dynamics._euler import _follow_bilinear

    disabled = os.environ.get("NUMBA_DISABLE_JIT", "0") == "1"
    assert isinstance(_follow_bilinear.dispatcher, types.FunctionType) == disabled  # a parallel_kernel


# ---------------------------------------------------------------- masks -> flows (§4.1)

def test_masks_to_flows_appendix_a_vector():
    masks = np.zeros((6, 8), np.uint16)
    masks[1:4, 1:6] = 1
    masks[4, 6] = 2
    mu = masks_to_flows(masks)
    top = [0.444606, 0.843911, 1.0, 0.843911, 0.444606]
    xrow = [0.895726, 0.536483, 0.0, -0.536483, -0.895726]
    np.testing.assert_allclose(mu[0, 1, 1:6], top, atol=5e-7)
    np.testing.assert_allclose(mu[0, 2, 1:6], 0.0, atol=5e-7)
    np.testing.assert_allclose(mu[0, 3, 1:6], -np.array(top), atol=5e-7)
    np.testing.assert_allclose(mu[1, 1, 1:6], xrow, atol=5e-7)
    np.testing.assert_allclose(mu[1, 2, 1:6], [1, 1, 0, -1, -1], atol=5e-7)
    np.testing.assert_allclose(mu[1, 3, 1:6], xrow, atol=5e-7)
    assert mu[:, 4, 6].tolist() == [0.0, 0.0]
    assert mu.dtype == np.float64 and not mu[:, masks == 0].any()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_masks_to_flows_matches_naive(seed):
    masks = blobs((28, 33), 7, seed)
    got, want = masks_to_flows(masks), naive.masks_to_flows(masks)
    assert np.abs(got - want).max() <= FLOW_ATOL, _report("flows", got, want)


def test_masks_to_flows_fixed_niter_and_empty():
    masks = blobs((20, 20), 4, 5)
    got, want = masks_to_flows(masks, niter=7), naive.masks_to_flows(masks, niter=7)
    assert np.abs(got - want).max() <= FLOW_ATOL, _report("flows niter=7", got, want)
    assert not masks_to_flows(np.zeros((5, 6), np.uint16)).any()


# ---------------------------------------------------------------- Euler integration (§4.3)

def _field(seed: int, shape=(24, 26)) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """A flow field like the dynamics integrate: unit flows of blobs plus noise, masked."""
    rng = np.random.default_rng(seed)
    masks = blobs(shape, 6, seed, rmax=6)
    dP = (5 * naive.masks_to_flows(masks) + rng.normal(0, 0.4, (2, *shape))).astype(np.float32)
    fg = masks > 0
    return (dP * fg / np.float32(5)).astype(np.float32), np.nonzero(fg)


@pytest.mark.parametrize("interp", [True, False])
@pytest.mark.parametrize("niter", [0, 1, 37, 120])
def test_follow_flows_bit_identical_to_naive(interp, niter):
    # 120 steps: most trajectories end in cycles, which the kernel shortcuts.
    field, inds = _field(niter + int(interp))
    got = follow_flows(field, inds, niter, interp)
    want = naive.follow_flows(field, inds, niter, interp)
    assert got.dtype == np.float32
    assert np.array_equal(got, want), _report("end points", got, want)


def test_follow_flows_clamps_at_the_border():
    field = np.zeros((2, 5, 6), np.float32)
    field[0] = -0.75
    field[1] = 2.5
    inds = (np.array([0, 4, 2]), np.array([0, 5, 3]))
    for interp in (True, False):
        got = follow_flows(field, inds, 9, interp)
        assert np.array_equal(got, naive.follow_flows(field, inds, 9, interp))
        assert got[0].min() == 0 and got[1].max() == 5


def _cycle_field() -> tuple[np.ndarray, dict[tuple[int, int], tuple[int, int]]]:
    """Integer flows at integer positions keep trajectories on the grid (bilinear weights 1/0),
    giving exact cycles: a 4-cycle, a 3-cycle and a 5-cycle, each with a lead-in tail."""
    moves = {
        (2, 2): (0, 3), (2, 5): (3, 0), (5, 5): (0, -3), (5, 2): (-3, 0), (1, 2): (1, 0),
        (8, 8): (0, 2), (8, 10): (2, -1), (10, 9): (-2, -1),
        (12, 12): (-2, -2), (10, 10): (-2, -1), (8, 9): (0, -1),
        (14, 1): (0, 2), (14, 3): (2, 0), (16, 3): (0, 2), (16, 5): (-1, -2), (15, 3): (-1, -2),
    }
    field = np.zeros((2, 18, 18), np.float32)
    for (y, x), (dy, dx) in moves.items():
        field[:, y, x] = (dy, dx)
    return field, moves


@pytest.mark.parametrize("interp", [True, False])
def test_follow_flows_cycles_of_every_period(interp):
    # Periods 3, 4 and 5 go through the Brent anchor shortcut; the remainder of the steps
    # modulo the period must land exactly where the full simulation does.
    field, moves = _cycle_field()
    starts = np.array(sorted(moves)).T
    inds = (starts[0], starts[1])
    for niter in (1, 2, 3, 4, 5, 6, 7, 11, 50, 51, 52, 53, 54, 173):
        got = follow_flows(field, inds, niter, interp)
        want = naive.follow_flows(field, inds, niter, interp)
        assert np.array_equal(got, want), _report(f"end points niter={niter}", got, want)


def test_follow_flows_long_trajectories_without_cycles():
    # A rotating field: orbits do not close within the step budget (no shortcut possible).
    yy, xx = np.mgrid[:15, :15].astype(np.float32)
    field = np.stack([(xx - 7) * 0.9, -(yy - 7) * 0.9]).astype(np.float32)
    inds = np.nonzero(np.ones((15, 15), bool))
    for niter in (50, 51, 173):
        got = follow_flows(field, inds, niter, True)
        assert np.array_equal(got, naive.follow_flows(field, inds, niter, True))


# ---------------------------------------------------------------- seeds and labels (§4.4)

@pytest.mark.parametrize("seed", [0, 1])
def test_get_masks_matches_naive(seed):
    field, inds = _field(seed, shape=(30, 32))
    ends = naive.follow_flows(field, inds, 60).astype(np.int32)
    got = get_masks(ends, inds, (30, 32))
    want = naive.get_masks(ends, inds, (30, 32))
    assert got.max() > 0
    assert np.array_equal(got, want), _report("labels", got, want)


def test_get_masks_overlapping_seeds_and_big_masks():
    # Hand-made end points. Seeds A (30 points) and B (12) are 3 bins apart and joined by
    # bins with 3 points, so their regions overlap and A (higher count, painted later) takes
    # B's bins too. C and D tie (15 each): the later one in raster order wins. A bin with
    # exactly 10 points is no seed; its points stay unlabelled. E is one large label.
    rng = np.random.default_rng(3)
    shape = (40, 40)
    pts = [(5, 5)] * 30 + [(5, 8)] * 12 + [(5, 6)] * 3 + [(5, 7)] * 3
    pts += [(20, 20)] * 15 + [(20, 24)] * 15 + [(20, 21)] * 3 + [(20, 22)] * 3 + [(20, 23)] * 3
    pts += [(12, 30)] * 10 + [(33, 10)] * 200
    pts = np.array(pts).T
    inds = np.unravel_index(np.sort(rng.permutation(shape[0] * shape[1])[: pts.shape[1]]), shape)
    for frac in (0.4, 0.1):  # 0.1 * 1600 = 160 < 200 points of E: E is removed
        got = get_masks(pts, inds, shape, max_size_fraction=frac)
        want = naive.get_masks(pts, inds, shape, max_size_fraction=frac)
        assert np.array_equal(got, want), _report(f"labels frac={frac}", got, want)
        a = got[inds][0]
        assert (got[inds][:48] == a).all() and a > 0  # B swallowed by A
        d = got[inds][48 + 15]
        assert (got[inds][48:48 + 39] == d).all() and d > 0  # the C/D tie goes to D
        assert (got[inds][48 + 39:48 + 49] == 0).all()  # 10 points: no seed
        assert (got[inds][-200:] > 0).all() == (frac == 0.4)
        assert got.max() == (3 if frac == 0.4 else 2)
    # Scrambled pixel order gives the same image (labels follow raster order, not list order).
    perm = rng.permutation(pts.shape[1])
    scrambled = get_masks(pts[:, perm], (inds[0][perm], inds[1][perm]), shape)
    assert np.array_equal(scrambled, get_masks(pts, inds, shape))
    assert get_masks(np.zeros((2, 0), np.int32), (np.zeros(0, int),) * 2, shape).max() == 0


# ---------------------------------------------------------------- flow-error QC (§4.5)

def test_flow_error_matches_naive_and_keeps_gaps():
    masks = blobs((26, 30), 6, 11)
    rng = np.random.default_rng(0)
    dP = (5 * naive.masks_to_flows(masks) + rng.normal(0, 2.0, (2, 26, 30))).astype(np.float32)
    got, want = flow_error(masks, dP), naive.flow_error(masks, dP)
    assert got.shape == (masks.max(),)
    assert np.array_equal(np.isnan(got), np.isnan(want))  # absent labels -> NaN
    ok = ~np.isnan(want)
    np.testing.assert_allclose(got[ok], want[ok], rtol=FLOW_ERROR_RTOL)
    threshold = float(np.median(want[ok]))
    cleaned = remove_bad_flow_masks(masks, dP, threshold)
    bad = np.nonzero(want > threshold)[0] + 1
    assert np.array_equal(cleaned, np.where(np.isin(masks, bad), 0, masks))
    assert np.array_equal(remove_bad_flow_masks(masks, dP, 0), masks)


# ---------------------------------------------------------------- clean-up (§4.7)

def test_fill_holes_appendix_a_bug_vector():
    masks = np.zeros((40, 40), np.uint16)
    masks[0:10, 0:10] = 1
    masks[0:10, 15:25] = 2
    masks[20:30, 0:10] = 4
    masks[30:32, 30:32] = 5
    buggy = fill_holes_and_remove_small_masks(masks, 15, reference_bugs=True)
    assert sorted(np.unique(buggy)) == [0, 1, 2]  # label 4 (100 px) wrongly removed
    assert (buggy[20:30, 0:10] == 0).all()
    fixed = fill_holes_and_remove_small_masks(masks, 15)
    assert sorted(np.unique(fixed)) == [0, 1, 2, 3] and (fixed[20:30, 0:10] == 3).all()
    assert (fixed[30:32, 30:32] == 0).all() and fixed.dtype == np.uint16


def _holey(seed: int) -> np.ndarray:
    lab = blobs((36, 40), 8, seed, rmax=7)
    rng = np.random.default_rng(seed)
    for _ in range(12):  # punch holes, some of them filled with another label
        y, x = rng.integers(1, 35), rng.integers(1, 39)
        lab[y, x] = 0 if rng.random() < 0.6 else 99
    ring = np.zeros((9, 9), bool)
    ring[[0, -1], :] = ring[:, [0, -1]] = True
    lab[2:11, 2:11][ring] = 50  # a ring enclosing another label
    lab[5:8, 5:8] = 7
    return lab


@pytest.mark.parametrize("reference_bugs", [False, True])
@pytest.mark.parametrize("min_size", [-1, 0, 4, 15])
@pytest.mark.parametrize("seed", [0, 1])
def test_fill_holes_matches_naive(seed, min_size, reference_bugs):
    masks = _holey(seed)
    got = fill_holes_and_remove_small_masks(masks, min_size, reference_bugs=reference_bugs)
    want = naive.fill_holes_and_remove_small_masks(masks, min_size, reference_bugs)
    assert got.dtype == masks.dtype
    assert np.array_equal(got, want), _report("cleaned labels", got, want)


# ---------------------------------------------------------------- resize and first pass

@pytest.mark.parametrize("shape", [(7, 9), (20, 33), (13, 5), (1, 1), (40, 17)])
def test_resize_nearest_matches_naive(shape):
    masks = blobs((13, 17), 5, 2).astype(np.uint32) * 70_001  # labels beyond float32 precision
    got = resize_nearest(masks, shape)
    assert got.dtype == np.uint32
    assert np.array_equal(got, naive.resize_nearest(masks, shape))


def test_prepare_foreground_field_and_pixel_order():
    rng = np.random.default_rng(1)
    dP = rng.normal(0, 5, (2, 9, 11)).astype(np.float32)
    cellprob = rng.normal(0, 1, (9, 11)).astype(np.float32)
    dP[0, 1, 2], dP[1, 3, 3], dP[0, 4, 4] = np.nan, np.inf, -np.inf
    cellprob[2, 2], cellprob[5, 5], cellprob[6, 6] = np.nan, np.inf, -np.inf
    flow5, field, ys, xs = prepare(dP, cellprob, np.float32(0.1))
    fg = np.isfinite(cellprob) & (cellprob > np.float32(0.1))
    clean = np.where(np.isfinite(dP), dP, 0).astype(np.float32) / np.float32(5)
    assert np.array_equal(flow5, clean)
    assert np.array_equal(field, np.where(fg, clean, 0))
    assert np.array_equal(ys, np.nonzero(fg)[0]) and np.array_equal(xs, np.nonzero(fg)[1])
