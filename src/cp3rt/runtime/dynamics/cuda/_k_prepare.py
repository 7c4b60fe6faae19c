"""Device kernel of the first pass (§4.2 steps 1-3), the twin of ``_prepare.py``.

flow5 = dP / 5 in float32 (non-finite -> 0), field = flow5 on the foreground and 0 elsewhere,
foreground = finite cellprob > threshold (float32 comparison, like the reference).
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

from cp3rt.defaults import FLOW_SCALE

_SCALE = np.float32(FLOW_SCALE)


@cuda.jit
def prepare(dP, cellprob, threshold, flow5, field, foreground):  # pragma: no cover - device code
    ly, lx = cellprob.shape
    zero = np.float32(0.0)
    for i in range(cuda.grid(1), ly * lx, cuda.gridsize(1)):
        y = i // lx
        x = i - y * lx
        v = np.float32(cellprob[y, x])
        fg = math.isfinite(v) and v > threshold
        foreground[y, x] = 1 if fg else 0
        for k in range(2):
            f = np.float32(dP[k, y, x])
            f5 = f / _SCALE if math.isfinite(f) else zero
            flow5[k, y, x] = f5
            field[k, y, x] = f5 if fg else zero
