"""OME-Zarr HCS plates: every field segmented into its labels/ group, per-well CSV that
matches the written labels, resume after a run that died part-way, `cp3rt run PLATE.zarr`."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
from scale_testutil import FIELDS, WELLS, NumpyEngine, write_plate

from cp3rt import Pipeline
from cp3rt.cli.app import main
from cp3rt.errors import InputError
from cp3rt.runtime.batch.blocks import segment_blocks
from cp3rt.runtime.batch.plates import CSV_COLUMNS, is_plate, plate_fields, run_plate
from cp3rt.runtime.config import RunConfig
from cp3rt.runtime.io.zarr_io import is_complete, open_lazy
from cp3rt.runtime.quality.metrics import average_precision

DIAM, BLOCK = 20.0, 128
MIN_AP90_SAME = 1.0   # plate runner vs segment_blocks on the same field: nothing may change
MIN_AP50_TRUTH = 0.9  # the stand-in finds the drawn (separated) blobs
RUN = RunConfig(channels=(0, 0), diameter=DIAM)


class CrashingEngine(NumpyEngine):
    """Dies on its ``crash_at``-th call, like a process killed mid-plate."""

    def __init__(self, crash_at: int) -> None:
        super().__init__(nchan=2)
        self.crash_at = crash_at

    def _run(self, feeds):
        if len(self.batches) + 1 == self.crash_at:
            raise KeyboardInterrupt("killed")
        return super()._run(feeds)


def _pipe(engine=None):
    return Pipeline.from_engines(engine or NumpyEngine(nchan=2), run=RUN)


def _read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def plate_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("p") / "plate.ome.zarr"
    truth = write_plate(root)
    with _pipe() as p:
        summary = run_plate(p, root, block_size=BLOCK)
    return root, truth, summary


def test_every_field_labelled_and_matches_blocks(plate_run):
    root, truth, summary = plate_run
    fields = plate_fields(root)
    assert len(fields) == len(WELLS) * FIELDS and summary.batch.count("done") == len(fields)
    assert [f.well for f in fields[:2]] == ["A/1", "A/1"] and (fields[2].row, fields[2].column) == ("A", "2")
    for f in fields:
        assert is_complete(f.path)
        got = np.asarray(open_lazy(f.path / "labels" / "cp3rt")[...])
        img, lab = truth[(f.well, int(f.path.name))]
        ref = np.zeros(img.shape, np.uint32)
        with _pipe() as p:
            segment_blocks(p, img, ref, diameter=DIAM, block_size=BLOCK)
        assert average_precision(ref, got, [0.9])[0][0] >= MIN_AP90_SAME, f.path
        assert average_precision(lab, got, [0.5])[0][0] >= MIN_AP50_TRUTH, f.path
        meta = json.loads((f.path / "labels" / ".zattrs").read_text())
        assert meta["labels"] == ["cp3rt"]


def test_well_csv_matches_the_written_labels(plate_run):
    root, _, summary = plate_run
    rows = {r["well"]: r for r in _read_csv(summary.csv)}
    assert summary.csv == root.parent / "plate_wells.csv" and set(rows) == {f"{r}/{c}" for r, c in WELLS}
    for well, row in rows.items():
        labs = [np.asarray(open_lazy(root / well / str(f) / "labels" / "cp3rt")[...]) for f in range(FIELDS)]
        n = sum(len(np.unique(x[x > 0])) for x in labs)
        area = sum(int((x > 0).sum()) for x in labs)
        assert int(row["objects"]) == n and int(row["fields"]) == int(row["fields_done"]) == FIELDS
        assert float(row["mean_area_px"]) == pytest.approx(area / n, abs=1e-3)
        assert (row["row"], row["column"]) == tuple(well.split("/"))


def test_resume_after_a_run_that_died(tmp_path, plate_run):
    root = tmp_path / "plate.ome.zarr"
    write_plate(root)
    with pytest.raises(KeyboardInterrupt), _pipe(CrashingEngine(crash_at=4)) as p:
        run_plate(p, root, block_size=BLOCK)
    fields = plate_fields(root)
    done = [is_complete(f.path) for f in fields]
    assert done == [True] * 3 + [False] * 5  # one engine call per small field
    stamps = {f.path: (f.path / "labels/cp3rt/0/.zattrs").stat().st_mtime_ns for f, d in zip(fields, done) if d}
    engine = NumpyEngine(nchan=2)
    with _pipe(engine) as p:
        summary = run_plate(p, root, block_size=BLOCK)
    assert len(engine.batches) == 5 and summary.batch.count("skipped") == 3
    assert all((p / "labels/cp3rt/0/.zattrs").stat().st_mtime_ns == t for p, t in stamps.items())
    assert _read_csv(summary.csv) == _read_csv(plate_run[2].csv)  # same table as an unbroken run


def test_a_well_without_objects_gets_a_zero_row(tmp_path):
    from cp3rt.runtime.io.zarr_io import write_ngff_image

    root = tmp_path / "plate.ome.zarr"
    write_plate(root)
    for f in range(FIELDS):  # an empty well (no cells seeded): rows must still be written
        write_ngff_image(root / "A" / "1" / str(f), np.zeros((96, 112), np.uint16), chunks=64)
    with _pipe() as p:
        summary = run_plate(p, root, block_size=BLOCK)
    rows = {r["well"]: r for r in _read_csv(summary.csv)}
    assert (rows["A/1"]["objects"], rows["A/1"]["mean_area_px"], rows["A/1"]["fields_done"]) == ("0", "0.0", "2")
    assert int(rows["B/2"]["objects"]) > 0 and list(rows["A/1"]) == list(CSV_COLUMNS)


def test_cli_detects_a_plate(tmp_path, monkeypatch):
    monkeypatch.setattr(Pipeline, "from_config", classmethod(lambda cls, cfg, run=None: Pipeline.from_engines(
        NumpyEngine(nchan=2), run=run)))
    root = tmp_path / "p.zarr"
    write_plate(root)
    assert is_plate(root) and not is_plate(root / "A" / "1" / "0")
    assert main(["run", str(root), "--diameter", str(DIAM), "--out", str(tmp_path / "o")]) == 0
    assert len(_read_csv(tmp_path / "o" / "p_wells.csv")) == len(WELLS)
    # with --out the plate is only read: its labels are in the output plate store o/p.zarr
    assert all(is_complete(tmp_path / "o" / "p.zarr" / f.path.relative_to(root)) for f in plate_fields(root))
    assert not any(is_complete(f.path) for f in plate_fields(root))


def test_bad_plate_metadata_is_one_line_error(tmp_path):
    root = tmp_path / "bad.zarr"
    write_plate(root)
    shutil.rmtree(root / "B" / "2")
    import zarr

    zarr.open_group(str(root / "B" / "2"), mode="w", zarr_format=2)
    with pytest.raises(InputError, match=r"B/2.*'well'"):
        plate_fields(root)
