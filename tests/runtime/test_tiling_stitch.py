"""Stitcher parity with the reference's average_tiles, and plan -> identity engine -> stitch
round trips for many image shapes (with and without augmentation)."""

from __future__ import annotations

import numpy as np
import pytest
from cellpose import transforms as ref_transforms
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cp3rt.runtime.tiles.augment import flip_tile, unflip_output
from cp3rt.runtime.tiles.blend import Stitcher
from cp3rt.runtime.tiles.grid import TileGrid, pad_yx
from cp3rt.runtime.tiles.infer import run_tiled
from cp3rt.runtime.tiles.options import TileOptions

# The blend is the same float64-product / float32-accumulator arithmetic: bit-identical when
# tiles are added in grid order; another order changes float32 rounding (a few ulps).
STITCH_ATOL = 0.0
STITCH_ANY_ORDER_RTOL = 1e-6
# Identity round trip: sum(x * m) / sum(m) in float32 is x up to a few float32 roundings.
ROUNDTRIP_RTOL = 4e-7


def _report(out: np.ndarray, ref: np.ndarray) -> str:
    diff = np.abs(out.astype(np.float64) - ref.astype(np.float64))
    idx = np.unravel_index(int(np.argmax(diff)), diff.shape)
    return (f"worst |diff|={diff[idx]:.3g} at {idx} (ours {out[idx]!r}, ref {ref[idx]!r}); "
            f"mismatch rate {(diff > 0).mean():.4%}")


@pytest.mark.parametrize("shape", [(516, 716), (240, 464), (1024, 1024), (48, 3024)])
def test_stitcher_matches_average_tiles(shape) -> None:
    grid = TileGrid.plan(shape)
    rng = np.random.default_rng(sum(shape))
    y = (rng.standard_normal((len(grid), 3, *grid.tile_shape)) * 5).astype(np.float32)
    ysub = [[t.y0, t.y0 + t.h] for t in grid.tiles]
    xsub = [[t.x0, t.x0 + t.w] for t in grid.tiles]
    ref = ref_transforms.average_tiles(y.copy(), ysub, xsub, *shape)
    stitcher = Stitcher(grid, 3)
    for k in range(len(grid)):
        stitcher.add(k, y[k])
    out = stitcher.result()
    assert out.dtype == np.float32 and out.shape == ref.shape
    assert np.abs(out - ref).max() <= STITCH_ATOL, _report(out, ref)
    backwards = Stitcher(grid, 3)
    for k in reversed(range(len(grid))):
        backwards.add(k, y[k])
    out = backwards.result()
    assert np.abs(out - ref).max() <= STITCH_ANY_ORDER_RTOL * np.abs(ref).max(), _report(out, ref)


def test_single_tile_is_returned_unchanged() -> None:
    grid = TileGrid.plan((48, 96))
    y = np.random.default_rng(0).standard_normal((2, 48, 96)).astype(np.float32)
    stitcher = Stitcher(grid, 2)
    stitcher.add(0, y)
    np.testing.assert_array_equal(stitcher.result(), y)


def test_stitcher_refuses_missing_duplicate_and_misshapen_tiles() -> None:
    grid = TileGrid.plan((300, 300))
    stitcher = Stitcher(grid, 1)
    tile = np.zeros((1, *grid.tile_shape), np.float32)
    stitcher.add(0, tile)
    with pytest.raises(ValueError, match="twice"):
        stitcher.add(0, tile)
    with pytest.raises(ValueError, match="shape"):
        stitcher.add(1, tile[:, :10])
    with pytest.raises(ValueError, match="never added"):
        stitcher.result()


def _identity(batch: np.ndarray):
    return batch.copy(), None


def _assert_roundtrip(shape: tuple[int, int], nchan: int, augment: bool) -> None:
    rng = np.random.default_rng(shape[0] * 7919 + shape[1])
    img = (rng.random((nchan, *shape)) + 0.5).astype(np.float32)
    out, style = run_tiled(img, _identity, nout=nchan, tiles=TileOptions(augment=augment))
    assert out.shape == img.shape and out.dtype == np.float32 and style is None
    rel = np.abs(out - img) / np.abs(img)
    assert rel.max() <= ROUNDTRIP_RTOL, _report(out, img)


@pytest.mark.parametrize("augment", [False, True])
@pytest.mark.parametrize("shape", [(1, 1), (5, 5), (208, 208), (209, 209), (224, 224),
                                   (100, 120), (230, 57), (3000, 200), (31, 1000)])
def test_identity_roundtrip_named_shapes(shape, augment: bool) -> None:
    _assert_roundtrip(shape, 2, augment)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ly=st.integers(1, 700), lx=st.integers(1, 700), nchan=st.sampled_from([1, 2]),
       augment=st.booleans())
