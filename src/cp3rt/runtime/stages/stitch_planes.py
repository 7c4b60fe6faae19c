"""Stitch per-plane 2-D masks into 3-D objects by IoU between consecutive planes (§4.8, §3.10).

For planes i, i+1: the IoU of every label of plane i+1 (rows) with every label of plane i
(columns, already stitched); entries below ``stitch_threshold`` are dropped; in each column only
the entries equal to the column maximum are kept; each row takes the plane-i label of its
largest entry (first on ties), rows left without any entry get fresh labels in row order.

Deviation from the reference (fixed by default, ``reference_bugs=True`` reproduces it): when a
plane or its predecessor has no masks before any stitching happened, the reference keeps the
plane's own labels 1..n and resets its running maximum to them, so objects further down the
stack reuse label numbers of unrelated objects above a gap (they become one "object"). The
fixed mode always gives such planes fresh labels after the running maximum.
"""

from __future__ import annotations

import numpy as np

from cp3rt.errors import ConfigError, InputError


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix (labels of a + 1) x (labels of b + 1), background row/column included."""
    na, nb = int(a.max()), int(b.max())
    overlap = np.bincount(a.ravel().astype(np.int64) * (nb + 1) + b.ravel(),
                          minlength=(na + 1) * (nb + 1)).reshape(na + 1, nb + 1).astype(np.float64)
    area_a = overlap.sum(axis=1, keepdims=True)
    area_b = overlap.sum(axis=0, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = overlap / (area_a + area_b - overlap)
    iou[np.isnan(iou)] = 0.0
    return iou


def stitch3d(masks: np.ndarray, stitch_threshold: float = 0.25, *,
             reference_bugs: bool = False) -> np.ndarray:
    """Relabel a (Z, Y, X) stack of per-plane label images so that overlapping masks of
    consecutive planes share a label. Returns a new uint32 array (labels are not consecutive)."""
    arr = np.asarray(masks)
    if arr.ndim != 3 or not np.issubdtype(arr.dtype, np.integer):
        raise InputError(f"stitch3d needs a (Z, Y, X) integer label stack; got {arr.dtype} {arr.shape}.")
    thr = float(stitch_threshold)
    if not 0.0 <= thr <= 1.0:
        raise ConfigError(f"stitch_threshold={stitch_threshold!r} is not allowed; allowed: 0..1.")
    out = arr.astype(np.int64, copy=True)  # int64: the running maximum never overflows
    mmax = int(out[0].max()) if len(out) else 0
    started = False
    for i in range(len(out) - 1):
        nxt = out[i + 1]
        iou = _iou(nxt, out[i])[1:, 1:]
        if iou.size == 0:
            count = int(nxt.max())
            if reference_bugs and not started:
                mmax = count  # the reference keeps the plane's labels and resets its maximum
                continue
            table = np.concatenate([[0], np.arange(mmax + 1, mmax + count + 1)])
            mmax += count
        else:
            iou[iou < thr] = 0.0
            iou[iou < iou.max(axis=0)] = 0.0
            table = iou.argmax(axis=1) + 1
            fresh = np.nonzero(iou.max(axis=1) == 0.0)[0]
            table[fresh] = np.arange(mmax + 1, mmax + fresh.size + 1)
            mmax += fresh.size
            table = np.concatenate([[0], table])
            started = True
        out[i + 1] = table[nxt]
    if reference_bugs and arr.dtype.itemsize < 8 and out.max(initial=0) > np.iinfo(arr.dtype).max:
        # the reference's relabel tables have the masks' dtype and wrap around
        return out.astype(arr.dtype).astype(np.uint32)
    return out.astype(np.uint32)
