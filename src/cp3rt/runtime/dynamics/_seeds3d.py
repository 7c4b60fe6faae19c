"""Kernels of 3-D mask assembly from end points (§4.4, §4.9): histogram over the padded volume,
seeds at 5x5x5 local maxima, 11x11x11 seed regions grown by 3x3x3 dilation, lookup, scatter.

The per-point label clean-up (big-mask removal, first-appearance renumbering) is the 2-D
``_seeds.drop_big_and_renumber``, which works on the flat point list whatever the dimension.
"""

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
def histogram3d(pts, shape):  # pragma: no cover - compiled
    """End-point counts on the padded grid; returns (hist, padded (3, N) bin of every point)."""
    hist = np.zeros((shape[0] + 2 * HIST_PAD, shape[1] + 2 * HIST_PAD, shape[2] + 2 * HIST_PAD),
                    np.int32)
    n = pts.shape[1]
    q = np.empty((3, n), np.int64)
    for j in range(n):
        for k in range(3):
            # Shift by the pad and clip to [0, L + pad - 1] (the reference's bounds).
            q[k, j] = min(max(pts[k, j] + HIST_PAD, 0), shape[k] + HIST_PAD - 1)
        hist[q[0, j], q[1, j], q[2, j]] += 1
    return hist, q


@numba.njit(cache=True, nogil=True)
def _is_seed3d(hist, z, y, x):  # pragma: no cover - compiled
    h = hist[z, y, x]
    if h <= SEED_MIN_COUNT:
        return False
    hz, hy, hx = hist.shape
    for zz in range(max(0, z - _HALF), min(hz, z + _HALF + 1)):
        for yy in range(max(0, y - _HALF), min(hy, y + _HALF + 1)):
            for xx in range(max(0, x - _HALF), min(hx, x + _HALF + 1)):
                if hist[zz, yy, xx] > h:
                    return False
    return True


@parallel_kernel
def find_seeds3d(hist):  # pragma: no cover - compiled
    """Seeds in raster order: bins with more than SEED_MIN_COUNT end points equal to the
    maximum of their 5x5x5 neighbourhood. Returns (seeds (3, S) int64, counts (S,))."""
    hz, hy, hx = hist.shape
    per_plane = np.zeros(hz, np.int64)
    for z in numba.prange(hz):
        c = 0
        for y in range(hy):
            for x in range(hx):
                if hist[z, y, x] > SEED_MIN_COUNT and _is_seed3d(hist, z, y, x):
                    c += 1
        per_plane[z] = c
    start = np.zeros(hz + 1, np.int64)
    for z in range(hz):
        start[z + 1] = start[z] + per_plane[z]
    n = start[hz]
    seeds = np.empty((3, n), np.int64)
    cnt = np.empty(n, np.int64)
    for z in numba.prange(hz):
        k = start[z]
        for y in range(hy):
            for x in range(hx):
                if hist[z, y, x] > SEED_MIN_COUNT and _is_seed3d(hist, z, y, x):
                    seeds[0, k] = z
                    seeds[1, k] = y
                    seeds[2, k] = x
                    cnt[k] = hist[z, y, x]
                    k += 1
    return seeds, cnt


@parallel_kernel
def seed_regions3d(hist, seeds):  # pragma: no cover - compiled
    """Per seed, the 11^3 window bins reachable from the centre in <= 5 moves to any of the
    26 neighbours through bins with more than EXPAND_MIN_COUNT end points."""
    n = seeds.shape[1]
    regions = np.zeros((n, _WIN, _WIN, _WIN), np.uint8)
    r = EXPAND_RADIUS
    for k in numba.prange(n):
        ok = np.zeros((_WIN, _WIN, _WIN), np.uint8)
        for a in range(_WIN):
            for b in range(_WIN):
                for c in range(_WIN):
                    ok[a, b, c] = hist[seeds[0, k] - r + a, seeds[1, k] - r + b,
                                       seeds[2, k] - r + c] > EXPAND_MIN_COUNT
        cur = np.zeros((_WIN, _WIN, _WIN), np.uint8)
        nxt = np.zeros((_WIN, _WIN, _WIN), np.uint8)
        cur[r, r, r] = 1
        for _ in range(EXPAND_ITERATIONS):
            for a in range(_WIN):
                for b in range(_WIN):
                    for c in range(_WIN):
                        v = 0
                        for aa in range(max(0, a - 1), min(_WIN, a + 2)):
                            for bb in range(max(0, b - 1), min(_WIN, b + 2)):
                                for cc in range(max(0, c - 1), min(_WIN, c + 2)):
                                    v |= cur[aa, bb, cc]
                        nxt[a, b, c] = v & ok[a, b, c]
            cur, nxt = nxt, cur
        regions[k] = cur
    return regions


@numba.njit(cache=True, nogil=True)
def paint3d(shape, seeds, regions, order):  # pragma: no cover - compiled
    """Label canvas: seeds painted in ``order`` with label rank+1; later seeds overwrite."""
    canvas = np.zeros(shape, np.int32)
    r = EXPAND_RADIUS
    for rank in range(order.shape[0]):
        k = order[rank]
        for a in range(_WIN):
            for b in range(_WIN):
                for c in range(_WIN):
                    if regions[k, a, b, c]:
                        canvas[seeds[0, k] - r + a, seeds[1, k] - r + b, seeds[2, k] - r + c] = rank + 1
    return canvas


@parallel_kernel
def lookup3d(canvas, q):  # pragma: no cover - compiled
    n = q.shape[1]
    out = np.empty(n, np.int32)
    for j in numba.prange(n):
        out[j] = canvas[q[0, j], q[1, j], q[2, j]]
    return out


@parallel_kernel
def scatter3d(shape, inds, labels):  # pragma: no cover - compiled
    out = np.zeros(shape, np.int32)
    for j in numba.prange(inds.shape[1]):
        out[inds[0, j], inds[1, j], inds[2, j]] = labels[j]
    return out
