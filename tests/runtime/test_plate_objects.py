"""Plate object tables and the count heat-map: the per-object rows of every field, tagged with
its well, match scikit-image ``regionprops`` on shared data; after a plate run,
``write_plate_outputs`` reads the written labels back and its heat-map counts are the CSV's."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image
from scale_testutil import NumpyEngine, write_plate

from cp3rt.runtime.batch.files import OutputOptions
from cp3rt.runtime.batch.plate_objects import FieldObjects, plate_objects_csv, write_plate_outputs
from cp3rt.runtime.io.plate_picture import heatmap_rgb, palette

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
NAMES = ["seq01_t021", "seq01_t031", "seq02_t052", "seq02_t072"]


def _fields() -> list[FieldObjects]:
    items = []
    for k, name in enumerate(NAMES):
        img = DATA / "ctc_gowt1_nuclei" / "images" / f"{name}.tif"
        if not img.is_file():
            pytest.fail(f"{img} is missing: ../shared/data must be beside the repository")
        masks = tifffile.imread(DATA / "ctc_gowt1_nuclei" / "masks" / f"{name}.tif")
        row, col = "AB"[k // 2], str(k % 2 + 1)
        items.append(FieldObjects(f"{row}/{col}", row, col, "0", masks, tifffile.imread(img)))
    return items


def test_plate_table_rows_match_regionprops_per_field() -> None:
    import skimage.measure as measure
    items = _fields()
    rows = list(csv.DictReader(io.StringIO(plate_objects_csv(items).decode())))
    for it in items:
        mine = [r for r in rows if r["well"] == it.well]
        props = measure.regionprops(it.masks.astype(np.int64), intensity_image=it.image.astype(np.float64))
        assert [int(r["label"]) for r in mine] == [p.label for p in props]
        assert [int(r["area_px"]) for r in mine] == [int(p.area) for p in props]
        np.testing.assert_allclose([float(r["mean_c0"]) for r in mine], [p.intensity_mean for p in props], rtol=1e-6)
        np.testing.assert_allclose([float(r["centroid_x"]) for r in mine], [p.centroid[1] for p in props], atol=1e-6)
        assert {r["row"] for r in mine} == {it.row} and {r["field"] for r in mine} == {"0"}


def test_heatmap_colours_each_well_by_its_count() -> None:
    wells = [{"row": it.row, "column": it.column, "objects": int(np.unique(it.masks).size - 1)} for it in _fields()]
    rgb = heatmap_rgb(wells, title="gowt1")
    top = max(w["objects"] for w in wells)
    colours = {tuple(c) for c in rgb.reshape(-1, 3)}
    for w in wells:
        assert palette(w["objects"] / top) in colours


def test_plate_run_then_table_and_heatmap(tmp_path: Path) -> None:
    from cp3rt import Pipeline
    from cp3rt.runtime.batch.plates import plate_fields, run_plate
    from cp3rt.runtime.config import RunConfig

    root = tmp_path / "plate.ome.zarr"
    write_plate(root)
    run = RunConfig(channels=(0, 0), diameter=20.0)
    with Pipeline.from_engines(NumpyEngine(nchan=2), run=run) as pipe:
        summary = run_plate(pipe, root, run, block_size=128)
    fields = plate_fields(root)
    out = tmp_path / "out"
    written = write_plate_outputs(root, fields, [f.path for f in fields], summary.wells, out,
                                  OutputOptions(table="csv", overlay=True))
    assert [p.name for p in written] == ["plate_objects.csv", "plate_wells.png"]
    with open(written[0], newline="") as fh:
        rows = list(csv.DictReader(fh))
    per_well = {w["well"]: w["objects"] for w in summary.wells}
    assert {k: sum(r["well"] == k for r in rows) for k in per_well} == per_well
    with Image.open(written[1]) as im:
        assert im.size[0] >= 300


def test_cli_plate_run_writes_the_object_table_and_heatmap(tmp_path: Path, monkeypatch) -> None:
    from cp3rt import Pipeline
    from cp3rt.cli.app import main

    monkeypatch.setattr(Pipeline, "from_config", classmethod(lambda cls, cfg, run=None: Pipeline.from_engines(
        NumpyEngine(nchan=2), run=run)))
    root = tmp_path / "p.zarr"
    write_plate(root)
    out = tmp_path / "o"  # a separate output store: the labels are read from there
    assert main(["run", str(root), "--diameter", "20", "--out", str(out), "--table", "csv", "--overlay"]) == 0
    with open(out / "p_wells.csv", newline="") as fh:
        wells = {r["well"]: int(r["objects"]) for r in csv.DictReader(fh)}
    with open(out / "p_objects.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {w: sum(r["well"] == w for r in rows) for w in wells} == wells and sum(wells.values()) > 0
    with Image.open(out / "p_wells.png") as im:
        assert im.size[0] >= 300
