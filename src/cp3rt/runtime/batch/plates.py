"""OME-Zarr HCS plates (NGFF 0.4 'plate' / 'well' metadata): every field segmented, labels
written back into each field's ``labels/cp3rt`` group, a per-well summary CSV.

Layout read: ``PLATE/.zattrs`` ``plate.wells[].path`` ('A/1') -> ``PLATE/A/1/.zattrs``
``well.images[].path`` ('0') -> the field, an OME-Zarr image. Each field goes through
``blocks.files.segment_file`` (blocks bound the memory whatever the field size), whose
completion marker (``cp3rt`` attributes on the label array, written last) makes a re-run skip
done fields: a killed run resumes. The marker also holds the field's object count and
foreground area, so the CSV is rebuilt from all markers and is the same after a resume.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from cp3rt import defaults as D
from cp3rt._fs import atomic_write_bytes
from cp3rt.errors import InputError
from cp3rt.runtime.batch.files import BatchEvent, BatchSummary, ImageOutcome, OutputOptions
from cp3rt.runtime.config import RunConfig

if TYPE_CHECKING:  # pragma: no cover
    from cp3rt.runtime.pipeline import Pipeline

CSV_SUFFIX = "_wells.csv"
CSV_COLUMNS = ("well", "row", "column", "fields", "fields_done", "objects", "mean_area_px", "objects_per_field")


@dataclasses.dataclass(frozen=True)
class Field:
    well: str  # 'A/1'
    row: str
    column: str
    path: Path


@dataclasses.dataclass(frozen=True)
class PlateSummary:
    batch: BatchSummary  # one outcome per field
    wells: tuple[dict[str, object], ...]
    csv: Path


def _attrs(path: Path) -> dict:
    from cp3rt.runtime.io.zarr_io import _zarr, is_zarr

    if not is_zarr(path):
        return {}
    return dict(_zarr().open(str(path), mode="r").attrs)


def is_plate(path: str | os.PathLike[str]) -> bool:
    return Path(path).is_dir() and "plate" in _attrs(Path(path))


def split_plates(inputs: Sequence[str | os.PathLike[str]]) -> tuple[list[Path], list[str | os.PathLike[str]]]:
    """(plates, the other inputs) among ``cp3rt run``'s INPUT arguments."""
    plates = [Path(p) for p in inputs if is_plate(p)]
    return plates, [p for p in inputs if not is_plate(p)]


def plate_fields(root: str | os.PathLike[str]) -> list[Field]:
    """The plate's fields in metadata order (wells as listed, then fields as listed)."""
    root = Path(root)
    plate = _attrs(root).get("plate")
    if not plate or not plate.get("wells"):
        raise InputError(f"{root}: no NGFF 'plate' metadata with wells in .zattrs.")
    rows = [r["name"] for r in plate.get("rows", [])]
    cols = [c["name"] for c in plate.get("columns", [])]
    fields = []
    for well in plate["wells"]:
        wpath = str(well["path"])
        row, col = wpath.split("/")[:2] if "/" in wpath else (wpath, "")
        if "rowIndex" in well and rows:
            row, col = rows[well["rowIndex"]], cols[well["columnIndex"]]
        meta = _attrs(root / wpath).get("well")
        if not meta or not meta.get("images"):
            raise InputError(f"{root / wpath}: no NGFF 'well' metadata with images in .zattrs.")
        fields += [Field(wpath, row, col, root / wpath / str(img["path"])) for img in meta["images"]]
    return fields


def _plate_stem(root: Path) -> str:
    return root.name.removesuffix(".zarr").removesuffix(".ome")


def well_table(fields: Sequence[Field]) -> tuple[dict[str, object], ...]:
    """Per-well rows from the fields' completion markers (done fields only are counted)."""
    from cp3rt.runtime.io.zarr_io import _zarr, is_complete

    rows: dict[str, dict[str, object]] = {}
    for f in fields:
        r = rows.setdefault(f.well, {"well": f.well, "row": f.row, "column": f.column, "fields": 0,
                                     "fields_done": 0, "objects": 0, "_area": 0})
        r["fields"] += 1  # type: ignore[operator]
        if is_complete(f.path):
            info = _zarr().open(str(f.path / "labels" / D.LABELS_NAME / "0"), mode="r").attrs["cp3rt"]
            r["fields_done"] += 1  # type: ignore[operator]
            r["objects"] += int(info.get("n_objects", 0))  # type: ignore[operator]
            r["_area"] += int(info.get("foreground_px", 0))  # type: ignore[operator]
    out = []
    for r in rows.values():
        n, done, area = int(r["objects"]), int(r["fields_done"]), int(r.pop("_area"))  # type: ignore[arg-type]
        r["mean_area_px"] = round(area / n, 3) if n else 0.0
        r["objects_per_field"] = round(n / done, 3) if done else 0.0
        out.append(r)
    return tuple(out)


def _csv_bytes(rows: Sequence[dict[str, object]]) -> bytes:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue().encode()


def run_plate(
    pipeline: Pipeline,
    root: str | os.PathLike[str],
    run: RunConfig | None = None,
    outputs: OutputOptions | None = None,
    *,
    block_size: int = D.BLOCK_SIZE,
    on_event: Callable[[BatchEvent], None] | None = None,
) -> PlateSummary:
    """Segment every field of the plate at ``root`` in this process (done fields skipped
    unless overwrite), then write ``<plate>_wells.csv`` (see ``finish_plate``)."""
    from cp3rt.runtime.batch.blocks.files import segment_file

    root = Path(root)
    run = run or RunConfig()
    outputs = outputs or OutputOptions()
    emit = on_event or (lambda _event: None)
    fields = plate_fields(root)
    t0 = time.perf_counter()
    outcomes = []
    for i, f in enumerate(fields):
        emit(BatchEvent("start", i, len(fields), f.path))
        outcome = segment_file(pipeline, f.path, run, outputs, block_size=block_size,
                               progress=lambda d, n, i=i, f=f: emit(
                                   BatchEvent("tiles", i, len(fields), f.path, d, n)))
        outcomes.append(outcome)
        emit(BatchEvent("end", i, len(fields), f.path, outcome=outcome))
    return finish_plate(root, fields, outcomes, outputs, time.perf_counter() - t0)


def finish_plate(root: Path, fields: Sequence[Field], outcomes: Sequence[ImageOutcome],
                 outputs: OutputOptions, seconds: float) -> PlateSummary:
    """Write ``<plate>_wells.csv`` into ``outputs.out_dir`` (default: next to the plate) from
    the fields' completion markers, once every field has been tried."""
    wells = well_table(fields)
    folder = Path(outputs.out_dir) if outputs.out_dir is not None else Path(root).parent
    csv_path = folder / f"{_plate_stem(Path(root))}{CSV_SUFFIX}"
    atomic_write_bytes(csv_path, _csv_bytes(wells))
    return PlateSummary(BatchSummary(tuple(outcomes), seconds), wells, csv_path)
