"""Euler-integration kernels (§4.3): one independent trajectory per foreground pixel.

The bilinear step reproduces the reference CPU kernel's mixed float32/float64 arithmetic term
by term, so end points are bit-identical. Each point runs all its steps before the next point
(trajectories do not interact), which keeps the point in registers and, since neighbouring
pixels follow nearly the same path, keeps the flow field in cache.

Trajectories that enter a cycle (a fixed point or an oscillation around a sink - common, since
flows are ~unit steps) are finished arithmetically: Brent's cycle detection compares the state
with an anchor saved at power-of-two times; the state is only (y, x), so once it repeats, the
rest of the orbit is known exactly and the remaining steps reduce modulo the period.
"""

from __future__ import annotations

import numba
import numpy as np

from cp3rt.runtime.dynamics._sched import chunked


@numba.njit(cache=True, nogil=True, inline="always")
def _bilinear_step(flow, y, x, ly, lx):  # pragma: no cover - compiled
    """Flow (dy, dx) at (y, x), float32, with the reference's exact precision recipe."""
    iy = int(y)
    ix = int(x)
    fy = y - np.float32(iy)  # float32, from the unclamped floor
    fx = x - np.float32(ix)
    y0 = min(ly - 1, max(0, iy))
    x0 = min(lx - 1, max(0, ix))
    y1 = min(ly - 1, y0 + 1)
    x1 = min(lx - 1, x0 + 1)
    omy = 1.0 - np.float64(fy)  # (1 - fy), (1 - fx) in float64
    omx = 1.0 - np.float64(fx)
    fx64 = np.float64(fx)
    out0 = np.float32(0.0)
    out1 = np.float32(0.0)
    for c in range(2):
        a = flow[c, y0, x0]
        b = flow[c, y0, x1]
        cc = flow[c, y1, x0]
        d = flow[c, y1, x1]
        v = (
            np.float64(a) * omy * omx
            + np.float64(b) * omy * fx64
            + np.float64(cc * fy) * omx  # c * fy rounds in float32 first
            + np.float64(d * fy * fx)  # whole product in float32
        )
        if c == 0:
            out0 = np.float32(v)
        else:
            out1 = np.float32(v)
    return out0, out1


@numba.njit(cache=True, nogil=True, inline="always")
def _nearest_step(flow, y, x):  # pragma: no cover - compiled
    iy = int(y)
    ix = int(x)
    return flow[0, iy, ix], flow[1, iy, ix]


@numba.njit(cache=True, nogil=True, inline="always")
def _advance(flow, y, x, ly, lx, ymax, xmax, interp):  # pragma: no cover - compiled
    if interp:
        dy, dx = _bilinear_step(flow, y, x, ly, lx)
    else:
        dy, dx = _nearest_step(flow, y, x)
    zero = np.float32(0.0)
    y = y + dy  # float32 sum, then clamp to [0, L-1]
    x = x + dx
    if y < zero:
        y = zero
    if y > ymax:
        y = ymax
    if x < zero:
        x = zero
    if x > xmax:
        x = xmax
    return y, x


# Points integrated together by one thread: their independent steps overlap in the CPU
# pipeline (a single trajectory is a long dependency chain and would be latency-bound).
_LANES = 32
_CHUNK_BLOCKS = 16  # blocks of _LANES points handed out at a time


@numba.njit(parallel=True, cache=True)
def _follow(flow, ys, xs, niter, interp):  # pragma: no cover - compiled
    """End points (2, N) float32 after ``niter`` steps from integer starts (ys, xs)."""
    ly = flow.shape[1]
    lx = flow.shape[2]
    ymax = np.float32(ly - 1)
    xmax = np.float32(lx - 1)
    n = ys.shape[0]
    out = np.empty((2, n), np.float32)
    nblocks = (n + _LANES - 1) // _LANES
    for blk in numba.prange(nblocks):
        j0 = blk * _LANES
        m = min(n, j0 + _LANES) - j0
        py = np.empty(m, np.float32)
        px = np.empty(m, np.float32)
        prev_y = np.empty(m, np.float32)  # state two steps back (py/px is one step back)
        prev_x = np.empty(m, np.float32)
        anchor_y = np.empty(m, np.float32)
        anchor_x = np.empty(m, np.float32)
        lam = np.zeros(m, np.int64)
        power = np.ones(m, np.int64)
        active = np.arange(m)
        for i in range(m):
            py[i] = np.float32(ys[j0 + i])
            px[i] = np.float32(xs[j0 + i])
            anchor_y[i] = py[i]
            anchor_x[i] = px[i]
            prev_y[i] = np.float32(-1.0)  # impossible positions: no false matches
            prev_x[i] = np.float32(-1.0)
        n_active = m
        t = 0
        while t < niter and n_active > 0:
            t += 1
            kept = 0
            for q in range(n_active):
                i = active[q]
                y, x = _advance(flow, py[i], px[i], ly, lx, ymax, xmax, interp)
                if y == prev_y[i] and x == prev_x[i]:
                    # Period 1 or 2 (the usual oscillation around a sink): the state alternates
                    # between y and py[i], so the parity of the remaining steps decides.
                    if (niter - t) % 2 == 1:
                        y = py[i]
                        x = px[i]
                    py[i] = y
                    px[i] = x
                    continue
                lam[i] += 1
                if y == anchor_y[i] and x == anchor_x[i]:
                    # Longer period: the state repeats after lam steps; run only the remainder.
                    for _ in range((niter - t) % lam[i]):
                        y, x = _advance(flow, y, x, ly, lx, ymax, xmax, interp)
                    py[i] = y
                    px[i] = x
                    continue
                prev_y[i] = py[i]
                prev_x[i] = px[i]
                py[i] = y
                px[i] = x
                if lam[i] == power[i]:
                    anchor_y[i] = y
                    anchor_x[i] = x
                    power[i] *= 2
                    lam[i] = 0
                active[kept] = i
                kept += 1
            n_active = kept
        for i in range(m):
            out[0, j0 + i] = py[i]
            out[1, j0 + i] = px[i]
    return out


def follow(flow: np.ndarray, ys: np.ndarray, xs: np.ndarray, niter: int, interp: bool) -> np.ndarray:
    """``_follow`` with dynamic scheduling (trajectories differ a lot in length)."""
    with chunked(_CHUNK_BLOCKS):
        return _follow(flow, ys, xs, niter, interp)
