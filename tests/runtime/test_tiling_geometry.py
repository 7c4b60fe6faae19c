"""Tile geometry: Appendix A conformance vectors and parity with the reference's get_pad_yx,
make_tiles and _taper_mask."""

from __future__ import annotations

import numpy as np
import pytest
from cellpose import transforms as ref_transforms

from cp3rt.errors import ConfigError
from cp3rt.runtime.tiles.grid import Tile, TileGrid, pad_yx, taper_mask

TAPER_ATOL = 0.0  # same float64 formula: bit-identical
APPENDIX_TAPER_ATOL = 5e-8  # the spec prints 7 decimals


@pytest.mark.parametrize(("length", "pads", "padded"), [
    (1, (15, 16), 32), (16, (8, 8), 32), (17, (15, 16), 48), (100, (14, 14), 128),
    (208, (8, 8), 224), (209, (15, 16), 240), (224, (8, 8), 240), (225, (15, 16), 256),
])
def test_pad_appendix_a(length: int, pads: tuple[int, int], padded: int) -> None:
    got = pad_yx(length, length)
    assert got == (*pads, *pads)
    assert length + got[0] + got[1] == padded


def test_pad_matches_reference_for_all_small_sizes() -> None:
    for ly in range(1, 700, 7):
        for lx in (1, 2, 15, 16, 17, 31, 33, 224, 225, 1000, 3001):
            ref = tuple(int(v) for v in ref_transforms.get_pad_yx(ly, lx))
            assert pad_yx(ly, lx) == ref, (ly, lx)


def test_tile_starts_appendix_a() -> None:
    grid = TileGrid.plan((516, 716))
    assert grid.ystarts == (0, 146, 292)
    assert grid.xstarts == (0, 164, 328, 492)
    assert grid.tile_shape == (224, 224) and len(grid) == 12
    assert grid.tiles[1] == Tile(0, 164, 224, 224)  # row-major


def _ref_tiles(shape, bsize, overlap, augment):
    img = np.random.default_rng(0).random((2, *shape)).astype(np.float32)
    IMG, ysub, xsub, ly, lx = ref_transforms.make_tiles(img, bsize=bsize, augment=augment,
                                                        tile_overlap=overlap)
    return img, IMG.reshape(-1, *IMG.shape[-3:]), ysub, xsub, (ly, lx)


SHAPES = [(32, 32), (48, 240), (240, 240), (256, 1040), (1024, 1024), (224, 208), (3024, 224),
          (464, 32)]
# augment ignores tile_overlap, so one overlap value covers it.
PLAN_CASES = [(s, o, False) for s in SHAPES for o in (0.05, 0.1, 0.27, 0.5)] + [
    (s, 0.1, True) for s in SHAPES
]


@pytest.mark.parametrize(("shape", "overlap", "augment"), PLAN_CASES)
def test_plan_matches_make_tiles(shape, overlap: float, augment: bool) -> None:
    img, ref_tiles, ysub, xsub, canvas = _ref_tiles(shape, 224, overlap, augment)
    grid = TileGrid.plan(shape, 224, overlap, augment)
    assert grid.canvas_shape == tuple(int(v) for v in canvas)
    assert [(t.y0, t.y0 + t.h) for t in grid.tiles] == [tuple(int(v) for v in s) for s in ysub]
    assert [(t.x0, t.x0 + t.w) for t in grid.tiles] == [tuple(int(v) for v in s) for s in xsub]
    extra = ((0, 0), (0, grid.canvas_shape[0] - shape[0]), (0, grid.canvas_shape[1] - shape[1]))
    canvas_img = np.pad(img, extra)
    for k in range(len(grid)):  # same pixels, same mirroring
        np.testing.assert_array_equal(grid.cut(canvas_img, k), ref_tiles[k])


def test_plan_other_bsize() -> None:
    for bsize in (64, 256):
        _, _, ysub, xsub, _ = _ref_tiles((400, 144), bsize, 0.1, False)
        grid = TileGrid.plan((400, 144), bsize, 0.1)
        assert [t.y0 for t in grid.tiles] == [int(s[0]) for s in ysub]
        assert [t.x0 for t in grid.tiles] == [int(s[0]) for s in xsub]


def test_augment_flips_follow_grid_position() -> None:
    grid = TileGrid.plan((240, 240), augment=True)
    assert grid.ystarts == (0, 8, 16) and grid.xstarts == (0, 8, 16)  # ceil(2 * 240 / 224) = 3
    # (even row, odd col) upside down; (odd row, even col) left-right; (odd, odd) both.
    expected = {(0, 0): (False, False), (0, 1): (True, False), (1, 0): (False, True),
                (1, 1): (True, True), (2, 1): (True, False), (1, 2): (False, True)}
    for (j, i), flips in expected.items():
        tile = grid.tiles[j * 3 + i]
        assert (tile.flip_y, tile.flip_x) == flips, (j, i)
    small = TileGrid.plan((48, 64), augment=True)  # canvas extended to one bsize tile
    assert small.canvas_shape == (224, 224) and small.image_shape == (48, 64)
    assert len(small) == 4 and {(t.y0, t.x0) for t in small.tiles} == {(0, 0)}


def test_taper_appendix_a() -> None:
    m = taper_mask(224, 224)
    for got, want in ((m[0, 0], 0.0047801), (m[0, 112], 0.0691381), (m[20, 112], 0.5166579),
                      (m[112, 112], 0.9999899)):
        assert abs(got - want) <= APPENDIX_TAPER_ATOL
    assert abs(taper_mask(96, 160)[0, 0] - 0.8389081) <= APPENDIX_TAPER_ATOL


@pytest.mark.parametrize(("ly", "lx"), [(224, 224), (96, 160), (32, 32), (224, 48), (33, 17),
                                        (256, 256), (240, 100)])
def test_taper_matches_reference(ly: int, lx: int) -> None:
    ref = ref_transforms._taper_mask(ly=ly, lx=lx, sig=7.5)
    got = taper_mask(ly, lx)
    assert got.dtype == np.float64 and got.shape == (ly, lx)
    diff = np.abs(got - ref)
    worst = np.unravel_index(int(np.argmax(diff)), diff.shape)
    assert diff.max() <= TAPER_ATOL, (
        f"worst |diff|={diff[worst]:.3g} at {worst}; mismatch rate {(diff > 0).mean():.4%}")


def test_weights_sum_masks_in_tile_order() -> None:
    grid = TileGrid.plan((516, 716))
    expected = np.zeros((516, 716))
    for tile in grid.tiles:
        expected[tile.region] += taper_mask(224, 224)
    np.testing.assert_array_equal(grid.weights(), expected)
    assert grid.weights().min() > 0


@pytest.mark.parametrize("overlap", [0.0, 0.049, 0.51, 1.0, -0.1, float("nan"), "0.1", True])
def test_overlap_outside_range_is_refused(overlap) -> None:
    with pytest.raises(ConfigError, match="tile_overlap"):
        TileGrid.plan((300, 300), tile_overlap=overlap)


@pytest.mark.parametrize("bsize", [0, 16, 100, 225, 224.0, True])
def test_bad_bsize_is_refused(bsize) -> None:
    with pytest.raises(ConfigError, match="bsize"):
        TileGrid.plan((300, 300), bsize=bsize)


@pytest.mark.parametrize(("ly", "lx"), [(0, 5), (5, -1), (2.0, 3)])
def test_bad_pad_sizes_are_refused(ly, lx) -> None:
    with pytest.raises(ConfigError):
        pad_yx(ly, lx)
