"""Device flow-error QC (§4.5), the twin of ``_heat.py``: one thread block per label.

Each block diffuses its label on the label's box enlarged by one pixel, in two float64 buffers
of a shared scratch array (offsets per label computed on the host from the boxes), with the
CPU kernel's operations in the CPU kernel's order: the 3x3 sums, the centroid (integer sums),
the source pixel (a min with raster-order ties) and the per-pixel error terms are spread over
the block's threads; only the float64 sums of the error terms run in one thread, in raster
order, because their rounding depends on the order.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda, float64, int64

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


# long: one kernel launch for the whole QC; its phases (centroid, source pixel, diffusion, error
# sums) hand results to each other through block-shared memory and syncthreads barriers. As
# separate kernels each phase would cost a launch and a trip through global memory; as device
# functions the barriers would hide inside helpers that every thread must still reach.
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
    base = offsets[k - 1]  # four buffers of ``area`` float64: heat (2), error terms (2)
    for p in range(tid, 2 * area, nthreads):
        scratch[base + p] = 0.0
    sums = cuda.shared.array(2, int64)
    best_d = cuda.shared.array(1, float64)
    best_p = cuda.shared.array(1, int64)
    if tid == 0:
        sums[0] = 0
        sums[1] = 0
        best_d[0] = np.inf
        best_p[0] = area
    cuda.syncthreads()
    # Centroid in local coordinates (integer sums: any order is exact).
    my_sy = 0
    my_sx = 0
    for p in range(tid, area, nthreads):
        y = p // lx
        x = p - y * lx
        if 0 < y < ly - 1 and 0 < x < lx - 1 and lab[y0 + y - 1, x0 + x - 1] == k:
            my_sy += y
            my_sx += x
    cuda.atomic.add(sums, 0, my_sy)
    cuda.atomic.add(sums, 1, my_sx)
    cuda.syncthreads()
    ymed = sums[0] / n
    xmed = sums[1] / n
    # Source: the label pixel nearest the centroid, ties -> first in raster order. Each thread
    # visits its pixels in raster order and keeps its first minimum (strict <); the block then
    # takes the smallest distance and, among threads holding it, the smallest raster index.
    my_d = np.inf
    my_p = area
    for p in range(tid, area, nthreads):
        y = p // lx
        x = p - y * lx
        if 0 < y < ly - 1 and 0 < x < lx - 1 and lab[y0 + y - 1, x0 + x - 1] == k:
            d = add64(mul64(x - xmed, x - xmed), mul64(y - ymed, y - ymed))
            if d < my_d:
                my_d = d
                my_p = p
    cuda.atomic.min(best_d, 0, my_d)
    cuda.syncthreads()
    if my_d == best_d[0]:
        cuda.atomic.min(best_p, 0, my_p)
    cuda.syncthreads()
    src = best_p[0]
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
    # Squared differences per pixel in parallel; their sums in one thread, in raster order,
    # because float64 sums depend on the order (the CPU adds them in raster order).
    ty = base + 2 * area
    tx = base + 3 * area
    for p in range(tid, area, nthreads):
        y = p // lx
        x = p - y * lx
        if 0 < y < ly - 1 and 0 < x < lx - 1 and lab[y0 + y - 1, x0 + x - 1] == k:
            c = cur + p
            dy, dx = _unit(scratch[c + lx] - scratch[c - lx], scratch[c + 1] - scratch[c - 1])
            ey = dy - np.float64(flow5[0, y0 + y - 1, x0 + x - 1])
            ex = dx - np.float64(flow5[1, y0 + y - 1, x0 + x - 1])
            scratch[ty + p] = mul64(ey, ey)
            scratch[tx + p] = mul64(ex, ex)
    cuda.syncthreads()
    if tid == 0:
        sum_y = 0.0
        sum_x = 0.0
        for y in range(1, ly - 1):
            for x in range(1, lx - 1):
                if lab[y0 + y - 1, x0 + x - 1] == k:
                    sum_y = add64(sum_y, scratch[ty + y * lx + x])
                    sum_x = add64(sum_x, scratch[tx + y * lx + x])
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
