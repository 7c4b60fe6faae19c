"""Label images as the metrics see them: validation, the pixel-count table of two label images,
IoU from it, the labels actually present, and the equivalent-circle diameter (spec §5).

Two kinds of table, on purpose:

* :func:`label_overlap` / :func:`intersection_over_union` index rows and columns by label value
  (``max + 1`` of each, as the reference), so ``table[a, b]`` is about labels ``a`` and ``b``;
* :func:`object_overlap` indexes them by the labels *present* (1..n in ascending order of value),
  which is what object counts and matching use: a gap in the numbering is no object, and a
  label of 4e9 does not make a table of 4e9 rows. On consecutive labels the two are equal.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

from cp3rt.errors import InputError

# A table indexed by label value is refused when the largest label exceeds the pixel count:
# most of its rows would be absent labels, and 2**32-sized labels would not fit in memory.
_SPARSE_HINT = ("relabel to consecutive ids first (average_precision, match_image and "
                "aggregated_jaccard_index count the labels present and accept any ids)")


@njit(cache=True, nogil=True)
def _label_overlap_kernel(x: np.ndarray, y: np.ndarray, nx: int, ny: int) -> np.ndarray:
    table = np.zeros((nx, ny), dtype=np.int64)
    for i in range(x.shape[0]):
        table[x[i], y[i]] += 1
    return table


def as_labels(masks: Any, name: str) -> np.ndarray:
    """``masks`` as an integer label image; bool and integral floats accepted, else InputError."""
    arr = np.asarray(masks)
    if arr.dtype == bool:
        return arr.astype(np.uint8)
    if arr.dtype.kind == "f":
        # Label images saved as float (e.g. by some TIFF writers) are accepted when integral.
        if not np.all(np.isfinite(arr)) or np.any(arr != np.floor(arr)):
            raise InputError(f"{name} has non-integer values; a label image must hold integers.")
    elif arr.dtype.kind not in "iu":
        raise InputError(f"{name} has dtype {arr.dtype}; a label image must hold integers.")
    if arr.dtype.kind == "i" and arr.size and arr.min() < 0:
        raise InputError(f"{name} has negative labels (min {arr.min()}); labels must be >= 0.")
    # Integer label images keep their dtype (no copy); the kernel compiles once per dtype.
    return arr if arr.dtype.kind in "iu" else arr.astype(np.intp)


def _check_shapes(t: np.ndarray, p: np.ndarray) -> None:
    if t.shape != p.shape:
        raise InputError(
            f"masks_true has shape {t.shape} but masks_pred has shape {p.shape}; they must match."
        )


def _table(t: np.ndarray, p: np.ndarray, nx: int, ny: int) -> np.ndarray:
    return _label_overlap_kernel(np.ascontiguousarray(t).ravel(), np.ascontiguousarray(p).ravel(),
                                 nx, ny)


def max_label(labels: np.ndarray, name: str) -> int:
    """The largest label, refused (InputError) when it exceeds the pixel count."""
    top = int(labels.max()) if labels.size else 0
    if top > max(labels.size, 1):
        raise InputError(f"{name} has label ids up to {top}, more than its {labels.size} pixels; "
                         f"{_SPARSE_HINT}.")
    return top


def label_overlap(masks_true: Any, masks_pred: Any) -> np.ndarray:
    """Contingency table ``(max_true+1, max_pred+1)`` of pixel counts, background included."""
    t = as_labels(masks_true, "masks_true")
    p = as_labels(masks_pred, "masks_pred")
    _check_shapes(t, p)
    return _table(t, p, max_label(t, "masks_true") + 1, max_label(p, "masks_pred") + 1)


def iou_from_overlap(table: np.ndarray) -> np.ndarray:
    """IoU of every row/column pair of a pixel-count table; 0 where undefined."""
    overlap = table.astype(np.float64)
    area_t = overlap.sum(axis=1, keepdims=True)
    area_p = overlap.sum(axis=0, keepdims=True)
    union = area_t + area_p - overlap
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = overlap / union
    iou[~np.isfinite(iou)] = 0.0
    return iou


def intersection_over_union(masks_true: Any, masks_pred: Any) -> np.ndarray:
    """IoU of every (true, pred) label pair, background row/column included; 0 where undefined."""
    return iou_from_overlap(label_overlap(masks_true, masks_pred))


def present_labels(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(compact, values)``: labels renumbered 1..n in ascending order of value (0 stays 0) and
    the n original values. Consecutive labels come back unchanged (no copy)."""
    flat = labels.ravel()
    top = int(flat.max()) if flat.size else 0
    if top == 0:
        return labels, np.zeros(0, dtype=np.int64)
    if top <= 4 * flat.size:  # a count per value is cheap: no sort
        counts = np.bincount(flat.astype(np.intp, copy=False), minlength=top + 1)
        values = np.flatnonzero(counts[1:]) + 1
        if values.size == top:
            return labels, values.astype(np.int64)
        lut = np.zeros(top + 1, dtype=np.int64)
        lut[values] = np.arange(1, values.size + 1)
        return lut[labels], values.astype(np.int64)
    values, inverse = np.unique(flat, return_inverse=True)
    if values[0] == 0:
        return inverse.reshape(labels.shape), values[1:].astype(np.int64)
    return (inverse + 1).reshape(labels.shape), values.astype(np.int64)


def object_overlap(t: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel-count table over the labels present, background row/column first, and the label
    values of its rows and columns: ``(table, true_values, pred_values)``."""
    _check_shapes(t, p)
    tc, tv = present_labels(t)
    pc, pv = present_labels(p)
    return _table(tc, pc, tv.size + 1, pv.size + 1), tv, pv


def diameters(masks: Any) -> float:
    """Equivalent-circle diameter of the median object area, ``median(sqrt(area)) * 2/sqrt(pi)``.

    0.0 when there are no objects. Only labels > 0 count (the reference drops the first count
    of its unique-table, which is a real object when no background pixel exists; cp3rt does not).
    """
    m = as_labels(masks, "masks")
    compact, _ = present_labels(m)
    counts = np.bincount(compact.ravel().astype(np.intp, copy=False))[1:]
    counts = counts[counts > 0]
    if counts.size == 0:
        return 0.0
    return float(np.median(np.sqrt(counts)) / (np.sqrt(np.pi) / 2))
