"""3-D dynamics kernels against the slow implementations in naive3d.py (small volumes).

Also run with NUMBA_DISABLE_JIT=1 by test_kernels3d_nojit.py, so everything here stays tiny.
"""

from __future__ import annotations

import numpy as np
import pytest

from cp3rt.errors import ConfigError, InputError
from cp3rt.runtime.dynamics import masks3d
from cp3rt.runtime.dynamics.integrate3d import follow_flows_3d
from . import naive3d
from .synth3d import ellipsoid_cells, net_outputs_3d

SHAPE = (8, 14, 12)


def _field(seed: int = 0, shape=SHAPE) -> tuple[np.ndarray, np.ndarray]:
    lab = ellipsoid_cells(shape, 4, seed=seed)
    dP, cellprob = net_outputs_3d(lab, seed=seed)
    fg = cellprob > 0
    return (dP * fg / np.float32(5)).astype(np.float32), np.stack(np.nonzero(fg))


def _report(a: np.ndarray, b: np.ndarray) -> str:
    d = np.abs(a - b)
    j = np.unravel_index(np.argmax(d), d.shape)
    return f"worst {j}: {a[j]} vs {b[j]}; mismatch rate {(d > 0).mean():.4f}"


@pytest.mark.parametrize("niter", [0, 1, 7])
def test_grid_sampling_matches_naive_bit_for_bit(niter):
    field, inds = _field(1)
    inds = inds[:, ::5]
    got = follow_flows_3d(field, inds, niter)
    want = naive3d.follow_grid(field, inds, niter)
    assert np.array_equal(got, want), _report(got, want)


@pytest.mark.parametrize("interp", [True, False])
def test_pixel_sampling_matches_naive(interp):
    field, inds = _field(2)
    inds = inds[:, ::5]
    got = follow_flows_3d(field, inds, 6, interp=interp, sampling="exact")
    want = naive3d.follow_pixel(field, inds, 6, interp)
    assert np.allclose(got, want, atol=1e-5), _report(got, want)


def test_cycle_shortcut_gives_the_full_iteration_result():
    # A field pointing at a sink makes every trajectory oscillate: the shortcut must land on
    # the same state as running every step.
    zz, yy, xx = np.indices((6, 7, 8)).astype(np.float32)
    field = np.stack([3.1 - zz, 2.6 - yy, 4.2 - xx]) * np.float32(0.9)
    inds = np.stack(np.nonzero(np.ones((6, 7, 8), bool)))[:, ::9]
    for niter in (30, 31):
        got = follow_flows_3d(field.astype(np.float32), inds, niter, sampling="exact")
        want = naive3d.follow_pixel(field.astype(np.float32), inds, niter, True)
        assert np.allclose(got, want, atol=1e-5), _report(got, want)


def test_get_masks_matches_naive():
    rng = np.random.default_rng(0)
    shape = (6, 9, 10)
    inds = np.stack(np.nonzero(np.ones(shape, bool)))
    # end points gathered around three sinks (one of them split between two bins)
    sinks = np.array([[1, 2, 2], [4, 6, 7], [2, 7, 3]])
    pick = rng.integers(0, 4, inds.shape[1])
    pts = np.where(pick < 3, sinks[np.minimum(pick, 2)].T, inds)
    pts = pts + (rng.random(pts.shape) < 0.1)
    got = masks3d.get_masks_3d(pts, inds, shape, 0.9)
    want = naive3d.get_masks(pts, inds, shape, 0.9)
    assert got.max() > 1 and np.array_equal(got, want), _report(got, want)


def test_get_masks_drops_big_masks_and_handles_no_seeds():
    shape = (4, 5, 6)
    inds = np.stack(np.nonzero(np.ones(shape, bool)))
    pts = np.zeros_like(inds) + 2  # everything converges to one bin: one mask, 100 % of voxels
    assert masks3d.get_masks_3d(pts, inds, shape, 0.4).max() == 0
    assert masks3d.get_masks_3d(pts, inds, shape, 1.0).max() == 1
    assert masks3d.get_masks_3d(inds[:, :5], inds[:, :5], shape).max() == 0  # <= 10 per bin


@pytest.mark.parametrize("min_size", [-1, 15])
def test_fill_holes_3d_matches_naive(min_size):
    lab = np.zeros((7, 9, 9), np.int32)
    lab[1:6, 1:8, 1:8] = 1
    lab[3, 4, 4] = 0                # enclosed background voxel -> filled
    lab[2:5, 3:6, 3:6][1, 1, 1] = 2  # an enclosed other label -> swallowed
    lab[0, 0:2, 0:2] = 3            # a 4-voxel mask -> removed by min_size
    lab[6, 7:9, 0:9] = 4            # 18 voxels, stays
    got = masks3d.fill_holes_3d(lab, min_size)
    want = naive3d.fill_holes_and_remove_small_masks(lab, min_size)
    assert np.array_equal(got, want), _report(got, want)


def test_resize_nearest_3d_uses_floor_index():
    lab = np.arange(2 * 3 * 4, dtype=np.int32).reshape(2, 3, 4)
    out = masks3d.resize_nearest_3d(lab, (5, 3, 8))
    zi = np.floor(np.arange(5) * 2 / 5).astype(int)
    xi = np.floor(np.arange(8) * 4 / 8).astype(int)
    assert np.array_equal(out, lab[zi][:, :, xi])


def test_compute_masks_3d_end_to_end_against_naive_chain():
    lab = ellipsoid_cells((8, 16, 16), 3, seed=3)
    dP, cellprob = net_outputs_3d(lab, seed=3)
    got = masks3d.compute_masks_3d(dP, cellprob, niter=12, min_size=5, sampling="grid")
    fg = cellprob > 0
    inds = np.stack(np.nonzero(fg))
    ends = naive3d.follow_grid((dP * fg / np.float32(5)).astype(np.float32), inds, 12).astype(np.int32)
    want = naive3d.fill_holes_and_remove_small_masks(naive3d.get_masks(ends, inds, lab.shape), 5)
    assert got.dtype == np.uint16 and np.array_equal(got, want), _report(got, want)


def test_compute_masks_3d_samples_exactly_unless_the_reference_is_asked_for():
    """deviations.md row 11: default "exact"; reference_bugs=True brings back "grid"."""
    lab = ellipsoid_cells((8, 16, 16), 3, seed=3)
    dP, cellprob = net_outputs_3d(lab, seed=3)

    def run(**kw):
        return masks3d.compute_masks_3d(dP, cellprob, niter=12, min_size=5, **kw)

    assert np.array_equal(run(), run(sampling="exact"))
    assert np.array_equal(run(reference_bugs=True), run(reference_bugs=True, sampling="grid"))


def test_compute_masks_3d_rejects_bad_input():
    with pytest.raises(InputError, match="3-D dynamics"):
        masks3d.compute_masks_3d(np.zeros((2, 4, 4, 4)), np.zeros((4, 4, 4)))
    with pytest.raises(ConfigError, match="sampling"):
        masks3d.compute_masks_3d(np.zeros((3, 4, 4, 4)), np.zeros((4, 4, 4)), sampling="bad")
    empty = masks3d.compute_masks_3d(np.zeros((3, 4, 4, 4)), -np.ones((4, 4, 4)), output_shape=(5, 4, 4))
    assert empty.shape == (5, 4, 4) and empty.max() == 0
