"""Kernels of the final clean-up (§4.7): per-label hole filling and pixel counting."""

from __future__ import annotations

import numba
import numpy as np

from cp3rt.runtime.dynamics.threads import parallel_kernel


@numba.njit(cache=True, nogil=True)
def _fill_label(lab, k, y0, y1, x0, x1, value):  # pragma: no cover - compiled
    """Fill the holes of label ``k`` inside its box and write ``value`` over label + holes.

    A hole is a pixel of the box that is not ``k`` and cannot reach the box border through
    4-connected non-``k`` pixels (enclosed pixels of other labels are holes too, as in the
    reference). Returns False (and writes nothing) when no pixel of ``k`` is left.
    """
    h = y1 - y0
    w = x1 - x0
    reached = np.zeros((h, w), np.uint8)
    stack = np.empty(h * w, np.int64)
    sp = 0
    present = False
    for y in range(h):
        for x in range(w):
            if lab[y0 + y, x0 + x] == k:
                present = True
            elif y == 0 or x == 0 or y == h - 1 or x == w - 1:
                reached[y, x] = 1
                stack[sp] = y * w + x
                sp += 1
    if not present:
        return False
    while sp > 0:
        sp -= 1
        y = stack[sp] // w
        x = stack[sp] - y * w
        for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
            yy = y + dy
            xx = x + dx
            if 0 <= yy < h and 0 <= xx < w and reached[yy, xx] == 0 and lab[y0 + yy, x0 + xx] != k:
                reached[yy, xx] = 1
                stack[sp] = yy * w + xx
                sp += 1
    for y in range(h):
        for x in range(w):
            if reached[y, x] == 0:
                lab[y0 + y, x0 + x] = value
    return True


@numba.njit(cache=True, nogil=True)
def fill_all(lab, boxes, keep_numbering_of_vanished):  # pragma: no cover - compiled
    """Fill holes label by label in increasing order, relabelling to 1, 2, ... in place.

    Sequential on purpose: a label's fill may swallow pixels of labels processed later, which
    must then see the updated image. ``keep_numbering_of_vanished`` reproduces the reference,
    which still uses up a number for a label that an earlier fill swallowed completely.
    Returns the number of labels used.
    """
    j = 0
    for k in range(1, boxes.shape[0]):
        if boxes[k, 4] == 0:
            continue
        if _fill_label(lab, k, boxes[k, 0], boxes[k, 1], boxes[k, 2], boxes[k, 3], j + 1):
            j += 1
        elif keep_numbering_of_vanished:
            j += 1
    return j


_COUNT_BLOCKS = 16  # row blocks counted in parallel, then summed


@parallel_kernel
def label_counts(lab, nlab):  # pragma: no cover - compiled
    """Pixel count per label value 0..nlab (partial counts per row block, then summed)."""
    ly, lx = lab.shape
    partial = np.zeros((_COUNT_BLOCKS, nlab + 1), np.int64)
    chunk = (ly + _COUNT_BLOCKS - 1) // _COUNT_BLOCKS
    for b in numba.prange(_COUNT_BLOCKS):
        for y in range(b * chunk, min(ly, (b + 1) * chunk)):
            for x in range(lx):
                partial[b, lab[y, x]] += 1
    return partial.sum(axis=0)
