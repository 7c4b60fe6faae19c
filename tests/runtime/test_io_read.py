"""read_image / read_masks: every supported format against the reference reader
(cellpose.io.imread, OpenCV/tifffile), and one clear InputError per bad file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from cellpose import io as ref_io
from PIL import Image

from cp3rt.errors import InputError
from cp3rt.runtime.io import read_image, read_masks

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


@pytest.fixture(scope="module")
def pictures(tmp_path_factory):
    d = tmp_path_factory.mktemp("pictures")
    rng = np.random.default_rng(0)
    g8 = (rng.random((23, 31)) * 255).astype(np.uint8)
    g16 = (rng.random((23, 31)) * 65535).astype(np.uint16)
    rgb = (rng.random((23, 31, 3)) * 255).astype(np.uint8)
    rgba = (rng.random((23, 31, 4)) * 255).astype(np.uint8)
    files = {
        "g8.png": Image.fromarray(g8), "g16.png": Image.fromarray(g16),
        "rgb.png": Image.fromarray(rgb), "rgba.png": Image.fromarray(rgba),
        "pal.png": Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE),
        "bilevel.png": Image.fromarray(g8 > 100), "la.png": Image.fromarray(g8).convert("LA"),
        "rgb.jpg": Image.fromarray(rgb), "g8.jpeg": Image.fromarray(g8),
        "upper.PNG": Image.fromarray(g8),
    }
    for name, im in files.items():
        im.save(d / name)
    return d


@pytest.mark.parametrize("name", ["g8.png", "g16.png", "rgb.png", "rgba.png", "pal.png",
                                  "bilevel.png", "la.png", "rgb.jpg", "g8.jpeg", "upper.PNG"])
def test_pil_formats_match_reference_reader(pictures, name):
    got = read_image(pictures / name)
    want = ref_io.imread(str(pictures / name))
    assert got.dtype == want.dtype, name
    np.testing.assert_array_equal(got, want, err_msg=name)


def test_tiff_formats(tmp_path):
    rng = np.random.default_rng(1)
    stack = rng.random((12, 17, 19)).astype(np.float32)  # >= 10 pages: reference reads per page
    tifffile.imwrite(tmp_path / "stack.tif", stack)
    cyx = (rng.random((2, 17, 19)) * 1000).astype(np.uint16)
    tifffile.imwrite(tmp_path / "cyx.tiff", cyx, compression="zlib")
    for name, data in (("stack.tif", stack), ("cyx.tiff", cyx)):
        got = read_image(tmp_path / name)
        np.testing.assert_array_equal(got, data)
        np.testing.assert_array_equal(got, ref_io.imread(str(tmp_path / name)))


def test_real_data_tiff_matches_reference():
    path = DATA / "baby_yeast" / "images" / "evolve_testA.tif"
    np.testing.assert_array_equal(read_image(path), ref_io.imread(str(path)))


def test_plain_npy(tmp_path):
    a = np.arange(30, dtype=np.int16).reshape(5, 6)
    np.save(tmp_path / "a.npy", a)
    np.testing.assert_array_equal(read_image(tmp_path / "a.npy"), a)


def test_16bit_colour_png_is_refused(tmp_path):
    import cv2  # writes 16-bit colour PNGs, which Pillow would silently cut to 8 bit

    cv2.imwrite(str(tmp_path / "c16.png"), np.full((4, 5, 3), 40000, np.uint16))
    with pytest.raises(InputError, match=r"c16\.png is a 16-bit colour PNG"):
        read_image(tmp_path / "c16.png")


def _write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("name", ["x.tif", "x.png", "x.jpg", "x.npy"])
def test_empty_file(tmp_path, name):
    p = _write_bytes(tmp_path / name, b"")
    with pytest.raises(InputError, match=r"x\.\w+ is empty \(0 bytes\)\.$"):
        read_image(p)


@pytest.mark.parametrize("name,kind", [("x.tif", "TIFF"), ("x.tiff", "TIFF"), ("x.png", "PNG"),
                                       ("x.jpg", "JPG"), ("x.npy", "numpy array")])
def test_corrupt_file(tmp_path, name, kind):
    p = _write_bytes(tmp_path / name, b"this is not an image at all" * 5)
    with pytest.raises(InputError) as info:
        read_image(p)
    msg = str(info.value)
    assert str(p) in msg and f"cannot be read as a {kind}" in msg
    assert "\n" not in msg


def test_truncated_png(tmp_path, pictures):
    data = (pictures / "rgb.png").read_bytes()
    p = _write_bytes(tmp_path / "cut.png", data[: len(data) // 2])
    with pytest.raises(InputError, match="cut.png cannot be read as a PNG"):
        read_image(p)


def test_path_errors(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_image(tmp_path / "missing.tif")
    with pytest.raises(InputError, match="is a folder"):
        read_image(tmp_path)
    p = _write_bytes(tmp_path / "x.bmp", b"BM")
    with pytest.raises(InputError, match=r"unsupported extension '\.bmp'"):
        read_image(p)


def test_npy_content_errors(tmp_path):
    np.save(tmp_path / "d_seg.npy", {"masks": np.ones((3, 3), np.uint16)}, allow_pickle=True)
    with pytest.raises(InputError, match="pickled .*read_seg_npy"):
        read_image(tmp_path / "d_seg.npy")
    np.save(tmp_path / "s.npy", np.array(["a", "b"]))
    with pytest.raises(InputError, match="numeric"):
        read_image(tmp_path / "s.npy")
    np.save(tmp_path / "v.npy", np.arange(4))
    with pytest.raises(InputError, match="no usable image"):
        read_image(tmp_path / "v.npy")


def test_read_masks_from_seg_npy_and_tif(tmp_path):
    m = np.zeros((6, 7), np.uint16)
    m[1:3, 2:5] = 4
    np.save(tmp_path / "img_seg.npy", {"masks": m, "outlines": m}, allow_pickle=True)
    np.testing.assert_array_equal(read_masks(tmp_path / "img_seg.npy"), m)
    np.testing.assert_array_equal(read_masks(tmp_path / "img_seg.npy"),
                                  ref_io.imread(str(tmp_path / "img_seg.npy")))
    tifffile.imwrite(tmp_path / "m.tif", m)
    np.testing.assert_array_equal(read_masks(tmp_path / "m.tif"), m)
    _write_bytes(tmp_path / "bad_seg.npy", b"garbage")
    with pytest.raises(InputError, match="bad_seg.npy cannot be read as a Cellpose _seg.npy"):
        read_masks(tmp_path / "bad_seg.npy")
