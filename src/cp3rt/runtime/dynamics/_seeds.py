"""Kernels of mask assembly from end points (§4.4): histogram, seeds, seed regions, lookup."""

from __future__ import annotations

import numba
import numpy as np

from cp3rt.defaults import (
    EXPAND_ITERATIONS,
    EXPAND_MIN_COUNT,
    EXPAND_RADIUS,
    HIST_PAD,
    SEED_MIN_COUNT,
    SEED_WINDOW,
)
from cp3rt.runtime.dynamics.threads import parallel_kernel

_WIN = 2 * EXPAND_RADIUS + 1
_HALF = SEED_WINDOW // 2


@numba.njit(cache=True, nogil=True)
def histogram(py, px, ly, lx):  # pragma: no cover - compiled
    """End-point counts on the padded grid; returns (hist, padded y, padded x) per point."""
    hist = np.zeros((ly + 2 * HIST_PAD, lx + 2 * HIST_PAD), np.int32)
    n = py.shape[0]
    qy = np.empty(n, np.int64)
    qx = np.empty(n, np.int64)
    for j in range(n):
        # Shift by the pad and clip to [0, L + pad - 1] (the reference's bounds).
        y = min(max(py[j] + HIST_PAD, 0), ly + HIST_PAD - 1)
        x = min(max(px[j] + HIST_PAD, 0), lx + HIST_PAD - 1)
        qy[j] = y
        qx[j] = x
        hist[y, x] += 1
    return hist, qy, qx


@numba.njit(cache=True, nogil=True)
def _is_seed(hist, y, x):  # pragma: no cover - compiled
    h = hist[y, x]
    if h <= SEED_MIN_COUNT:
        return False
    hy, hx = hist.shape
    for yy in range(max(0, y - _HALF), min(hy, y + _HALF + 1)):
        for xx in range(max(0, x - _HALF), min(hx, x + _HALF + 1)):
            if hist[yy, xx] > h:
                return False
    return True


@parallel_kernel
def find_seeds(hist):  # pragma: no cover - compiled
    """Seeds in raster order: bins with more than SEED_MIN_COUNT end points that equal the
    maximum of their 5x5 neighbourhood (plateaus included). Returns (ys, xs, counts)."""
    hy, hx = hist.shape
    per_row = np.zeros(hy, np.int64)
    for y in numba.prange(hy):
        c = 0
        for x in range(hx):
            if _is_seed(hist, y, x):
                c += 1
        per_row[y] = c
    start = np.zeros(hy + 1, np.int64)
    for y in range(hy):
        start[y + 1] = start[y] + per_row[y]
    n = start[hy]
    sy = np.empty(n, np.int64)
    sx = np.empty(n, np.int64)
    cnt = np.empty(n, np.int64)
    for y in numba.prange(hy):
        k = start[y]
        for x in range(hx):
            if _is_seed(hist, y, x):
                sy[k] = y
                sx[k] = x
                cnt[k] = hist[y, x]
                k += 1
    return sy, sx, cnt


@parallel_kernel
def seed_regions(hist, sy, sx):  # pragma: no cover - compiled
    """Per seed, the 11x11 window bins reachable from the centre in <= 5 king moves through
    bins with more than EXPAND_MIN_COUNT end points (5 x [3x3 dilation, then mask])."""
    n = sy.shape[0]
    regions = np.zeros((n, _WIN, _WIN), np.uint8)
    for k in numba.prange(n):
        ok = np.zeros((_WIN, _WIN), np.uint8)
        for i in range(_WIN):
            for j in range(_WIN):
                ok[i, j] = hist[sy[k] - EXPAND_RADIUS + i, sx[k] - EXPAND_RADIUS + j] > EXPAND_MIN_COUNT
        cur = np.zeros((_WIN, _WIN), np.uint8)
        nxt = np.zeros((_WIN, _WIN), np.uint8)
        cur[EXPAND_RADIUS, EXPAND_RADIUS] = 1
        for _ in range(EXPAND_ITERATIONS):
            for i in range(_WIN):
                for j in range(_WIN):
                    v = 0
                    for a in range(max(0, i - 1), min(_WIN, i + 2)):
                        for b in range(max(0, j - 1), min(_WIN, j + 2)):
                            v |= cur[a, b]
                    nxt[i, j] = v & ok[i, j]
            cur, nxt = nxt, cur
        regions[k] = cur
    return regions


@numba.njit(cache=True, nogil=True)
def paint(shape, sy, sx, regions, order):  # pragma: no cover - compiled
    """Label canvas: seeds painted in ``order`` with label rank+1; later seeds overwrite."""
    canvas = np.zeros(shape, np.int32)
    for r in range(order.shape[0]):
        k = order[r]
        for i in range(_WIN):
            for j in range(_WIN):
                if regions[k, i, j]:
                    canvas[sy[k] - EXPAND_RADIUS + i, sx[k] - EXPAND_RADIUS + j] = r + 1
    return canvas


@parallel_kernel
def lookup(canvas, qy, qx):  # pragma: no cover - compiled
    n = qy.shape[0]
    out = np.empty(n, np.int32)
    for j in numba.prange(n):
        out[j] = canvas[qy[j], qx[j]]
    return out


@numba.njit(cache=True, nogil=True)
def drop_big_and_renumber(labels, nseeds, max_count):  # pragma: no cover - compiled
    """Zero labels with more than ``max_count`` points, then renumber 1..N by first appearance
    (points are in raster order, so this is raster order on the image)."""
    counts = np.zeros(nseeds + 1, np.int64)
    for j in range(labels.shape[0]):
        counts[labels[j]] += 1
    remap = np.zeros(nseeds + 1, np.int32)
    nxt = 0
    for j in range(labels.shape[0]):
        v = labels[j]
        if v > 0 and counts[v] <= max_count:
            if remap[v] == 0:
                nxt += 1
                remap[v] = nxt
            labels[j] = remap[v]
        else:
            labels[j] = 0
    return nxt


@parallel_kernel
def scatter(shape, ys, xs, labels):  # pragma: no cover - compiled
    out = np.zeros(shape, np.int32)
    for j in numba.prange(ys.shape[0]):
        out[ys[j], xs[j]] = labels[j]
    return out
