"""Huge-image I/O: OME-Zarr input -> labels written into its NGFF labels/ group, BigTIFF
memmap input -> BigTIFF labels; both equal the in-memory block run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
from scale_testutil import NumpyEngine, blob_image

from cp3rt import Pipeline
from cp3rt.errors import InputError, OutputError
from cp3rt.runtime.batch.blocks import segment_blocks
from cp3rt.runtime.io.zarr_io import (
    create_bigtiff_labels,
    create_ngff_labels,
    is_complete,
    mark_complete,
    open_lazy,
    write_ngff_image,
)
from cp3rt.runtime.quality.metrics import average_precision

MIN_AP = 1.0  # same blocks, same engine: the container must not change anything


def _run(image, out):
    with Pipeline.from_engines(NumpyEngine()) as p:
        return segment_blocks(p, image, out, diameter=20.0, block_size=128)


@pytest.fixture(scope="module")
def image():
    return blob_image((300, 260), 60, 11, radius=7)[0]


@pytest.fixture(scope="module")
def reference(image):
    out = np.zeros(image.shape, np.uint32)
    _run(image, out)
    return out


def test_ome_zarr_in_labels_out(tmp_path, image, reference):
    root = tmp_path / "img.ome.zarr"
    write_ngff_image(root, image, chunks=64)
    lazy = open_lazy(root)
    assert lazy.shape == image.shape
    out = create_ngff_labels(root, image.shape)
    _run(lazy, out)
    mark_complete(out, n_objects=int(reference.max()))
    assert is_complete(root)
    got = open_lazy(root / "labels" / "cp3rt")
    assert average_precision(reference, np.asarray(got[...]), [0.9])[0][0] >= MIN_AP
    meta = json.loads((root / "labels" / ".zattrs").read_text())
    assert meta["labels"] == ["cp3rt"]
    lab_meta = json.loads((root / "labels" / "cp3rt" / ".zattrs").read_text())
    assert "image-label" in lab_meta and lab_meta["multiscales"][0]["datasets"][0]["path"] == "0"
    with pytest.raises(OutputError, match="exists"):
        create_ngff_labels(root, image.shape)


def test_bigtiff_memmap_in_and_out(tmp_path, image, reference):
    src = tmp_path / "big.tif"
    tifffile.imwrite(src, image, bigtiff=True)
    lazy = open_lazy(src)
    assert isinstance(lazy, np.memmap)
    out = create_bigtiff_labels(tmp_path / "labels.tif", image.shape)
    _run(lazy, out)
    out.flush()
    del out
    got = tifffile.imread(tmp_path / "labels.tif")
    assert got.dtype == np.uint32
    assert average_precision(reference, got, [0.9])[0][0] >= MIN_AP


def test_compressed_tiff_through_zarr_store(tmp_path, image):
    src = tmp_path / "c.tif"
    tifffile.imwrite(src, image, compression="zlib", tile=(64, 64))
    lazy = open_lazy(src)
    np.testing.assert_array_equal(np.asarray(lazy[10:50, 20:90]), image[10:50, 20:90])


def test_bad_inputs(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        open_lazy(tmp_path / "nope.zarr")
    (tmp_path / "x.png").write_bytes(b"x")
    with pytest.raises(InputError, match="neither"):
        open_lazy(tmp_path / "x.png")
