"""Fused first pass of ``compute_masks`` (§4.2 steps 1-3): foreground, flow / 5, pixel list."""

from __future__ import annotations

import numba
import numpy as np

from cp3rt.defaults import FLOW_SCALE
from cp3rt.runtime.dynamics.threads import parallel_kernel

_SCALE = np.float32(FLOW_SCALE)


@parallel_kernel
def prepare(dP, cellprob, threshold):  # pragma: no cover - compiled
    """Return (flow5, field, ys, xs).

    flow5 = dP / 5 in float32 everywhere (the QC compares against it), non-finite -> 0;
    field = flow5 on foreground, 0 elsewhere (what the Euler steps integrate);
    (ys, xs) = foreground pixels in raster order. Foreground is ``cellprob > threshold`` with
    non-finite cellprob counted as background.
    """
    ly, lx = cellprob.shape
    flow5 = np.empty((2, ly, lx), np.float32)
    field = np.empty((2, ly, lx), np.float32)
    per_row = np.zeros(ly + 1, np.int64)
    zero = np.float32(0.0)
    for y in numba.prange(ly):
        c = 0
        for x in range(lx):
            v = cellprob[y, x]
            fg = np.isfinite(v) and v > threshold
            for k in range(2):
                f = dP[k, y, x]
                f5 = f / _SCALE if np.isfinite(f) else zero
                flow5[k, y, x] = f5
                field[k, y, x] = f5 if fg else zero
            if fg:
                c += 1
        per_row[y + 1] = c
    for y in range(ly):
        per_row[y + 1] += per_row[y]
    n = per_row[ly]
    ys = np.empty(n, np.int64)
    xs = np.empty(n, np.int64)
    for y in numba.prange(ly):
        j = per_row[y]
        for x in range(lx):
            v = cellprob[y, x]
            if np.isfinite(v) and v > threshold:
                ys[j] = y
                xs[j] = x
                j += 1
    return flow5, field, ys, xs
