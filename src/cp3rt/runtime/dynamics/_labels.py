"""Label-image plumbing shared by the dynamics kernels: validation, bounding boxes, renumbering.

Kernels work on ``int32`` label images (one compiled variant, labels up to 2**31 - 1); the
public functions convert on the way in and give the caller's dtype back on the way out.
"""

from __future__ import annotations

import numba
import numpy as np

from cp3rt.errors import InputError
from cp3rt.runtime.dynamics.threads import parallel_kernel

# Box table columns: [ymin, ymax (exclusive), xmin, xmax (exclusive), pixel count].
BOX_COLS = 5


def as_label_image(masks: np.ndarray, name: str = "masks") -> tuple[np.ndarray, np.ndarray | None]:
    """Validate a 2-D label image and return it as C-contiguous int32 plus the value table.

    The value table is ``None`` when labels were kept as they are. When the largest label is
    larger than the number of pixels (sparse, huge ids) the labels are compacted to 1..K by
    value so that per-label tables stay small; ``values[k]`` is the original id of label k.
    """
    arr = np.asarray(masks)
    if arr.ndim != 2:
        raise InputError(
            f"{name} must be a 2-D label image (Y, X); got an array with shape {arr.shape} "
            "(these functions are 2-D)."
        )
    if arr.dtype == np.bool_:
        arr = arr.astype(np.int32)
    if not np.issubdtype(arr.dtype, np.integer):
        raise InputError(f"{name} must have an integer dtype (labels); got {arr.dtype}.")
    if arr.size == 0:
        return np.zeros(arr.shape, np.int32), None
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 0:
        raise InputError(f"{name} contains negative label {lo}; labels must be >= 0.")
    if hi <= arr.size and hi < 2**31:
        return np.ascontiguousarray(arr, dtype=np.int32), None
    values, inverse = np.unique(arr, return_inverse=True)
    if values[0] != 0:  # keep 0 = background even when the image has none
        values = np.concatenate([[0], values])
        inverse = inverse + 1
    return np.ascontiguousarray(inverse.reshape(arr.shape), dtype=np.int32), values


@numba.njit(cache=True, nogil=True)
def _label_boxes(lab, nlab):  # pragma: no cover - compiled
    """Bounding boxes and pixel counts of labels 1..nlab in one raster pass."""
    ly, lx = lab.shape
    boxes = np.zeros((nlab + 1, BOX_COLS), np.int64)
    for k in range(nlab + 1):
        boxes[k, 0] = ly
        boxes[k, 2] = lx
    for y in range(ly):
        for x in range(lx):
            v = lab[y, x]
            if v > 0:
                if y < boxes[v, 0]:
                    boxes[v, 0] = y
                if y + 1 > boxes[v, 1]:
                    boxes[v, 1] = y + 1
                if x < boxes[v, 2]:
                    boxes[v, 2] = x
                if x + 1 > boxes[v, 3]:
                    boxes[v, 3] = x + 1
                boxes[v, 4] += 1
    return boxes


def label_boxes(lab: np.ndarray) -> np.ndarray:
    """(max+1, 5) int64 table [ymin, ymax, xmin, xmax, count]; absent labels have count 0."""
    nlab = int(lab.max()) if lab.size else 0
    return _label_boxes(lab, nlab)


@numba.njit(cache=True, nogil=True)
def _first_appearance_map(flat, nlab):  # pragma: no cover - compiled
    """Map old label -> new label, new labels numbered by first appearance in array order."""
    remap = np.zeros(nlab + 1, np.int32)
    nxt = 1
    for i in range(flat.size):
        v = flat[i]
        if v > 0 and remap[v] == 0:
            remap[v] = nxt
            nxt += 1
    return remap, nxt - 1


@parallel_kernel
def apply_map(lab, remap):  # pragma: no cover - compiled
    ly, lx = lab.shape
    out = np.empty_like(lab)
    for y in numba.prange(ly):
        for x in range(lx):
            out[y, x] = remap[lab[y, x]]
    return out


def renumber_raster(lab: np.ndarray) -> tuple[np.ndarray, int]:
    """Relabel to 1..N in order of first appearance in raster (C) order; 0 stays 0."""
    nlab = int(lab.max()) if lab.size else 0
    if nlab == 0:
        return lab.copy(), 0
    remap, n = _first_appearance_map(lab.ravel(), nlab)
    return apply_map(lab, remap), int(n)


def label_dtype(max_label: int) -> type[np.unsignedinteger]:
    """uint16 while every label fits (max < 65536, §3.8), uint32 beyond."""
    return np.uint16 if max_label < 2**16 else np.uint32
