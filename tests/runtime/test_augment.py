"""Tile flips for test-time augmentation vs the reference's make_tiles / unaugment_tiles."""

from __future__ import annotations

import numpy as np
from cellpose import transforms as ref_transforms

from cp3rt.runtime.tiles.augment import flip_tile, tile_flips, unflip_output


def test_flip_rule_table() -> None:
    assert tile_flips(0, 0) == (False, False)
    assert tile_flips(0, 1) == (True, False)   # even row, odd column: upside down
    assert tile_flips(1, 0) == (False, True)   # odd row, even column: left-right
    assert tile_flips(1, 1) == (True, True)
    assert tile_flips(4, 7) == (True, False) and tile_flips(3, 2) == (False, True)


def test_unflip_matches_unaugment_tiles() -> None:
    ny, nx = 3, 4
    rng = np.random.default_rng(0)
    y = rng.standard_normal((ny, nx, 3, 8, 6)).astype(np.float32)
    ref = ref_transforms.unaugment_tiles(y.copy())
    for j in range(ny):
        for i in range(nx):
            got = unflip_output(y[j, i], *tile_flips(j, i))
            np.testing.assert_array_equal(got, ref[j, i], err_msg=f"tile ({j}, {i})")


def test_flip_matches_make_tiles_mirroring() -> None:
    img = np.random.default_rng(1).random((2, 300, 300)).astype(np.float32)
    tiles, ysub, xsub, _, _ = ref_transforms.make_tiles(img, bsize=224, augment=True)
    for j in range(tiles.shape[0]):
        for i in range(tiles.shape[1]):
            k = j * tiles.shape[1] + i
            plain = img[:, ysub[k][0] : ysub[k][1], xsub[k][0] : xsub[k][1]]
            np.testing.assert_array_equal(flip_tile(plain, *tile_flips(j, i)), tiles[j, i])


def test_unflip_only_negates_flows_of_three_output_nets() -> None:
    y1 = np.arange(12, dtype=np.float32).reshape(1, 3, 4) + 1
    np.testing.assert_array_equal(unflip_output(y1, True, True), y1[:, ::-1, ::-1])
    y2 = np.stack([y1[0], -y1[0]])
    np.testing.assert_array_equal(unflip_output(y2, True, False), y2[:, ::-1, :])
    y3 = np.stack([y1[0], 2 * y1[0], 3 * y1[0]])
    out = unflip_output(y3, False, True)
    np.testing.assert_array_equal(out[0], y3[0, :, ::-1])
    np.testing.assert_array_equal(out[1], -y3[1, :, ::-1])
    np.testing.assert_array_equal(out[2], y3[2, :, ::-1])
    assert out.flags.c_contiguous and not np.shares_memory(out, y3)
