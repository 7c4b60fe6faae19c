"""Per-object measurements of a label image: the table screening users load into a
spreadsheet, R or pandas (``<stem>_cp_objects.csv``; Parquet with the optional pyarrow).

One row per label present, in label order. Columns (2-D; a volume adds the ``z`` ones):

* ``label``; ``area_px`` (pixels, voxels for a volume)
* ``centroid_y``, ``centroid_x``: mean pixel coordinates (row, column; pixel centres at
  integers, as scikit-image's ``regionprops`` ``centroid``)
* ``bbox_y0``, ``bbox_x0``, ``bbox_y1``, ``bbox_x1``: half-open box (``y0 <= y < y1``, as
  ``regionprops`` ``bbox``)
* ``mean_c<k>``, ``integrated_c<k>``: mean and sum of channel ``k`` (0-based, every channel of
  the INPUT image, raw values, not normalised) over the object's pixels
* ``touches_edge``: 1 when the object has a pixel on the image border (any axis), else 0
* with a known pixel size: ``area_<unit>2`` (or ``volume_<unit>3``), the area in physical units

Vectorised with ``bincount``/``find_objects``: one pass per column whatever the object count.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from cp3rt.errors import ConfigError
from cp3rt.runtime.io.write import output_path

Table = dict[str, np.ndarray]


def _labels(masks: Any) -> np.ndarray:
    m = np.asarray(masks)
    if m.ndim not in (2, 3) or m.dtype.kind not in "biu":
        raise ConfigError(f"masks has shape {m.shape} and dtype {m.dtype}; an object table needs a "
                          "2-D or 3-D integer label image.")
    if m.size and m.min() < 0:
        raise ConfigError(f"masks has negative labels (min {m.min()}); labels must be >= 0.")
    return m.astype(np.int64, copy=False)


def _channels(image: Any, shape: tuple[int, ...]) -> np.ndarray | None:
    """``image`` as (C, *shape) float64: (Y, X) / (C, Y, X) for 2-D masks, (Z, Y, X) /
    (Z, C, Y, X) for a volume. None when there is no image."""
    if image is None:
        return None
    x = np.asarray(image)
    if x.shape == shape:
        return x[None].astype(np.float64)
    if len(shape) == 2 and x.ndim == 3 and x.shape[1:] == shape:
        return x.astype(np.float64)
    if len(shape) == 3 and x.ndim == 4 and x.shape[0] == shape[0] and x.shape[2:] == shape[1:]:
        return np.moveaxis(x, 1, 0).astype(np.float64)
    raise ConfigError(f"image has shape {x.shape} and masks {shape}; the image must have the masks' "
                      "shape, with an optional channel axis ((C, Y, X) or (Z, C, Y, X)).")


def object_table(masks: Any, image: Any = None, *, pixel_size: tuple[float, ...] | None = None,
                 unit: str | None = None) -> Table:
    """Column name -> one value per object (see the module doc). ``image``: the input's
    channels, shaped as :func:`_channels` says; ``pixel_size``: (y, x) or (z, y, x) in ``unit``."""
    m = _labels(masks)
    chans = _channels(image, m.shape)
    flat = m.ravel()
    n = int(flat.max(initial=0)) + 1
    counts = np.bincount(flat, minlength=n)
    present = np.flatnonzero(counts[1:]) + 1
    area = counts[present]
    axes = ("z", "y", "x")[-m.ndim:]
    table: Table = {"label": present, "area_px": area}
    for name, coord in zip(axes, np.indices(m.shape, sparse=True)):
        total = np.bincount(flat, weights=np.broadcast_to(coord, m.shape).ravel(), minlength=n)
        table[f"centroid_{name}"] = total[present] / area
    boxes = ndimage.find_objects(m)
    lo = np.array([[s.start for s in boxes[k - 1]] for k in present], dtype=np.int64).reshape(-1, m.ndim)
    hi = np.array([[s.stop for s in boxes[k - 1]] for k in present], dtype=np.int64).reshape(-1, m.ndim)
    for i, name in enumerate(axes):
        table[f"bbox_{name}0"] = lo[:, i]
    for i, name in enumerate(axes):
        table[f"bbox_{name}1"] = hi[:, i]
    for k, plane in enumerate(chans if chans is not None else ()):
        total = np.bincount(flat, weights=plane.ravel(), minlength=n)[present]
        table[f"mean_c{k}"] = total / area
        table[f"integrated_c{k}"] = total
    table["touches_edge"] = (np.any(lo == 0, axis=1) | np.any(hi == np.array(m.shape), axis=1)).astype(np.int64)
    if pixel_size is not None and unit:
        if len(pixel_size) != m.ndim:
            pixel_size = tuple(pixel_size)[-m.ndim:]
        kind, power = ("volume", 3) if m.ndim == 3 else ("area", 2)
        table[f"{kind}_{_unit_name(unit)}{power}"] = area * float(np.prod(pixel_size))
    return table


def _unit_name(unit: str) -> str:
    return {"µm": "um", "\u03bcm": "um", "micron": "um", "microns": "um"}.get(unit, unit)


def _cell(value: Any) -> str:
    if isinstance(value, (float, np.floating)):
        return repr(round(float(value), 6))
    return str(int(value)) if isinstance(value, (int, np.integer)) else str(value)


def table_csv_bytes(table: Table, extra: dict[str, Any] | None = None) -> bytes:
    """The table as CSV text (header + one line per object); ``extra`` columns (e.g. the well
    and field of a plate) come first, the same value on every row."""
    extra = extra or {}
    cols = [*extra, *table]
    n = len(next(iter(table.values()))) if table else 0
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for i in range(n):
        w.writerow([*(str(v) for v in extra.values()), *(_cell(table[c][i]) for c in table)])
    return buf.getvalue().encode()


def write_object_table(path: str | os.PathLike[str], table: Table) -> Path:
    """Write ``table`` as CSV, or as Parquet when ``path`` ends in ``.parquet`` (needs pyarrow,
    an optional dependency: ``pip install 'cp3rt[parquet]'``)."""
    path = Path(path)
    if path.suffix.lower() == ".parquet":
        from cp3rt._lazy import require

        pa = require("pyarrow", "Writing a Parquet object table")
        pq = require("pyarrow.parquet", "Writing a Parquet object table")
        with output_path(path) as tmp:
            pq.write_table(pa.table({k: np.asarray(v) for k, v in table.items()}), str(tmp))
        return path
    data = table_csv_bytes(table)
    with output_path(path) as tmp:
        tmp.write_bytes(data)
    return path


def read_object_table(path: str | os.PathLike[str]) -> Table:
    """A CSV written by :func:`write_object_table` back as columns (ints stay ints)."""
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    head, body = rows[0], rows[1:]
    out: Table = {}
    for j, name in enumerate(head):
        vals = [r[j] for r in body]
        try:
            out[name] = np.array([int(v) for v in vals], dtype=np.int64)
        except ValueError:
            try:
                out[name] = np.array([float(v) for v in vals])
            except ValueError:
                out[name] = np.array(vals)
    return out
