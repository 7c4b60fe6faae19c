"""Outlines, flow pictures and overlays against the reference (cellpose.utils.masks_to_outlines,
cellpose.plot.dx_to_circ)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from cellpose import plot as ref_plot
from cellpose import utils as ref_utils
from PIL import Image
from scipy import ndimage

from cp3rt.errors import ConfigError
from cp3rt.runtime.io import flows_to_rgb, masks_to_outlines, write_overlay_png

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
GT_FILES = sorted((DATA).glob("*/masks/*.tif"))[::9]


def assert_same(name, got, want):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, f"{name}: {got.shape} != {want.shape}"
    bad = got != want
    if bad.any():
        worst = tuple(int(i) for i in np.argwhere(bad)[0])
        pytest.fail(f"{name}: mismatch rate {bad.mean():.4%}; first at {worst}: got "
                    f"{got[worst]!r} want {want[worst]!r}")


@pytest.mark.parametrize("path", GT_FILES, ids=lambda p: f"{p.parent.parent.name}/{p.stem}")
def test_outlines_match_reference_on_real_masks(path):
    m = tifffile.imread(path)
    assert_same(path.name, masks_to_outlines(m), ref_utils.masks_to_outlines(m))


def test_outlines_match_reference_on_hard_shapes():
    rng = np.random.default_rng(1)
    for it in range(120):
        shape = tuple(rng.integers(5, 40, size=2))
        k = int(rng.integers(1, 6))
        if it % 3 == 0:    # blobs with holes and islands
            m = ndimage.median_filter(rng.integers(0, k + 1, size=shape), 3)
        elif it % 3 == 1:  # one label full of holes, thin parts and diagonal contacts
            m = (rng.random(shape) < 0.6).astype(np.int64) * int(rng.integers(1, 4))
        else:              # salt and pepper of several labels
            m = rng.integers(0, k + 1, size=shape)
        assert_same(f"case {it}", masks_to_outlines(m), ref_utils.masks_to_outlines(m))


def test_outlines_nested_and_3d():
    m = np.zeros((20, 20), np.uint16)
    m[2:18, 2:18] = 1
    m[6:14, 6:14] = 2  # label 1 has a hole filled by label 2: no inner outline for 1
    out = masks_to_outlines(m)
    assert not out[5, 8] and out[6, 8] and out[2, 8]
    assert_same("nested", out, ref_utils.masks_to_outlines(m))
    stack = np.stack([m, np.roll(m, 3, axis=1), np.zeros_like(m)])
    assert_same("3d", masks_to_outlines(stack), ref_utils.masks_to_outlines(stack))
    with pytest.raises(ConfigError, match="dimensions"):
        masks_to_outlines(np.zeros(5, int))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(2, 37, 41), (3, 4, 9, 11)])
def test_flows_to_rgb_matches_reference(dtype, shape):
    dp = (np.random.default_rng(len(shape)).normal(size=shape) * 3).astype(dtype)
    assert_same("rgb", flows_to_rgb(dp), ref_plot.dx_to_circ(dp))
    flat = np.zeros((2, 8, 8), dtype)  # zero magnitude: range below 1e-3 -> black
    assert_same("flat", flows_to_rgb(flat), ref_plot.dx_to_circ(flat))
    with pytest.raises(ConfigError, match="dP"):
        flows_to_rgb(np.zeros((1, 4, 4)))


@pytest.mark.parametrize("layout", ["yx", "yxc", "cyx", "yx4"])
def test_overlay_png(tmp_path, layout):
    rng = np.random.default_rng(0)
    img = rng.random((30, 40)).astype(np.float32) * 100
    m = np.zeros((30, 40), np.uint16)
    m[5:15, 5:20] = 1
    m[18:28, 22:35] = 2
    image = {"yx": img, "yxc": np.stack([img, img], -1), "cyx": np.stack([img, img]),
             "yx4": np.stack([img, img, np.zeros_like(img), img], -1)}[layout]
    path = write_overlay_png(tmp_path / "o.png", image, m, color=(255, 0, 0))
    rgb = np.asarray(Image.open(path))
    assert rgb.shape == (30, 40, 3) and rgb.dtype == np.uint8
    outline = ref_utils.masks_to_outlines(m)
    np.testing.assert_array_equal(rgb[outline], [[255, 0, 0]] * int(outline.sum()))
    lo, hi = np.percentile(img, [1, 99])
    grey = (np.clip((img - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)
    np.testing.assert_allclose(rgb[~outline][:, 0].astype(int), grey[~outline], atol=1)
    if layout == "yx":
        np.testing.assert_array_equal(rgb[~outline][:, 1], rgb[~outline][:, 2])
    else:  # two channels (or a zero third one) -> red and green, blue empty
        np.testing.assert_array_equal(rgb[~outline][:, 2], 0)


def test_overlay_errors(tmp_path):
    with pytest.raises(ConfigError, match="same height and width"):
        write_overlay_png(tmp_path / "o.png", np.zeros((5, 6)), np.zeros((5, 5), np.uint16))
    with pytest.raises(ConfigError, match="same height and width"):
        write_overlay_png(tmp_path / "o.png", np.zeros((2, 5, 5, 1)), np.zeros((5, 5), np.uint16))
    with pytest.raises(ConfigError, match="color"):
        write_overlay_png(tmp_path / "o.png", np.zeros((5, 5)), np.zeros((5, 5), np.uint16),
                          color=(300, 0, 0))
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("components", [3, 2])  # do_3D (dZ, dY, dX); stitched planes (dY, dX)
def test_a_volumes_flow_picture_is_each_planes_dy_dx(tmp_path, components):
    from cp3rt.runtime.io.render import write_flow_picture_tif

    rng = np.random.default_rng(components)
    dP = rng.normal(size=(components, 4, 20, 24)).astype(np.float32)
    path = write_flow_picture_tif(tmp_path / "v_flows.tif", dP)
    pic = tifffile.imread(path)
    assert pic.shape == (4, 20, 24, 3) and pic.dtype == np.uint8
    for z in range(4):
        np.testing.assert_array_equal(pic[z], flows_to_rgb(dP[-2:, z]))
