"""Per-object tables of a plate (``<plate>_objects.csv``) and its count heat-map
(``<plate>_wells.png``): what a screening line loads after a plate run.

``<plate>_objects.csv`` is the per-image table of ``io.objects_table`` for every done field,
one file for the plate, with ``well``, ``row``, ``column`` and ``field`` columns first, so a
per-well summary is one group-by away. Intensities are of the field's own image (every
channel, raw values).

For the plate run to call once its fields are done (``finish_plate``):
``write_plate_outputs(root, fields, label_roots, wells, folder, outputs)`` writes the table
with ``--table`` and the heat-map with ``--overlay`` (the picture option); the pieces
(:func:`field_arrays`, :func:`plate_objects_csv`, ``io.plate_picture.write_plate_heatmap``)
work on their own too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cp3rt import defaults as D
from cp3rt.runtime.batch.files import OutputOptions

OBJECTS_CSV_SUFFIX = "_objects.csv"
HEATMAP_SUFFIX = "_wells.png"


@dataclasses.dataclass(frozen=True)
class FieldObjects:
    """One field's label image and image, with where it sits on the plate."""

    well: str
    row: str
    column: str
    field: str
    masks: np.ndarray
    image: np.ndarray | None = None


def field_arrays(image_root: Path, labels_root: Path, name: str = D.LABELS_NAME) -> tuple[np.ndarray, np.ndarray]:
    """(masks, image) of one field: the labels' level 0 and the image's level 0 with its
    size-1 axes dropped, so that it is (Y, X) or (C, Y, X) over (Y, X) masks."""
    from cp3rt.runtime.io.zarr_io import open_lazy

    masks = np.asarray(open_lazy(Path(labels_root) / "labels" / name / "0")[...])
    image = np.asarray(open_lazy(Path(image_root))[...])
    while image.ndim > masks.ndim and image.shape[0] == 1:
        image = image[0]
    squeezed = np.squeeze(masks)
    if squeezed.ndim == 2 and image.ndim > 2:
        image = image.reshape(-1, *image.shape[-2:])
    return squeezed, image


def plate_objects_csv(items: Iterable[FieldObjects]) -> bytes:
    """One CSV for many fields: the header once, then each field's objects."""
    from cp3rt.runtime.io.objects_table import object_table, table_csv_bytes

    out = b""
    for it in items:
        extra = {"well": it.well, "row": it.row, "column": it.column, "field": it.field}
        text = table_csv_bytes(object_table(it.masks, it.image), extra)
        out += text if not out else text.split(b"\n", 1)[1]
    return out


def write_plate_objects(path: Path, items: Iterable[FieldObjects]) -> Path:
    """Write :func:`plate_objects_csv` atomically."""
    from cp3rt._fs import atomic_write_bytes

    atomic_write_bytes(path, plate_objects_csv(items))
    return Path(path)


def write_plate_outputs(root: Path, fields: Sequence[Any], label_roots: Sequence[Path],
                        wells: Sequence[Mapping[str, object]], folder: Path,
                        outputs: OutputOptions) -> list[Path]:
    """The plate's object table (``outputs.table``) and count heat-map (``outputs.overlay``)
    into ``folder``. ``fields``: the plate's fields (``well``, ``row``, ``column``, ``path``);
    ``label_roots``: where each one's labels are; ``wells``: the per-well CSV rows."""
    from cp3rt.runtime.io.plate_picture import write_plate_heatmap
    from cp3rt.runtime.io.zarr_io import is_complete

    stem = Path(root).name.removesuffix(".zarr").removesuffix(".ome")
    written = []
    if outputs.table:
        items = (FieldObjects(f.well, f.row, f.column, f.path.name, *field_arrays(f.path, where))
                 for f, where in zip(fields, label_roots) if is_complete(where))
        written.append(write_plate_objects(Path(folder) / f"{stem}{OBJECTS_CSV_SUFFIX}", items))
    if outputs.overlay and wells:
        written.append(write_plate_heatmap(Path(folder) / f"{stem}{HEATMAP_SUFFIX}", wells,
                                           title=f"{stem}: objects per well"))
    return written


def field_outputs(outputs: OutputOptions) -> OutputOptions:
    """What each field's block run is asked for: the plate-level outputs (the object table and
    the heat-map, written by :func:`write_plate_outputs` once every field is done) removed."""
    return dataclasses.replace(outputs, table=None, overlay=False)
