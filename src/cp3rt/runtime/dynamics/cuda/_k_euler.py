"""Device Euler integration (§4.3): one thread per foreground pixel, the twin of ``_euler.py``.

The bilinear step is the CPU kernel's mixed float32/float64 recipe term by term, with products
and sums that the compiler cannot fuse (``_arith``), so end points are bit-identical.

A trajectory that comes back to where it was two steps ago (a sink or a 2-cycle, which is how
most of them end: flows are ~unit steps) alternates between two points from then on, so the
thread stops and picks the one the remaining step count lands on - exactly the point that
running every step would give. (The CPU kernel also catches longer cycles; on the device the
warp waits for its slowest thread anyway, so the simple test gets most of the gain.)
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from cp3rt.runtime.dynamics.cuda._arith import add64, mul32, mul64


@cuda.jit(device=True)
def _lerp(f, y0, x0, y1, x1, fy, fx, omy, omx, fx64):  # pragma: no cover - device code
    t1 = mul64(mul64(np.float64(f[y0, x0]), omy), omx)  # float64 throughout
    t2 = mul64(mul64(np.float64(f[y0, x1]), omy), fx64)
    t3 = mul64(np.float64(mul32(f[y1, x0], fy)), omx)  # c * fy rounds in float32 first
    t4 = np.float64(mul32(mul32(f[y1, x1], fy), fx))  # whole product in float32
    return np.float32(add64(add64(add64(t1, t2), t3), t4))  # left to right, as the CPU


@cuda.jit(device=True)
def _step_bilinear(field, y, x):  # pragma: no cover - device code
    ly = field.shape[1]
    lx = field.shape[2]
    iy = int(y)  # y, x >= 0: truncation is floor
    ix = int(x)
    fy = y - np.float32(iy)  # float32, from the unclamped floor
    fx = x - np.float32(ix)
    y0 = min(ly - 1, max(0, iy))
    x0 = min(lx - 1, max(0, ix))
    y1 = min(ly - 1, y0 + 1)
    x1 = min(lx - 1, x0 + 1)
    omy = np.float64(1.0) - np.float64(fy)
    omx = np.float64(1.0) - np.float64(fx)
    fx64 = np.float64(fx)
    yn = y + _lerp(field[0], y0, x0, y1, x1, fy, fx, omy, omx, fx64)
    xn = x + _lerp(field[1], y0, x0, y1, x1, fy, fx, omy, omx, fx64)
    zero = np.float32(0.0)
    return (min(np.float32(ly - 1), max(zero, yn)), min(np.float32(lx - 1), max(zero, xn)))


@cuda.jit(device=True)
def _step_nearest(field, y, x):  # pragma: no cover - device code
    iy = int(y)
    ix = int(x)
    zero = np.float32(0.0)
    yn = y + field[0, iy, ix]
    xn = x + field[1, iy, ix]
    return (min(np.float32(field.shape[1] - 1), max(zero, yn)),
            min(np.float32(field.shape[2] - 1), max(zero, xn)))


@cuda.jit
def follow(field, ys, xs, niter, bilinear, ends):  # pragma: no cover - device code
    """ends (2, N) float32: position of pixel (ys[j], xs[j]) after ``niter`` steps."""
    for j in range(cuda.grid(1), ys.shape[0], cuda.gridsize(1)):
        y = np.float32(ys[j])
        x = np.float32(xs[j])
        qy = np.float32(-1.0)  # position two steps back; -1 is never a position
        qx = np.float32(-1.0)
        t = 0
        while t < niter:
            if bilinear:
                yn, xn = _step_bilinear(field, y, x)
            else:
                yn, xn = _step_nearest(field, y, x)
            t += 1
            if yn == qy and xn == qx:
                # p[t] == p[t-2]: from here positions alternate p[t], p[t-1], p[t], ...
                if (niter - t) % 2 == 1:
                    yn = y
                    xn = x
                y = yn
                x = xn
                break
            qy = y
            qx = x
            y = yn
            x = xn
        ends[0, j] = y
        ends[1, j] = x
