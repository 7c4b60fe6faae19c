"""_seg.npy files: identical content to the reference writer (cellpose.io.masks_flows_to_seg)
and readable the way the Cellpose GUI loader reads them."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import tifffile
from cellpose import io as ref_io
from cellpose import plot as ref_plot

from cp3rt.errors import ConfigError, InputError
from cp3rt.runtime.io import read_seg_npy, seg_dict, seg_npy_path, write_seg_npy

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
MASKS = DATA / "stardist_dsb2018_nuclei" / "masks" / "img2d.tif"


@dataclasses.dataclass
class FakeResult:  # the attributes write_seg_npy reads from cp3rt.runtime.result.Result
    masks: np.ndarray
    dP: np.ndarray
    cellprob: np.ndarray
    diameter: float
    restored: np.ndarray | None = None


def _flows_like_net(masks, shape, seed=0):
    rng = np.random.default_rng(seed)
    dp = (rng.normal(size=(len(shape), *shape)) * 3).astype(np.float32)
    prob = (rng.normal(size=shape) * 4).astype(np.float32)
    return dp, prob


def _reference_seg(tmp_path, masks, dp, prob, diameter, channels=None, img_restore=None,
                   restore_type=None):
    image_file = str(tmp_path / "ref_image.tif")
    ref_io.masks_flows_to_seg(np.zeros(masks.shape), masks, [ref_plot.dx_to_circ(dp), dp, prob],
                              image_file, diams=diameter, channels=channels,
                              imgs_restore=img_restore, restore_type=restore_type)
    return np.load(tmp_path / "ref_image_seg.npy", allow_pickle=True).item(), image_file


def assert_same_seg(got: dict, want: dict) -> None:
    assert sorted(got) == sorted(want)
    for key in want:
        if key == "flows":
            assert len(got[key]) == len(want[key])
            for i, (g, w) in enumerate(zip(got[key], want[key])):
                g, w = np.asarray(g), np.asarray(w)
                assert g.shape == w.shape and g.dtype == w.dtype, f"flows[{i}]"
                bad = g != w
                assert not bad.any(), f"flows[{i}]: mismatch rate {bad.mean():.4%}"
        elif isinstance(want[key], np.ndarray):
            assert got[key].dtype == want[key].dtype, key
            np.testing.assert_array_equal(got[key], want[key], err_msg=key)
        else:
            assert got[key] == want[key], key
            assert type(got[key]) is type(want[key]), key


def test_same_content_as_reference(tmp_path):
    masks = tifffile.imread(MASKS).astype(np.int32)
    dp, prob = _flows_like_net(masks, masks.shape)
    want, image_file = _reference_seg(tmp_path, masks, dp, prob, 17.0, channels=[2, 1])
    path = write_seg_npy(seg_npy_path(tmp_path / "mine.tif"),
                         FakeResult(masks, dp, prob, 17.0), image_path=image_file,
                         channels=[2, 1])
    assert path.name == "mine_seg.npy"
    assert_same_seg(read_seg_npy(path), want)


def test_low_resolution_flows_are_resized_like_reference(tmp_path):
    # resample=False: flows stay at the net's size; pictures are resized (nearest) to the masks.
    masks = np.zeros((150, 170), np.int32)
    masks[20:60, 30:90] = 1
    masks[90:140, 100:160] = 2
    dp, prob = _flows_like_net(masks, (100, 113), seed=3)
    want, image_file = _reference_seg(tmp_path, masks, dp, prob, 45.0)
    got = seg_dict(masks, dp, prob, filename=image_file, diameter=45.0)
    assert_same_seg(got, want)


def test_restored_image_keys(tmp_path):
    masks = np.zeros((40, 50), np.int32)
    masks[5:20, 5:25] = 1
    dp, prob = _flows_like_net(masks, masks.shape, seed=4)
    restored = np.random.default_rng(5).random((2, 40, 50)).astype(np.float32)
    want, image_file = _reference_seg(tmp_path, masks, dp, prob, 30.0,
                                      img_restore=np.moveaxis(restored, 0, -1),
                                      restore_type="denoise_cyto3")
    path = write_seg_npy(tmp_path / "r_seg.npy", FakeResult(masks, dp, prob, 30.0, restored),
                         image_path=image_file, restore_type="denoise_cyto3")
    assert_same_seg(read_seg_npy(path), want)


def test_3d_layout_matches_reference(tmp_path):
    masks = np.zeros((4, 20, 24), np.int32)
    masks[1:3, 4:12, 5:15] = 1
    masks[:, 14:19, 2:8] = 3
    dp, prob = _flows_like_net(masks, masks.shape, seed=6)
    want, image_file = _reference_seg(tmp_path, masks, dp, prob, 30.0)
    assert_same_seg(seg_dict(masks, dp, prob, filename=image_file, diameter=30.0), want)


def test_wide_labels_switch_to_uint32_like_reference(tmp_path):
    masks = np.zeros((20, 20), np.int64)
    masks[2:8, 2:8] = 70000
    masks[10:15, 10:15] = 3
    dp, prob = _flows_like_net(masks, masks.shape, seed=7)
    want, image_file = _reference_seg(tmp_path, masks, dp, prob, 30.0)
    got = seg_dict(masks, dp, prob, filename=image_file, diameter=30.0)
    assert got["masks"].dtype == np.uint32
    assert_same_seg(got, want)


def test_gui_loader_view(tmp_path):
    """What cellpose/gui/io.py::_load_seg touches, replayed on a cp3rt file."""
    masks = tifffile.imread(MASKS)
    dp, prob = _flows_like_net(masks, masks.shape, seed=8)
    path = write_seg_npy(tmp_path / "img_seg.npy", FakeResult(masks, dp, prob, 17.0),
                         image_path=tmp_path / "img.tif")
    dat = np.load(path, allow_pickle=True).item()
    dat["outlines"]  # the loader's format probe
    assert dat["masks"].min() != -1
    assert len(dat["ismanual"]) == dat["masks"].max()
    assert dat["chan_choose"][0] == 0 and dat["chan_choose"][1] == 0
    flows = dat["flows"]
    assert flows[0].shape[-3] == dat["masks"].shape[-2]  # the loader's "no resize" check
    assert flows[0].shape == (1, *masks.shape, 3) and flows[0].dtype == np.uint8
    assert flows[1].shape == (1, *masks.shape) and flows[4].shape == (3, *masks.shape)
    assert dat["filename"] == str(tmp_path / "img.tif")
    assert "img_restore" not in dat


def test_errors(tmp_path):
    m = np.zeros((8, 8), np.int32)
    with pytest.raises(ConfigError, match="flows_dp"):
        seg_dict(m, np.zeros((2, 8, 7)), np.zeros((8, 8)), filename="x", diameter=30)
    with pytest.raises(ConfigError, match="masks"):
        seg_dict(m.astype(float), np.zeros((2, 8, 8)), np.zeros((8, 8)), filename="x",
                 diameter=30)
    with pytest.raises(InputError, match="does not exist"):
        read_seg_npy(tmp_path / "none_seg.npy")
    np.save(tmp_path / "plain_seg.npy", {"nomasks": 1}, allow_pickle=True)
    with pytest.raises(InputError, match="no 'masks'"):
        read_seg_npy(tmp_path / "plain_seg.npy")
