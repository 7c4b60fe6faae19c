"""The GPU-resident path's normalisation, resize and tiles against the host path, on CPU tensors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cp3rt.runtime.prep.normalize import normalize_image
from cp3rt.runtime.prep.resize import resize_bilinear
from cp3rt.runtime.prep.resize_device import RESIZE_TOLERANCE, resize_on_device
from cp3rt.runtime.tiles.blend import Stitcher
from cp3rt.runtime.tiles.grid import TileGrid, pad_yx
from cp3rt.runtime.prep.normalize_device import normalize_on_device
from cp3rt.runtime.tiles.on_device import blend_tiles, cut_tiles, pad_canvas


def _image(seed: int, shape: tuple[int, ...], kind: str) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "gamma":
        return rng.gamma(2.0, 40.0, shape).astype(np.float32)
    if kind == "ties":  # integer camera counts: many equal values, both lerp branches
        return np.round(rng.gamma(1.5, 3.0, shape)).astype(np.float32)
    return rng.normal(0, 1e-5, shape).astype(np.float32)  # range below MIN_PERCENTILE_RANGE


@pytest.mark.parametrize("kind", ["gamma", "ties", "tiny"])
@pytest.mark.parametrize("shape", [(1, 64, 80), (2, 300, 257), (3, 17, 400)])
def test_normalisation_is_bit_identical_to_the_host(kind, shape) -> None:  # noqa: ANN001
    img = _image(sum(shape), shape, kind)
    img[-1, :5, :5] = img[-1, 5, 5]  # ties at one value
    if shape[0] > 1:
        img[0] = 7.0  # a constant channel stays as it is
    import warnings

    with warnings.catch_warnings(record=True) as host:  # "tiny" channels are zeroed with a warning
        warnings.simplefilter("always")
        want = normalize_image(img)
    with warnings.catch_warnings(record=True) as device:
        warnings.simplefilter("always")
        got = normalize_on_device(torch.from_numpy(img)).numpy()
    np.testing.assert_array_equal(got, want)
    assert [str(w.message) for w in device] == [str(w.message) for w in host]
    assert bool(host) == (kind == "tiny")


@pytest.mark.parametrize("shape", [(100, 120), (224, 224), (500, 333), (30, 700)])
@pytest.mark.parametrize("overlap", [0.1, 0.5])
def test_tiles_and_blend_are_bit_identical_to_the_host(shape, overlap) -> None:  # noqa: ANN001
    rng = np.random.default_rng(shape[0])
    img = rng.normal(size=(2, *shape)).astype(np.float32)
    canvas, grid, (top, bottom, left, right) = pad_canvas(torch.from_numpy(img), 224, overlap)
    want_pad = pad_yx(*shape)
    assert (top, bottom, left, right) == want_pad
    host_canvas = np.pad(img, ((0, 0), (top, bottom), (left, right)))
    tiles = cut_tiles(canvas, grid)
    for k in range(len(grid)):
        np.testing.assert_array_equal(tiles[k].numpy(), grid.cut(host_canvas, k))
    outputs = rng.normal(size=(len(grid), 3, *grid.tile_shape)).astype(np.float32)
    stitcher = Stitcher(grid, 3)
    for k in range(len(grid)):
        stitcher.add(k, outputs[k])
    box = (top, top + shape[0], left, left + shape[1])
    got = blend_tiles(torch.from_numpy(outputs), grid, box).numpy()
    np.testing.assert_array_equal(got, stitcher.result(box))


@pytest.mark.parametrize("nchan", [1, 2, 3])
@pytest.mark.parametrize(("src", "dst"), [((100, 120), (141, 170)), ((300, 257), (150, 128)),
                                          ((128, 96), (64, 48)), ((64, 64), (224, 224)), ((97, 61), (20, 300))])
def test_device_resize_computes_the_hosts_function(nchan, src, dst) -> None:  # noqa: ANN001
    img = np.random.default_rng(sum(src)).normal(size=(nchan, *src)).astype(np.float32)
    want = resize_bilinear(img, dst)
    got = resize_on_device(torch.from_numpy(img), dst).numpy()
    span = float(img.max() - img.min())
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= RESIZE_TOLERANCE * span, np.abs(got - want).max() / span


def test_a_low_range_channel_is_zeroed_with_the_hosts_warning() -> None:
    """Issue 13 item 8 on the GPU-resident path: never silently zero."""
    from cp3rt.errors import LowRangeWarning

    img = np.random.default_rng(0).random((2, 40, 50)).astype(np.float32)
    img[1] *= 1e-6  # a 1-99 % range under the reference's 1e-3 cut
    with pytest.warns(LowRangeWarning) as host:
        want = normalize_image(img)
    with pytest.warns(LowRangeWarning) as device:
        got = normalize_on_device(torch.from_numpy(img)).numpy()
    np.testing.assert_array_equal(got, want)
    assert not got[1].any()
    assert [str(w.message) for w in device] == [str(w.message) for w in host]
