"""Device flow-error QC (§4.5), the twin of ``_heat.py``: one thread block per label.

Each block diffuses its label on the label's box enlarged by one pixel, in two float64 buffers
of a shared scratch array (offsets per label computed on the host from the boxes), with the
CPU kernel's operations in the CPU kernel's order: the 3x3 sums are spread over the block's
threads (each pixel's sum is still taken in one fixed order), while the centroid, the source
pixel and the per-label error sums are serial in one thread, because their result depends on
the summation / raster order.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda, int64

from cp3rt.defaults import FLOW_NORM_EPS
from cp3rt.runtime.dynamics.cuda._arith import add64, mul64
from cp3rt.runtime.dynamics.cuda._env import simulator_enabled

# Threads per label block; any count gives the same bits (each pixel's sum has a fixed order).
QC_THREADS = 4 if simulator_enabled() else 128
_INV9 = 1.0 / 9.0  # the reference multiplies by the double 1/9


@cuda.jit
def label_boxes(lab, boxes):  # pragma: no cover - device code
    """[ymin, ymax (excl.), xmin, xmax (excl.), count] per label; boxes starts as
    [ly, 0, lx, 0, 0] in every row (``box_init``)."""
    ly, lx = lab.shape
    for i in range(cuda.grid(1), ly * lx, cuda.gridsize(1)):
        y = i // lx
        x = i - y * lx
        v = lab[y, x]
        if v > 0:
            cuda.atomic.min(boxes, (v, 0), y)
            cuda.atomic.max(boxes, (v, 1), y + 1)
            cuda.atomic.min(boxes, (v, 2), x)
            cuda.atomic.max(boxes, (v, 3), x + 1)
            cuda.atomic.add(boxes, (v, 4), 1)


@cuda.jit
def box_init(boxes, ly, lx):  # pragma: no cover - device code
    for k in range(cuda.grid(1), boxes.shape[0], cuda.gridsize(1)):
        boxes[k, 0] = ly
        boxes[k, 1] = 0
        boxes[k, 2] = lx
        boxes[k, 3] = 0
        boxes[k, 4] = 0


@cuda.jit(device=True)
def _unit(dy, dx):  # pragma: no cover - device code
    norm = add64(FLOW_NORM_EPS, math.sqrt(add64(mul64(dy, dy), mul64(dx, dx))))
    return dy / norm, dx / norm


@cuda.jit
def flow_errors(lab, boxes, offsets, scratch, flow5, err):  # pragma: no cover - device code
    """err[k-1] = mean over label k of (mu_y - flow5_y)^2 + mean of (mu_x - flow5_x)^2."""
    k = cuda.blockIdx.x + 1
    tid = cuda.threadIdx.x
    nthreads = cuda.blockDim.x
    n = boxes[k, 4]
    if n == 0:
        if tid == 0:
            err[k - 1] = np.nan  # an empty mean, as in the reference
        return
    y0 = boxes[k, 0]
    x0 = boxes[k, 2]
    ly = boxes[k, 1] - y0 + 2
    lx = boxes[k, 3] - x0 + 2
    area = ly * lx
    base = offsets[k - 1]  # two buffers of ``area`` float64 each
    for p in range(tid, 2 * area, nthreads):
        scratch[base + p] = 0.0
    source = cuda.shared.array(2, int64)
    if tid == 0:
        # Centroid in local coordinates, then the label pixel nearest to it (strict <: ties
        # keep the first in raster order) - serial, in the CPU kernel's order.
        sy = 0
        sx = 0
        for y in range(1, ly - 1):
            for x in range(1, lx - 1):
                if lab[y0 + y - 1, x0 + x - 1] == k:
                    sy += y
                    sx += x
        ymed = sy / n
        xmed = sx / n
        best = np.inf
        source[0] = 0
        source[1] = 0
        for y in range(1, ly - 1):
            for x in range(1, lx - 1):
                if lab[y0 + y - 1, x0 + x - 1] == k:
                    d = add64(mul64(x - xmed, x - xmed), mul64(y - ymed, y - ymed))
                    if d < best:
                        best = d
                        source[0] = y
                        source[1] = x
    cuda.syncthreads()
    src = source[0] * lx + source[1]
    cur = base
    new = base + area
    for _ in range(2 * (ly + lx)):
        if tid == 0:
            scratch[cur + src] += 1.0
        cuda.syncthreads()
        for p in range(tid, area, nthreads):
            y = p // lx
            x = p - y * lx
            if 0 < y < ly - 1 and 0 < x < lx - 1:
                if lab[y0 + y - 1, x0 + x - 1] == k:
                    c = cur + p
                    s = (scratch[c] + scratch[c - lx] + scratch[c + lx] + scratch[c - 1]
                         + scratch[c + 1] + scratch[c - lx - 1] + scratch[c - lx + 1]
                         + scratch[c + lx - 1] + scratch[c + lx + 1])
                    scratch[new + p] = mul64(_INV9, s)
                else:
                    scratch[new + p] = 0.0
        cuda.syncthreads()
        cur, new = new, cur
    if tid == 0:
        sum_y = 0.0
        sum_x = 0.0
        for y in range(1, ly - 1):
            for x in range(1, lx - 1):
                if lab[y0 + y - 1, x0 + x - 1] == k:
                    c = cur + y * lx + x
                    dy, dx = _unit(scratch[c + lx] - scratch[c - lx], scratch[c + 1] - scratch[c - 1])
                    ey = dy - np.float64(flow5[0, y0 + y - 1, x0 + x - 1])
                    ex = dx - np.float64(flow5[1, y0 + y - 1, x0 + x - 1])
                    sum_y = add64(sum_y, mul64(ey, ey))
                    sum_x = add64(sum_x, mul64(ex, ex))
        err[k - 1] = sum_y / n + sum_x / n


@cuda.jit
def drop_labels(lab, err, threshold):  # pragma: no cover - device code
    """Zero every pixel of a label whose error is above ``threshold`` (NaN compares False)."""
    ly, lx = lab.shape
    for i in range(cuda.grid(1), ly * lx, cuda.gridsize(1)):
        y = i // lx
        x = i - y * lx
        v = lab[y, x]
        if v > 0 and err[v - 1] > threshold:
            lab[y, x] = 0
