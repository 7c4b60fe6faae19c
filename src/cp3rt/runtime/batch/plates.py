"""OME-Zarr HCS plates (NGFF 0.4 or 0.5 'plate' / 'well' metadata, read through ome-zarr-py):
every field segmented, labels written into each field's ``labels/cp3rt`` group, a per-well
summary CSV. With an output folder (``--out``) the plate is only read: the labels go to an
output plate store ``OUT/<plate name>`` that mirrors the plate's layout (plate, wells, fields),
so a read-only plate can be segmented; without one, into the plate itself.

Layout read: plate metadata ``plate.wells[].path`` ('A/1') -> well metadata
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
from cp3rt.errors import InputError, OutputError
from cp3rt.runtime.batch.files import BatchEvent, BatchSummary, ImageOutcome, OutputOptions
from cp3rt.runtime.config import RunConfig

if TYPE_CHECKING:  # pragma: no cover
    from cp3rt.runtime.batch.stream import StreamConfig
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
    """The plate / well metadata at ``path`` whatever the NGFF version ({} for other inputs)."""
    from cp3rt.runtime.io.ngff import plate_attrs

    return plate_attrs(path)


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
        raise InputError(f"{root}: no NGFF 'plate' metadata with wells.")
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
            raise InputError(f"{root / wpath}: no NGFF 'well' metadata with images.")
        fields += [Field(wpath, row, col, root / wpath / str(img["path"])) for img in meta["images"]]
    return fields


def _plate_stem(root: Path) -> str:
    return root.name.removesuffix(".zarr").removesuffix(".ome")


def plate_outputs_folder(root: str | os.PathLike[str], outputs: OutputOptions) -> Path:
    """Where ``<plate>_wells.csv`` and the plate's other tables and pictures go: ``out_dir``,
    or the folder that holds the plate."""
    return Path(outputs.out_dir) if outputs.out_dir is not None else Path(root).parent


def wells_csv_path(root: str | os.PathLike[str], outputs: OutputOptions) -> Path:
    """``<plate>_wells.csv`` for the plate at ``root`` (its name without .ome.zarr)."""
    return plate_outputs_folder(root, outputs) / f"{_plate_stem(Path(root))}{CSV_SUFFIX}"


def output_plate(root: str | os.PathLike[str], outputs: OutputOptions) -> Path | None:
    """Where a plate's labels go: ``out_dir/<plate name>`` with an output folder, None (into
    the plate itself) without one or when that is the plate."""
    if outputs.out_dir is None:
        return None
    out = Path(outputs.out_dir) / Path(root).name
    return None if out.resolve() == Path(root).resolve() else out


def labels_root(field: Field, root: str | os.PathLike[str], out_plate: Path | None) -> Path:
    """The group that holds ``field``'s ``labels/``: the field, or its mirror in ``out_plate``."""
    return field.path if out_plate is None else out_plate / field.path.relative_to(Path(root))


def prepare_output(root: Path, outputs: OutputOptions) -> Path | None:
    """Mirror the plate's layout into its output store (see ``output_plate``); without one,
    refuse a plate that cannot be written to, saying how to segment it."""
    from cp3rt.runtime.io.ngff import mirror_plate

    out_plate = output_plate(root, outputs)
    if out_plate is not None:
        mirror_plate(root, out_plate)
    elif not os.access(root, os.W_OK):
        raise OutputError(f"{root}: the plate is read-only; pass an output folder (--out DIR) to write its "
                          "labels to an output plate store there.")
    return out_plate


@dataclasses.dataclass
class _WellCounts:
    """Running totals of one well over its fields' completion markers."""

    well: str
    row: str
    column: str
    fields: int = 0
    fields_done: int = 0
    objects: int = 0
    area_px: int = 0

    def as_row(self) -> dict[str, object]:
        """The CSV row (``CSV_COLUMNS``)."""
        n, done = self.objects, self.fields_done
        return {"well": self.well, "row": self.row, "column": self.column, "fields": self.fields,
                "fields_done": done, "objects": n, "mean_area_px": round(self.area_px / n, 3) if n else 0.0,
                "objects_per_field": round(n / done, 3) if done else 0.0}


def well_table(fields: Sequence[Field], roots: Sequence[Path] | None = None) -> tuple[dict[str, object], ...]:
    """Per-well rows from the fields' completion markers (done fields only are counted);
    ``roots``: the groups holding each field's labels (default: the fields)."""
    from cp3rt.runtime.io.zarr_io import is_complete, zarr_module

    wells: dict[str, _WellCounts] = {}
    for f, where in zip(fields, roots or [f.path for f in fields]):
        w = wells.setdefault(f.well, _WellCounts(f.well, f.row, f.column))
        w.fields += 1
        if is_complete(where):
            info = zarr_module().open(str(where / "labels" / D.LABELS_NAME / "0"), mode="r").attrs["cp3rt"]
            w.fields_done += 1
            w.objects += int(info.get("n_objects", 0))
            w.area_px += int(info.get("foreground_px", 0))
    return tuple(w.as_row() for w in wells.values())


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
    stream: StreamConfig | None = None,
) -> PlateSummary:
    """Segment every field of the plate at ``root`` in this process (done fields skipped
    unless overwrite; ``stream``: the workers and threads of each field's blocks), then write
    ``<plate>_wells.csv`` (see ``finish_plate``)."""
    from cp3rt.runtime.batch.blocks.files import segment_file
    from cp3rt.runtime.batch.blocks.image_files import local_runner
    from cp3rt.runtime.batch.plate_objects import field_outputs

    root = Path(root)
    run = run or RunConfig()
    outputs = outputs or OutputOptions()
    emit = on_event or (lambda _event: None)
    fields = plate_fields(root)
    out_plate = prepare_output(root, outputs)
    t0 = time.perf_counter()
    outcomes = []
    for i, f in enumerate(fields):
        emit(BatchEvent("start", i, len(fields), f.path))
        outcome = segment_file(pipeline, f.path, run, field_outputs(outputs), block_size=block_size,
                               labels_root=labels_root(f, root, out_plate), runner=local_runner(pipeline, stream),
                               progress=lambda d, n, i=i, f=f: emit(
                                   BatchEvent("tiles", i, len(fields), f.path, d, n)))
        outcomes.append(outcome)
        emit(BatchEvent("end", i, len(fields), f.path, outcome=outcome))
    return finish_plate(root, fields, outcomes, outputs, time.perf_counter() - t0)


def finish_plate(root: Path, fields: Sequence[Field], outcomes: Sequence[ImageOutcome],
                 outputs: OutputOptions, seconds: float) -> PlateSummary:
    """Write ``<plate>_wells.csv`` into ``outputs.out_dir`` (default: next to the plate) from
    the fields' completion markers, once every field has been tried."""
    from cp3rt.runtime.batch.plate_objects import write_plate_outputs

    out_plate = output_plate(root, outputs)
    roots = [labels_root(f, root, out_plate) for f in fields]
    wells = well_table(fields, roots)
    folder = plate_outputs_folder(root, outputs)
    csv_path = wells_csv_path(root, outputs)
    atomic_write_bytes(csv_path, _csv_bytes(wells))
    write_plate_outputs(root, fields, roots, wells, folder, outputs)  # --table / --overlay: objects, heat-map
    return PlateSummary(BatchSummary(tuple(outcomes), seconds), wells, csv_path)
