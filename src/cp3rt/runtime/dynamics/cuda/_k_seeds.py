"""Device kernels of mask assembly (§4.4), the twins of ``_seeds.py``.

The CPU paints seed regions in ascending count order (ties in raster order), later seeds
overwriting earlier ones. Painting order does not exist on a device, but its outcome does: a
bin ends up with the region of the *last* seed in that order that covers it, i.e. the covering
seed with the largest (count, raster index). Each region pixel does one 64-bit ``atomic.max``
of that key, count in the high half, seed index in the low half.
"""

from __future__ import annotations

import numpy as np
from numba import cuda, int64, uint8

from cp3rt.defaults import (
    EXPAND_ITERATIONS,
    EXPAND_MIN_COUNT,
    EXPAND_RADIUS,
    HIST_PAD,
    SEED_MIN_COUNT,
    SEED_WINDOW,
)

_WIN = 2 * EXPAND_RADIUS + 1
_HALF = SEED_WINDOW // 2
_LOW = np.int64(2**32)  # seed index in the low 32 bits of a canvas key


@cuda.jit
def histogram(ends, ly, lx, hist, qy, qx):  # pragma: no cover - device code
    """End-point counts on the padded grid and each point's (clipped, padded) bin."""
    for j in range(cuda.grid(1), ends.shape[1], cuda.gridsize(1)):
        # int32 truncation of the end point (the CPU's .astype(np.int32)), pad shift and clip.
        y = min(max(int(ends[0, j]) + HIST_PAD, 0), ly + HIST_PAD - 1)
        x = min(max(int(ends[1, j]) + HIST_PAD, 0), lx + HIST_PAD - 1)
        qy[j] = y
        qx[j] = x
        cuda.atomic.add(hist, (y, x), 1)


@cuda.jit
def seed_flags(hist, flags):  # pragma: no cover - device code
    """1 where a bin has > SEED_MIN_COUNT end points and equals its 5x5 maximum."""
    hy, hx = hist.shape
    for i in range(cuda.grid(1), hy * hx, cuda.gridsize(1)):
        y = i // hx
        x = i - y * hx
        h = hist[y, x]
        seed = h > SEED_MIN_COUNT
        if seed:
            for yy in range(max(0, y - _HALF), min(hy, y + _HALF + 1)):
                for xx in range(max(0, x - _HALF), min(hx, x + _HALF + 1)):
                    if hist[yy, xx] > h:
                        seed = False
        flags[y, x] = 1 if seed else 0


@cuda.jit
def paint_regions(hist, sy, sx, canvas):  # pragma: no cover - device code
    """Grow each seed (5 x [3x3 dilation, keep bins with > EXPAND_MIN_COUNT]) in its 11x11
    window and claim its bins with the key (count, seed index); the largest key wins."""
    ok = cuda.local.array((_WIN, _WIN), uint8)
    cur = cuda.local.array((_WIN, _WIN), uint8)
    nxt = cuda.local.array((_WIN, _WIN), uint8)
    for k in range(cuda.grid(1), sy.shape[0], cuda.gridsize(1)):
        _grow_and_claim(hist, sy[k], sx[k], k, ok, cur, nxt, canvas)


@cuda.jit(device=True)
def _grow_and_claim(hist, cy, cx, k, ok, cur, nxt, canvas):  # pragma: no cover - device code
    oy = cy - EXPAND_RADIUS
    ox = cx - EXPAND_RADIUS
    for i in range(_WIN):
        for j in range(_WIN):
            ok[i, j] = 1 if hist[oy + i, ox + j] > EXPAND_MIN_COUNT else 0
            cur[i, j] = 0
    cur[EXPAND_RADIUS, EXPAND_RADIUS] = 1
    for _ in range(EXPAND_ITERATIONS):
        for i in range(_WIN):
            for j in range(_WIN):
                v = 0
                for a in range(max(0, i - 1), min(_WIN, i + 2)):
                    for b in range(max(0, j - 1), min(_WIN, j + 2)):
                        v |= cur[a, b]
                nxt[i, j] = v & ok[i, j]
        for i in range(_WIN):
            for j in range(_WIN):
                cur[i, j] = nxt[i, j]
    key = int64(hist[cy, cx]) * _LOW + int64(k)
    for i in range(_WIN):
        for j in range(_WIN):
            if cur[i, j] != 0:
                cuda.atomic.max(canvas, (oy + i, ox + j), key)


@cuda.jit
def lookup(canvas, qy, qx, seed_of_point, counts, first):  # pragma: no cover - device code
    """Per point: seed index + 1 of its bin's region (0: none); per seed: point count and the
    first point (points are in raster order, so this is first appearance on the image)."""
    for j in range(cuda.grid(1), qy.shape[0], cuda.gridsize(1)):
        key = canvas[qy[j], qx[j]]
        s = 0 if key == 0 else int(key % _LOW) + 1
        seed_of_point[j] = s
        cuda.atomic.add(counts, s, 1)
        cuda.atomic.min(first, s, j)


@cuda.jit
def scatter(ys, xs, seed_of_point, remap, lab):  # pragma: no cover - device code
    for j in range(cuda.grid(1), ys.shape[0], cuda.gridsize(1)):
        lab[ys[j], xs[j]] = remap[seed_of_point[j]]
