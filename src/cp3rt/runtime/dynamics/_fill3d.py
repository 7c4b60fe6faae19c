"""Kernels of the 3-D clean-up (§4.7 in 3-D): label boxes and per-label hole filling."""

from __future__ import annotations

import numba
import numpy as np

# Box table columns: [zmin, zmax, ymin, ymax, xmin, xmax (max exclusive), voxel count].
BOX3_COLS = 7


@numba.njit(cache=True, nogil=True)
def label_boxes3d(lab, nlab):  # pragma: no cover - compiled
    lz, ly, lx = lab.shape
    boxes = np.zeros((nlab + 1, BOX3_COLS), np.int64)
    for k in range(nlab + 1):
        boxes[k, 0] = lz
        boxes[k, 2] = ly
        boxes[k, 4] = lx
    for z in range(lz):
        for y in range(ly):
            for x in range(lx):
                v = lab[z, y, x]
                if v > 0:
                    boxes[v, 0] = min(boxes[v, 0], z)
                    boxes[v, 1] = max(boxes[v, 1], z + 1)
                    boxes[v, 2] = min(boxes[v, 2], y)
                    boxes[v, 3] = max(boxes[v, 3], y + 1)
                    boxes[v, 4] = min(boxes[v, 4], x)
                    boxes[v, 5] = max(boxes[v, 5], x + 1)
                    boxes[v, 6] += 1
    return boxes


@numba.njit(cache=True, nogil=True)
def _fill_label3d(lab, k, box, value):  # pragma: no cover - compiled
    """Fill the holes of label ``k`` inside its box and write ``value`` over label + holes.

    A hole is a voxel of the box that is not ``k`` and cannot reach a face of the box through
    6-connected non-``k`` voxels (enclosed voxels of other labels are holes too, as in the
    reference). Returns False (and writes nothing) when no voxel of ``k`` is left.
    """
    z0, y0, x0 = box[0], box[2], box[4]
    d = box[1] - z0
    h = box[3] - y0
    w = box[5] - x0
    reached = np.zeros((d, h, w), np.uint8)
    stack = np.empty(d * h * w, np.int64)
    sp = 0
    present = False
    for z in range(d):
        for y in range(h):
            for x in range(w):
                if lab[z0 + z, y0 + y, x0 + x] == k:
                    present = True
                elif z == 0 or y == 0 or x == 0 or z == d - 1 or y == h - 1 or x == w - 1:
                    reached[z, y, x] = 1
                    stack[sp] = (z * h + y) * w + x
                    sp += 1
    if not present:
        return False
    while sp > 0:
        sp -= 1
        s = stack[sp]
        x = s % w
        y = (s // w) % h
        z = s // (w * h)
        for dz, dy, dx in ((-1, 0, 0), (1, 0, 0), (0, -1, 0), (0, 1, 0), (0, 0, -1), (0, 0, 1)):
            zz = z + dz
            yy = y + dy
            xx = x + dx
            if (0 <= zz < d and 0 <= yy < h and 0 <= xx < w and reached[zz, yy, xx] == 0
                    and lab[z0 + zz, y0 + yy, x0 + xx] != k):
                reached[zz, yy, xx] = 1
                stack[sp] = (zz * h + yy) * w + xx
                sp += 1
    for z in range(d):
        for y in range(h):
            for x in range(w):
                if reached[z, y, x] == 0:
                    lab[z0 + z, y0 + y, x0 + x] = value
    return True


@numba.njit(cache=True, nogil=True)
def fill_all3d(lab, boxes, keep_numbering_of_vanished):  # pragma: no cover - compiled
    """Fill holes label by label in increasing order, relabelling to 1, 2, ... in place
    (sequential: a fill may swallow labels processed later). Returns the labels used."""
    j = 0
    for k in range(1, boxes.shape[0]):
        if boxes[k, 6] == 0:
            continue
        if _fill_label3d(lab, k, boxes[k], j + 1):
            j += 1
        elif keep_numbering_of_vanished:
            j += 1
    return j
