"""``cp3rt run --table --rois --outlines --exclude-on-edges --overlay``: the outputs screening
users load into other tools, on a real image with the bundled nuclei model, each read back
with the other tool's library (csv, roifile, tifffile) rather than with cp3rt."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from cp3rt.cli.app import main

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


@pytest.fixture(scope="module")
def run_out(tmp_path_factory) -> tuple[Path, Path]:
    src = DATA / "stardist_dsb2018_nuclei" / "images" / "img2d.tif"
    if not src.is_file():
        pytest.fail(f"{src} is missing: ../shared/data must be beside the repository")
    folder = tmp_path_factory.mktemp("in")
    image = folder / "nuclei.tif"
    tifffile.imwrite(image, tifffile.imread(src)[:192, :256], imagej=True, resolution=(1 / 0.65, 1 / 0.65),
                     metadata={"unit": "micron"})
    out = tmp_path_factory.mktemp("out")
    code = main(["run", str(image), "--model", "cp3rt_nuclei", "--restore", "cp3rt_denoise_nuclei",
                 "--backend", "ort", "--diameter", "30", "--out", str(out), "--table", "csv", "--rois",
                 "--outlines", "--exclude-on-edges", "--overlay"])
    assert code == 0
    return image, out


def test_exclude_on_edges_leaves_consecutive_inner_objects(run_out) -> None:
    _, out = run_out
    masks = tifffile.imread(out / "nuclei_cp_masks.tif")
    labels = np.unique(masks)[1:]
    assert labels.size > 5 and labels.tolist() == list(range(1, labels.size + 1))
    border = np.concatenate([masks[0], masks[-1], masks[:, 0], masks[:, -1]])
    assert not border.any()


def test_table_rows_are_the_masks_objects_with_input_intensity(run_out) -> None:
    image, out = run_out
    masks = tifffile.imread(out / "nuclei_cp_masks.tif")
    raw = tifffile.imread(image).astype(np.float64)
    with open(out / "nuclei_cp_objects.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["label"]) for r in rows] == list(range(1, masks.max() + 1))
    for r in rows:
        inside = masks == int(r["label"])
        assert int(r["area_px"]) == inside.sum()
        assert float(r["mean_c0"]) == pytest.approx(raw[inside].mean(), rel=1e-6)  # raw input, not restored
        assert float(r["area_um2"]) == pytest.approx(inside.sum() * 0.65**2, rel=1e-6)
        assert r["touches_edge"] == "0"


def test_roi_zip_and_outlines_text_hold_the_same_polygons(run_out) -> None:
    import roifile
    _, out = run_out
    masks = tifffile.imread(out / "nuclei_cp_masks.tif")
    lines = (out / "nuclei_cp_outlines.txt").read_text().splitlines()
    assert len(lines) == masks.max()
    polys = [np.array(line.split(","), dtype=int).reshape(-1, 2) for line in lines if line]
    rois = roifile.roiread(out / "nuclei_rois.zip")
    assert len(rois) == len(polys)
    for roi, poly in zip(rois, polys):
        xy = roi.coordinates()
        np.testing.assert_array_equal(xy, poly)
        k = masks[xy[:, 1], xy[:, 0]]  # every vertex is a pixel of one object
        assert np.unique(k).size == 1 and k[0] > 0


def test_masks_carry_the_inputs_pixel_size(run_out) -> None:
    _, out = run_out
    with tifffile.TiffFile(out / "nuclei_cp_masks.tif") as tif:
        num, den = tif.pages[0].tags["XResolution"].value
        assert den / num == pytest.approx(0.65)
        assert tif.imagej_metadata["unit"] == "micron"


def test_overlay_shows_raw_beside_restored_under_a_caption(run_out) -> None:
    _, out = run_out
    with Image.open(out / "nuclei_overlay.png") as im:
        width, height = im.size
    assert width >= 2 * 256 and height > 192  # two panels side by side, a caption strip on top


def test_block_runs_refuse_the_per_object_outputs_rather_than_skip_them(tmp_path) -> None:
    from cp3rt.errors import ConfigError
    from cp3rt.runtime.batch.blocks.file_outputs import refuse_extra_outputs
    from cp3rt.runtime.batch.files import OutputOptions

    with pytest.raises(ConfigError, match="--table, --rois, --outlines, --exclude-on-edges"):
        refuse_extra_outputs(tmp_path / "huge.tif", OutputOptions(table="csv", rois=True, outlines=True,
                                                                  exclude_on_edges=True), "huge images")


def test_volume_overlay_is_a_montage_of_planes_and_the_table_has_z(tmp_path) -> None:
    src = tifffile.imread(DATA / "stardist_dsb2018_nuclei" / "images" / "img2d.tif")
    stack = tmp_path / "stack.tif"
    tifffile.imwrite(stack, np.stack([src[3 * z: 3 * z + 96, 2 * z: 2 * z + 120] for z in range(8)]))
    out = tmp_path / "out"
    assert main(["run", str(stack), "--model", "cp3rt_nuclei", "--backend", "ort", "--diameter", "30",
                 "--do-3d", "--overlay", "--table", "csv", "--out", str(out)]) == 0
    masks = tifffile.imread(out / "stack_cp_masks.tif")
    with open(out / "stack_cp_objects.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == np.unique(masks).size - 1 and "centroid_z" in rows[0]
    with Image.open(out / "stack_overlay.png") as im:
        width, height = im.size
    assert width >= 3 * 120 and height > 2 * 96  # two rows of three planes under a caption
