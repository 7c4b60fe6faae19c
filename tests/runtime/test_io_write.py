"""Atomic writers: mask TIFFs (dtype, compression), float TIFFs, JSON; failures -> OutputError."""

from __future__ import annotations

import errno
import json

import numpy as np
import pytest
import tifffile

import cp3rt._fs
from cp3rt.errors import ConfigError, OutputError
from cp3rt.runtime.io import (
    mask_dtype,
    write_image_tif,
    write_json,
    write_masks_tif,
    write_overlay_png,
    write_seg_npy,
)


@pytest.mark.parametrize("top,dtype", [(0, np.uint16), (65535, np.uint16), (65536, np.uint32)])
def test_masks_tif_dtype_and_compression(tmp_path, top, dtype):
    m = np.zeros((5, 6), np.int64)
    m[1, 2] = top
    m[3, 4] = 1
    path = write_masks_tif(tmp_path / "sub" / "m_cp_masks.tif", m)
    with tifffile.TiffFile(path) as tif:
        assert tif.pages[0].compression == tifffile.COMPRESSION.ADOBE_DEFLATE
        back = tif.asarray()
    assert back.dtype == dtype
    np.testing.assert_array_equal(back, m)
    assert mask_dtype(m) is dtype
    assert [p.name for p in path.parent.iterdir()] == ["m_cp_masks.tif"]  # no temp file left


def test_masks_validation(tmp_path):
    with pytest.raises(ConfigError, match="dtype"):
        write_masks_tif(tmp_path / "m.tif", np.zeros((3, 3), np.float32))
    with pytest.raises(ConfigError, match="negative"):
        write_masks_tif(tmp_path / "m.tif", -np.ones((3, 3), np.int32))
    assert not any(tmp_path.iterdir())


def test_float_tif_and_json(tmp_path):
    x = np.random.default_rng(0).random((2, 7, 9))
    back = tifffile.imread(write_image_tif(tmp_path / "x.tif", x))
    assert back.dtype == np.float32
    np.testing.assert_array_equal(back, x.astype(np.float32))
    path = write_json(tmp_path / "r.json", {"a": [1, 2.5, None]})
    assert json.loads(path.read_text()) == {"a": [1, 2.5, None]}
    with pytest.raises(ValueError):
        write_json(tmp_path / "nan.json", {"a": float("nan")})
    assert not (tmp_path / "nan.json").exists()


class _Result:
    masks = np.ones((4, 4), np.uint16)
    dP = np.zeros((2, 4, 4), np.float32)
    cellprob = np.zeros((4, 4), np.float32)
    diameter = 30.0
    restored = None


@pytest.mark.parametrize("err", [PermissionError(errno.EACCES, "Permission denied"),
                                 OSError(errno.EROFS, "Read-only file system")])
@pytest.mark.parametrize("writer", [
    lambda p: write_masks_tif(p / "m.tif", np.ones((3, 3), np.uint16)),
    lambda p: write_image_tif(p / "x.tif", np.ones((3, 3))),
    lambda p: write_json(p / "x.json", {}),
    lambda p: write_overlay_png(p / "o.png", np.ones((4, 4)), np.ones((4, 4), np.uint16)),
    lambda p: write_seg_npy(p / "x_seg.npy", _Result(), image_path="x.tif"),
])
def test_unwritable_folder_gives_output_error(tmp_path, monkeypatch, err, writer):
    # Tests may run as root, where chmod does not stop writes: make the OS refuse instead.
    def refuse(*args, **kwargs):
        raise err

    monkeypatch.setattr(cp3rt._fs.tempfile, "mkstemp", refuse)
    with pytest.raises(OutputError) as info:
        writer(tmp_path)
    msg = str(info.value)
    assert f"into folder {tmp_path}:" in msg and err.strerror in msg


def test_folder_that_is_a_file_gives_output_error(tmp_path):
    # A real OS failure (no monkeypatch): the output "folder" is a file.
    blocker = tmp_path / "taken"
    blocker.write_bytes(b"x")
    with pytest.raises(OutputError, match=f"into folder {blocker}"):
        write_masks_tif(blocker / "m.tif", np.ones((3, 3), np.uint16))
