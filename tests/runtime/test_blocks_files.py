"""Huge image files in ``cp3rt run``: zarr / OME-Zarr folders and big TIFFs go through blocks,
labels into the OME-Zarr's labels/ group or a BigTIFF, re-runs skip done images, layouts
(channels-last TIFF, TCZYX OME-Zarr) are read lazily as (C, Y, X)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
from scale_testutil import NumpyEngine, blob_image

from cp3rt import Pipeline
from cp3rt.cli.app import main
from cp3rt.errors import InputError
from cp3rt.runtime.batch.blocks import segment_blocks
from cp3rt.runtime.batch.blocks.files import is_huge_tiff, split_inputs
from cp3rt.runtime.batch.blocks.lazy import PlaneView, open_plane
from cp3rt.runtime.config import RunConfig
from cp3rt.runtime.io.zarr_io import is_complete, open_lazy, write_ngff_image
from cp3rt.runtime.quality.metrics import average_precision

MIN_AP90_SAME = 1.0   # CLI vs library on the same blocks and engine: nothing may change
MIN_AP50_TRUTH = 0.8  # the stand-in finds the blobs it was drawn from (random blobs that touch merge)
DIAM, BLOCK = 20.0, 128


@pytest.fixture()
def fake_pipeline(monkeypatch):
    """`cp3rt run` builds its Pipeline from flags; give it the numpy stand-in engine (2 channels
    like Cellpose's nets, since the CLI passes channels=(chan, chan2))."""
    monkeypatch.setattr(Pipeline, "from_config", classmethod(lambda cls, cfg, run=None: Pipeline.from_engines(
        NumpyEngine(nchan=2), run=run)))


@pytest.fixture(scope="module")
def scene():
    return blob_image((300, 260), 60, 11, radius=7)


def _library(image):
    out = np.zeros(image.shape[-2:], np.uint32)
    with Pipeline.from_engines(NumpyEngine(nchan=2), run=RunConfig(channels=(0, 0))) as p:
        segment_blocks(p, image, out, diameter=DIAM, block_size=BLOCK)
    return out


def _ap(a, b, t):
    return float(average_precision(a, b, [t])[0][0])


def test_ome_zarr_input_gets_labels_group_and_rerun_skips(tmp_path, scene, fake_pipeline, capsys):
    image, truth = scene
    root = tmp_path / "img.ome.zarr"
    write_ngff_image(root, image, chunks=64)
    args = ["run", str(root), "--diameter", str(DIAM), "--block-size", str(BLOCK)]
    assert main(args) == 0
    assert is_complete(root)
    got = np.asarray(open_lazy(root / "labels" / "cp3rt")[...])
    assert _ap(_library(image), got, 0.9) >= MIN_AP90_SAME
    assert _ap(truth, got, 0.5) >= MIN_AP50_TRUTH
    mtime = (root / "labels" / "cp3rt" / "0" / ".zattrs").stat().st_mtime_ns
    capsys.readouterr()
    assert main(args) == 0
    assert "skipped" in capsys.readouterr().out
    assert (root / "labels" / "cp3rt" / "0" / ".zattrs").stat().st_mtime_ns == mtime


def test_tiff_with_blocks_flag_writes_bigtiff_next_to_small_images(tmp_path, scene, fake_pipeline, capsys):
    image, truth = scene
    tifffile.imwrite(tmp_path / "big.tif", image)
    tifffile.imwrite(tmp_path / "small.png.tif", image[:100, :100])
    huge, regular = split_inputs([tmp_path / "big.tif"], force_blocks=True)
    assert huge == [tmp_path / "big.tif"] and regular == []
    assert main(["run", str(tmp_path / "big.tif"), "--blocks", "--diameter", str(DIAM),
                 "--block-size", str(BLOCK), "--out", str(tmp_path / "out")]) == 0
    # the diameter the blocks ran at reaches the summary and the run record, as for image files
    assert f"{DIAM:.1f}" in capsys.readouterr().out
    [record] = (tmp_path / "out").glob("cp3rt_run_*.json")
    assert [e["diameter"] for e in json.loads(record.read_text())["images"]] == [DIAM]
    out = tmp_path / "out" / "big_cp_masks.tif"
    with tifffile.TiffFile(out) as tf:
        assert tf.is_bigtiff
        got = tf.asarray()
    assert got.dtype == np.uint32
    assert _ap(_library(image), got, 0.9) >= MIN_AP90_SAME
    assert not list((tmp_path / "out").glob(".*part*"))


def test_extra_outputs_for_huge_images_fail_with_one_line(tmp_path, scene, fake_pipeline, capsys):
    tifffile.imwrite(tmp_path / "big.tif", scene[0])
    assert main(["run", str(tmp_path / "big.tif"), "--blocks", "--save-seg", "--diameter", str(DIAM)]) == 1
    err = capsys.readouterr().err
    assert "big.tif" in err and "--seg" in err and "blocks" in err


@pytest.mark.parametrize("kind", ["tiff", "ome-zarr"])
def test_a_huge_image_gets_an_overview_picture_of_its_labels(tmp_path, fake_pipeline, monkeypatch, kind):
    """--overlay on a block run: the labels' outlines on the image, every n-th pixel, the
    caption saying so; drawn from the written labels (an OME-Zarr's labels/ or the BigTIFF)."""
    from PIL import Image

    from cp3rt.runtime.io import pictures

    monkeypatch.setattr(pictures, "MAX_SIDE", 128)  # a 300 x 260 image stands in for a huge one
    image, _ = blob_image((300, 260), 40, 5, radius=7)
    src = tmp_path / ("big.tif" if kind == "tiff" else "big.ome.zarr")
    if kind == "tiff":
        tifffile.imwrite(src, image)
    else:
        write_ngff_image(src, image, chunks=64)
    out = tmp_path / "out"
    assert main(["run", str(src), "--blocks", "--overlay", "--diameter", str(DIAM), "--block-size", str(BLOCK),
                 "--out", str(out)]) == 0
    picture = np.asarray(Image.open(out / "big_overlay.png").convert("RGB"))
    labels = np.asarray(open_lazy(out / "big_cp_masks.tif") if kind == "tiff"
                        else open_lazy(out / "big.ome.zarr" / "labels" / "cp3rt")[...])
    assert labels.max() > 0 and pictures.overview_stride(labels.shape) == 3  # 300 px -> 100 px samples
    outline = np.all(picture == pictures.OUTLINE, axis=-1)
    assert outline.any() and outline.mean() < 0.5  # outlines drawn, not a red sheet


def test_the_overview_reads_only_every_nth_pixel(tmp_path):
    """Bounded memory: the image and the labels are sliced with the stride, never read whole."""
    from cp3rt.runtime.io import pictures

    image, labels = blob_image((5000, 900), 30, 2, radius=30)
    asked = []

    class Lazy:
        def __init__(self, a):
            self.a, self.shape = a, a.shape

        def __getitem__(self, key):
            asked.append(key)
            return self.a[key]

    caption = pictures.result_caption(30, name="big.tif")
    pictures.write_overview_picture(tmp_path / "o.png", Lazy(image), Lazy(labels), caption)
    assert asked and all(k[-1] == slice(None, None, 3) and k[-2] == slice(None, None, 3) for k in asked)
    assert (tmp_path / "o.png").is_file()


def test_size_threshold_decides_blocks(tmp_path):
    p = tmp_path / "wide.tif"
    tifffile.imwrite(p, np.zeros((10, 300), np.uint8))
    assert is_huge_tiff(p, side=299) and not is_huge_tiff(p, side=300)
    huge, regular = split_inputs([p], side=299)
    assert huge == [p] and regular == []
    assert split_inputs([p], side=300) == ([], [p])


def test_plane_view_layouts_read_lazily(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    v = open_plane(tmp_path / "rgb.tif")
    assert v.shape == (3, 40, 50)
    np.testing.assert_array_equal(v[..., 5:20:2, 7:], np.moveaxis(rgb, -1, 0)[:, 5:20:2, 7:])
    tczyx = rng.integers(0, 9, (1, 2, 1, 30, 20), dtype=np.uint16)
    write_ngff_image(tmp_path / "t.zarr", tczyx[0, :, 0], chunks=16)  # (C, Y, X) OME-Zarr
    np.testing.assert_array_equal(open_plane(tmp_path / "t.zarr")[..., 3:9, :], tczyx[0, :, 0, 3:9])
    v5 = PlaneView(tczyx, "TCZYX")
    assert v5.shape == (2, 30, 20)
    np.testing.assert_array_equal(v5[:, 1:4, 2:5], tczyx[0, :, 0, 1:4, 2:5])
    with pytest.raises(InputError, match="Z=3"):
        PlaneView(np.zeros((3, 30, 20)), "ZYX", "vol")
