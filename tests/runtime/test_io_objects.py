"""Per-object tables, --exclude-on-edges, outlines / ImageJ ROI sets and the pixel size carried
into the mask TIFF, checked against independent readers: scikit-image ``regionprops``, OpenCV
``findContours`` (the reference's outline tracer), ``roifile`` and ``tifffile``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from cp3rt.runtime.io.edges import exclude_on_edges
from cp3rt.runtime.io.objects_table import object_table, read_object_table, write_object_table
from cp3rt.runtime.io.pixel_size import PixelSize, read_pixel_size
from cp3rt.runtime.io.rois import outlines_list, write_outlines_txt, write_roi_zip
from cp3rt.runtime.io.write import write_masks_tif

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
PAIRS = ["ctc_gowt1_nuclei/{}/seq01_t021.tif", "ctc_msc_cells/{}/seq02_t000.tif",
         "baby_bacteria_mothermachine/{}/mmsCMOS_testA.tif", "baby_yeast/{}/evolve_testE.tif"]


def _pair(name: str) -> tuple[np.ndarray, np.ndarray]:
    img, gt = DATA / name.format("images"), DATA / name.format("masks")
    if not img.is_file():  # the data set's file names are part of this test's contract
        pytest.fail(f"{img} is missing: ../shared/data must be beside the repository")
    return tifffile.imread(img), tifffile.imread(gt)


@pytest.mark.parametrize("name", PAIRS)
def test_object_table_matches_regionprops_on_shared_data(name: str, tmp_path: Path) -> None:
    import skimage.measure as measure
    image, masks = _pair(name)
    two = np.stack([image, image.max() - image])  # two channels, the second inverted
    path = write_object_table(tmp_path / "t.csv", object_table(masks, two))
    table = read_object_table(path)  # what a user loads: the CSV, not the arrays
    props = measure.regionprops(masks.astype(np.int64), intensity_image=np.moveaxis(two, 0, -1).astype(np.float64))
    assert table["label"].tolist() == [p.label for p in props]
    assert table["area_px"].tolist() == [int(p.area) for p in props]
    np.testing.assert_allclose(table["centroid_y"], [p.centroid[0] for p in props], atol=1e-6)
    np.testing.assert_allclose(table["centroid_x"], [p.centroid[1] for p in props], atol=1e-6)
    for i, side in enumerate(("bbox_y0", "bbox_x0", "bbox_y1", "bbox_x1")):
        assert table[side].tolist() == [p.bbox[i] for p in props]
    for c in range(2):
        np.testing.assert_allclose(table[f"mean_c{c}"], [p.intensity_mean[c] for p in props], rtol=1e-6)
        np.testing.assert_allclose(table[f"integrated_c{c}"], [p.intensity_mean[c] * p.area for p in props],
                                   rtol=1e-6)
    touches = [int(p.bbox[0] == 0 or p.bbox[1] == 0 or p.bbox[2] == masks.shape[0] or p.bbox[3] == masks.shape[1])
               for p in props]
    assert table["touches_edge"].tolist() == touches


def test_object_table_volume_and_physical_area() -> None:
    masks = np.zeros((4, 10, 12), np.uint16)
    masks[1:3, 2:5, 3:7] = 2
    masks[0:2, 8:10, 0:2] = 5
    t = object_table(masks, pixel_size=(2.0, 0.5, 0.5), unit="µm")
    assert t["label"].tolist() == [2, 5]
    assert t["area_px"].tolist() == [24, 8]
    assert t["centroid_z"].tolist() == [1.5, 0.5]
    assert t["touches_edge"].tolist() == [0, 1]
    assert t["volume_um3"].tolist() == [12.0, 4.0]


def test_object_table_parquet_without_pyarrow_is_one_line_naming_the_extra(tmp_path: Path, monkeypatch) -> None:
    from cp3rt.errors import Cp3rtError

    masks = np.zeros((8, 8), np.uint16)
    masks[2:4, 2:5] = 1
    monkeypatch.setitem(__import__("sys").modules, "pyarrow", None)  # as if not installed
    monkeypatch.setitem(__import__("sys").modules, "pyarrow.parquet", None)
    with pytest.raises(Cp3rtError, match="pyarrow") as err:
        write_object_table(tmp_path / "t.parquet", object_table(masks))
    assert "\n" not in str(err.value) and not (tmp_path / "t.parquet").exists()


def test_object_table_parquet_reads_in_pandas_as_the_csv_does(tmp_path: Path) -> None:
    """What a screening analyst does with it: pandas.read_parquet (pyarrow) gives the same
    columns, types and values as pandas.read_csv of the CSV table."""
    import pandas as pd

    masks = np.zeros((40, 50), np.uint16)
    masks[2:9, 3:12], masks[20:31, 30:50], masks[35:40, 0:4] = 1, 7, 3
    image = np.random.default_rng(0).random((40, 50)).astype(np.float32)
    table = object_table(masks, image)
    write_object_table(tmp_path / "t.parquet", table)
    write_object_table(tmp_path / "t.csv", table)
    got, want = pd.read_parquet(tmp_path / "t.parquet"), pd.read_csv(tmp_path / "t.csv")
    assert list(got.columns) == list(want.columns)
    assert got["label"].tolist() == [1, 3, 7] and got["area_px"].tolist() == want["area_px"].tolist()
    pd.testing.assert_frame_equal(got, want, check_dtype=False, rtol=1e-6)


def test_exclude_on_edges_same_as_reference_semantics() -> None:
    masks = np.zeros((10, 10), np.uint16)
    masks[0:2, 3:5] = 1   # top edge
    masks[4:6, 4:6] = 3   # inside
    masks[8:10, 8:10] = 4  # bottom-right corner
    masks[3:5, 8:10] = 7  # right edge
    masks[7:8, 1:3] = 9   # inside
    out = exclude_on_edges(masks)
    assert out.dtype == np.uint16
    expect = np.zeros_like(masks)
    expect[4:6, 4:6] = 1
    expect[7:8, 1:3] = 2
    np.testing.assert_array_equal(out, expect)


@pytest.mark.parametrize("name", PAIRS)
def test_exclude_on_edges_matches_the_reference(name: str) -> None:
    import cellpose.utils as utils
    _, masks = _pair(name)
    np.testing.assert_array_equal(exclude_on_edges(masks), utils.remove_edge_masks(masks.copy()))


@pytest.mark.parametrize("name", [*PAIRS, "stardist_dsb2018_nuclei/{}/img2d.tif"])
def test_outlines_are_the_references_findcontours_polygons(name: str) -> None:
    import cv2
    _, masks = _pair(name)
    ours = outlines_list(masks)
    labels = [k for k in np.unique(masks) if k]
    assert len(ours) == len(labels)
    for k, pts in zip(labels, ours):
        found = cv2.findContours((masks == k).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)[-2]
        ref = max(found, key=len).reshape(-1, 2)
        np.testing.assert_array_equal(pts, ref if len(ref) > 4 else np.zeros((0, 2)))


def test_outlines_text_and_roi_zip_agree(tmp_path: Path) -> None:
    import roifile
    _, masks = _pair(PAIRS[0])
    masks[100:102, 100:102] = masks.max() + 1  # a 4-point border: an empty line, no ROI
    txt = write_outlines_txt(tmp_path / "x_cp_outlines.txt", masks).read_text().splitlines()
    assert len(txt) == len(np.unique(masks)) - 1 and txt[-1] == ""
    polys = [np.array(line.split(","), dtype=int).reshape(-1, 2) for line in txt if line]
    rois = roifile.roiread(write_roi_zip(tmp_path / "x_rois.zip", masks))
    assert len(rois) == len(polys)
    for roi, poly in zip(rois, polys):
        np.testing.assert_array_equal(roi.coordinates(), poly)
    assert [r.name for r in rois] == [f"{k:05d}" for k in range(1, len(polys) + 1)]


def test_mask_tiff_carries_the_inputs_pixel_size(tmp_path: Path) -> None:
    img = np.zeros((32, 40), np.uint16)
    tifffile.imwrite(tmp_path / "ij.tif", img, imagej=True, resolution=(1 / 0.65, 1 / 0.65),
                     metadata={"unit": "micron"})
    size = read_pixel_size(tmp_path / "ij.tif")
    assert size == PixelSize(0.65, 0.65, "µm")
    masks = np.zeros((32, 40), np.uint16)
    masks[3:8, 3:8] = 1
    write_masks_tif(tmp_path / "m.tif", masks, size)
    with tifffile.TiffFile(tmp_path / "m.tif") as tif:  # read back with tifffile, not with cp3rt
        num, den = tif.pages[0].tags["XResolution"].value
        assert den / num == pytest.approx(0.65)
        assert tif.imagej_metadata["unit"] == "micron"
        np.testing.assert_array_equal(tif.asarray(), masks)
    big = masks.astype(np.uint32)
    big[0, 0] = 70000  # uint32 masks: ImageJ cannot hold them; resolution in centimetres
    write_masks_tif(tmp_path / "m32.tif", big, size)
    assert read_pixel_size(tmp_path / "m32.tif") == PixelSize(0.65, 0.65, "µm")


def test_pixel_size_from_ome_and_none_for_uncalibrated(tmp_path: Path) -> None:
    img = np.zeros((16, 16), np.uint16)
    tifffile.imwrite(tmp_path / "a.ome.tif", img, metadata={"PhysicalSizeX": 0.3, "PhysicalSizeY": 0.4})
    assert read_pixel_size(tmp_path / "a.ome.tif") == PixelSize(0.3, 0.4, "µm")
    tifffile.imwrite(tmp_path / "b.tif", img)
    assert read_pixel_size(tmp_path / "b.tif") is None
    assert read_pixel_size(DATA / PAIRS[0].format("images")) is None
