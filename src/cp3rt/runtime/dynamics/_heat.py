"""Heat-diffusion kernels behind masks -> flows (§4.1) and the flow-error QC (§4.5).

Each label is diffused on its own bounding box enlarged by one pixel, exactly like the reference
CPU path, so the results match it to the last bit (same float64 operations in the same order).
Labels are independent, so the drivers run them in parallel (``prange``); each label writes
only its own pixels or its own table row, so there are no races.
"""

from __future__ import annotations

import numba
import numpy as np

from cp3rt.defaults import FLOW_NORM_EPS
from cp3rt.runtime.dynamics._sched import chunked
from cp3rt.runtime.dynamics.threads import parallel_kernel

_LABEL_CHUNK = 4  # labels handed out at a time (cell sizes vary a lot)
_INV9 = 1.0 / 9.0  # the reference multiplies by the double 1/9, it does not divide by 9


@numba.njit(cache=True, nogil=True)
def _diffuse(lab, label, y0, y1, x0, x1, niter):  # pragma: no cover - compiled
    """Heat map of one label on its box [y0,y1) x [x0,x1) enlarged by 1 px on every side.

    Returns (T, inside): T float64 (ly, lx) after the diffusion, inside uint8 of label pixels.
    ``niter < 0`` means the reference's per-label count 2 * (ly + lx).
    """
    ly = y1 - y0 + 2
    lx = x1 - x0 + 2
    inside = np.zeros((ly, lx), np.float64)  # 1.0 / 0.0 so the update is a branch-free product
    sy = 0
    sx = 0
    n = 0
    for y in range(y0, y1):
        for x in range(x0, x1):
            if lab[y, x] == label:
                inside[y - y0 + 1, x - x0 + 1] = 1.0
                sy += y - y0 + 1
                sx += x - x0 + 1
                n += 1
    # Source: the label pixel nearest the centroid (local coordinates, as the reference, so
    # the float64 rounding of the mean - and therefore tie-breaking - is identical).
    ymed = sy / n
    xmed = sx / n
    best = np.inf
    sry = 0
    srx = 0
    for y in range(1, ly - 1):
        for x in range(1, lx - 1):
            if inside[y, x] != 0.0:
                d = (x - xmed) * (x - xmed) + (y - ymed) * (y - ymed)
                if d < best:  # strict: ties keep the first pixel in raster order
                    best = d
                    sry = y
                    srx = x
    n_iter = 2 * (ly + lx) if niter < 0 else niter
    t_cur = np.zeros((ly, lx), np.float64)
    t_new = np.zeros((ly, lx), np.float64)
    for _ in range(n_iter):
        t_cur[sry, srx] += 1.0
        # Synchronous 3x3 mean over label pixels; others stay 0 in both buffers.
        for y in range(1, ly - 1):
            for x in range(1, lx - 1):
                s = (
                    t_cur[y, x] + t_cur[y - 1, x] + t_cur[y + 1, x] + t_cur[y, x - 1]
                    + t_cur[y, x + 1] + t_cur[y - 1, x - 1] + t_cur[y - 1, x + 1]
                    + t_cur[y + 1, x - 1] + t_cur[y + 1, x + 1]
                )
                t_new[y, x] = inside[y, x] * (_INV9 * s)
        t_cur, t_new = t_new, t_cur
    return t_cur, inside


@numba.njit(cache=True, nogil=True, inline="always")
def _unit(dy, dx):  # pragma: no cover - compiled
    norm = FLOW_NORM_EPS + np.sqrt(dy * dy + dx * dx)
    return dy / norm, dx / norm


@parallel_kernel
def _flows_kernel(lab, boxes, niter, mu):  # pragma: no cover - compiled
    """Write unit flows (2, Y, X) float64 of every label present in ``boxes`` into ``mu``."""
    nlab = boxes.shape[0] - 1
    for k in numba.prange(1, nlab + 1):
        if boxes[k, 4] == 0:
            continue
        y0 = boxes[k, 0]
        x0 = boxes[k, 2]
        t, inside = _diffuse(lab, k, y0, boxes[k, 1], x0, boxes[k, 3], niter)
        ly, lx = t.shape
        for y in range(1, ly - 1):
            for x in range(1, lx - 1):
                if inside[y, x] != 0.0:
                    dy, dx = _unit(t[y + 1, x] - t[y - 1, x], t[y, x + 1] - t[y, x - 1])
                    mu[0, y0 + y - 1, x0 + x - 1] = dy
                    mu[1, y0 + y - 1, x0 + x - 1] = dx


@parallel_kernel
def _flow_error_kernel(lab, boxes, flow5, niter):  # pragma: no cover - compiled
    """Per-label mean squared difference between mask flows and ``flow5`` (= network dP / 5).

    err[k-1] = mean_y + mean_x with the sums taken in raster order, like the reference's
    per-label means; absent labels get NaN (an empty mean), as in the reference.
    """
    nlab = boxes.shape[0] - 1
    err = np.full(nlab, np.nan)
    for k in numba.prange(1, nlab + 1):
        if boxes[k, 4] == 0:
            continue
        y0 = boxes[k, 0]
        x0 = boxes[k, 2]
        t, inside = _diffuse(lab, k, y0, boxes[k, 1], x0, boxes[k, 3], niter)
        ly, lx = t.shape
        sum_y = 0.0
        sum_x = 0.0
        for y in range(1, ly - 1):
            for x in range(1, lx - 1):
                if inside[y, x] != 0.0:
                    dy, dx = _unit(t[y + 1, x] - t[y - 1, x], t[y, x + 1] - t[y, x - 1])
                    ey = dy - np.float64(flow5[0, y0 + y - 1, x0 + x - 1])
                    ex = dx - np.float64(flow5[1, y0 + y - 1, x0 + x - 1])
                    sum_y += ey * ey
                    sum_x += ex * ex
        n = np.float64(boxes[k, 4])
        err[k - 1] = sum_y / n + sum_x / n
    return err


def flows_into(lab: np.ndarray, boxes: np.ndarray, niter: int, mu: np.ndarray) -> None:
    """Unit flows of every label into ``mu`` (2, Y, X) float64; ``niter < 0``: per-label rule."""
    with chunked(_LABEL_CHUNK):
        _flows_kernel(lab, boxes, niter, mu)


def flow_errors(lab: np.ndarray, boxes: np.ndarray, flow5: np.ndarray) -> np.ndarray:
    """Per-label flow error against ``flow5`` (= dP / 5); NaN for absent labels."""
    with chunked(_LABEL_CHUNK):
        return _flow_error_kernel(lab, boxes, flow5, -1)