def test_identity_roundtrip_any_shape(ly: int, lx: int, nchan: int, augment: bool) -> None:
    _assert_roundtrip((ly, lx), nchan, augment)


@settings(max_examples=25, deadline=None)
@given(ly=st.integers(1, 500), lx=st.integers(1, 500))
def test_flow_equivariant_engine_roundtrip_with_augment(ly: int, lx: int) -> None:
    """A 3-output engine that is honest about flips (its flows change sign when the tile is
    mirrored) must give the same stitched result with augmentation as a grid without flips."""
    rng = np.random.default_rng(ly * 1000 + lx)
    img = rng.random((1, ly, lx)).astype(np.float32)

    def field(batch: np.ndarray):
        # (-d/dy, -d/dx, value) by central differences inside the tile, 0 on its border rows/cols.
        v = batch[:, 0]
        dy = np.zeros_like(v)
        dx = np.zeros_like(v)
        dy[:, 1:-1] = v[:, 2:] - v[:, :-2]
        dx[:, :, 1:-1] = v[:, :, 2:] - v[:, :, :-2]
        return np.stack([dy, dx, v], axis=1), None

    out, _ = run_tiled(img, field, nout=3, tiles=TileOptions(augment=True))
    # The same tiles without mirroring, stitched directly.
    top, bottom, left, right = pad_yx(ly, lx)
    grid = TileGrid.plan((ly + top + bottom, lx + left + right), augment=True)
    canvas = np.pad(img, ((0, 0), (top, bottom + grid.canvas_shape[0] - grid.image_shape[0]),
                          (left, right + grid.canvas_shape[1] - grid.image_shape[1])))
    stitcher = Stitcher(grid, 3)
    for k, tile in enumerate(grid.tiles):
        plain = canvas[(slice(None), *tile.region)][np.newaxis]
        y, _ = field(plain)
        stitcher.add(k, y[0])
    ref = stitcher.result()[:, top : top + ly, left : left + lx]
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-6, err_msg=_report(out, ref))


def test_flip_and_unflip_are_inverse_for_one_output_nets() -> None:
    y = np.random.default_rng(1).standard_normal((1, 6, 5)).astype(np.float32)
    for fy in (False, True):
        for fx in (False, True):
            np.testing.assert_array_equal(unflip_output(flip_tile(y, fy, fx), fy, fx), y)


def _numpy_blend_add(acc: np.ndarray, y: np.ndarray, mask: np.ndarray, y0: int, x0: int) -> None:
    """Reference version of ``blend_add``: numpy's float64 product into a float32 accumulator."""
    _, h, w = y.shape
    acc[:, y0 : y0 + h, x0 : x0 + w] += y.astype(np.float32) * mask


def _numpy_blend_ratio(acc: np.ndarray, weights: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    y0, y1, x0, x1 = box
    return (acc / weights).astype(np.float32)[:, y0:y1, x0:x1]


@given(seed=st.integers(0, 2**31 - 1), h=st.integers(1, 40), w=st.integers(1, 40),
       y0=st.integers(0, 30), x0=st.integers(0, 30))
@settings(max_examples=60, deadline=None)
def test_blend_kernels_equal_their_numpy_versions_bit_for_bit(seed, h, w, y0, x0) -> None:  # noqa: ANN001
    from cp3rt.runtime.tiles._blend_kernels import blend_add, blend_ratio

    rng = np.random.default_rng(seed)
    shape = (y0 + h + 5, x0 + w + 3)
    acc = (rng.standard_normal((3, *shape)) * 7).astype(np.float32)
    y = (rng.standard_normal((3, h, w)) * 5).astype(np.float32)
    mask = rng.uniform(0.001, 1.0, (h, w))
    want = acc.copy()
    _numpy_blend_add(want, y, mask, y0, x0)
    blend_add(acc, y, mask, y0, x0)
    np.testing.assert_array_equal(acc, want)
    weights = rng.uniform(0.01, 2.0, shape)
    box = (y0, y0 + h, x0, x0 + w)
    np.testing.assert_array_equal(blend_ratio(acc, weights, *box), _numpy_blend_ratio(acc, weights, box))


def test_result_box_is_the_crop_of_the_whole_result() -> None:
    grid = TileGrid.plan((300, 500))
    y = np.random.default_rng(5).standard_normal((len(grid), 3, *grid.tile_shape)).astype(np.float32)
    stitcher = Stitcher(grid, 3)
    for k in range(len(grid)):
        stitcher.add(k, y[k])
    np.testing.assert_array_equal(stitcher.result((7, 290, 11, 480)), stitcher.result()[:, 7:290, 11:480])
    with pytest.raises(ValueError, match="not inside the image"):
        stitcher.result((0, 301, 0, 10))
