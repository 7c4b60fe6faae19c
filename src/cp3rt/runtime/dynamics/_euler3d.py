"""3-D Euler-integration kernels (§4.3, §4.9): one independent trajectory per foreground voxel.

Three step rules, chosen by ``mode``:

* ``GRID`` reproduces the reference, which runs *all* 3-D dynamics through torch's
  ``grid_sample`` (trilinear, zero padding, ``align_corners=False``) on coordinates normalised
  as if ``align_corners=True``. The state is the normalised coordinate ``g`` in [-1, 1]; the
  field is sampled at ``((g + 1) * L - 1) / 2`` (i.e. at ``p * L / (L - 1) - 0.5`` in pixels),
  corners outside the volume contribute 0, and every operation is float32 in the order of
  torch's CPU kernel, so end points agree with the reference to the last bit in nearly all
  voxels.
* ``EXACT`` integrates the field where it is: trilinear at the pixel position with clamped
  corners (the 3-D analogue of the reference's 2-D CPU path).
* ``NEAREST`` is the reference's ``steps3D`` (``interp=False``): the flow at the truncated
  integer position.

Trajectories that enter a cycle are finished arithmetically (see ``_euler``): the state is the
position only, so once it repeats the rest of the orbit is known.
"""

from __future__ import annotations

import numba
import numpy as np

from cp3rt.runtime.dynamics._sched import chunked
from cp3rt.runtime.dynamics.threads import parallel_kernel

NEAREST = 0
GRID = 1
EXACT = 2


@numba.njit(cache=True, nogil=True, inline="always")
def _grid_sample(field, gz, gy, gx, lz, ly, lx):  # pragma: no cover - compiled
    """torch grid_sample (trilinear, zeros, align_corners=False) of the 3 channels, float32."""
    one = np.float32(1.0)
    two = np.float32(2.0)
    iz = ((gz + one) * np.float32(lz) - one) / two
    iy = ((gy + one) * np.float32(ly) - one) / two
    ix = ((gx + one) * np.float32(lx) - one) / two
    z0 = int(np.floor(iz))
    y0 = int(np.floor(iy))
    x0 = int(np.floor(ix))
    z1 = z0 + 1
    y1 = y0 + 1
    x1 = x0 + 1
    # Interpolation weights exactly as torch forms them (left-to-right float32 products).
    ax = np.float32(x1) - ix
    bx = ix - np.float32(x0)
    ay = np.float32(y1) - iy
    by = iy - np.float32(y0)
    az = np.float32(z1) - iz
    bz = iz - np.float32(z0)
    w = (
        ax * ay * az, bx * ay * az, ax * by * az, bx * by * az,
        ax * ay * bz, bx * ay * bz, ax * by * bz, bx * by * bz,
    )
    cz = (z0, z0, z0, z0, z1, z1, z1, z1)
    cy = (y0, y0, y1, y1, y0, y0, y1, y1)
    cx = (x0, x1, x0, x1, x0, x1, x0, x1)
    out = np.zeros(3, np.float32)
    for c in range(3):
        acc = np.float32(0.0)
        for k in range(8):
            zz = cz[k]
            yy = cy[k]
            xx = cx[k]
            if 0 <= zz < lz and 0 <= yy < ly and 0 <= xx < lx:
                acc = acc + field[c, zz, yy, xx] * w[k]
        out[c] = acc
    return out[0], out[1], out[2]


@numba.njit(cache=True, nogil=True, inline="always")
def _trilinear(field, z, y, x, lz, ly, lx):  # pragma: no cover - compiled
    """Trilinear value at the pixel position, corners clamped to the volume (float64 sums)."""
    iz = int(z)
    iy = int(y)
    ix = int(x)
    fz = np.float64(z) - iz
    fy = np.float64(y) - iy
    fx = np.float64(x) - ix
    z0 = min(lz - 1, max(0, iz))
    y0 = min(ly - 1, max(0, iy))
    x0 = min(lx - 1, max(0, ix))
    z1 = min(lz - 1, z0 + 1)
    y1 = min(ly - 1, y0 + 1)
    x1 = min(lx - 1, x0 + 1)
    out = np.zeros(3, np.float32)
    for c in range(3):
        v = ((field[c, z0, y0, x0] * (1 - fx) + field[c, z0, y0, x1] * fx) * (1 - fy)
             + (field[c, z0, y1, x0] * (1 - fx) + field[c, z0, y1, x1] * fx) * fy) * (1 - fz) \
            + ((field[c, z1, y0, x0] * (1 - fx) + field[c, z1, y0, x1] * fx) * (1 - fy)
               + (field[c, z1, y1, x0] * (1 - fx) + field[c, z1, y1, x1] * fx) * fy) * fz
        out[c] = np.float32(v)
    return out[0], out[1], out[2]


@numba.njit(cache=True, nogil=True, inline="always")
def _clamp(v, lo, hi):  # pragma: no cover - compiled
    if v < lo:
        v = lo
    if v > hi:
        v = hi
    return v


@numba.njit(cache=True, nogil=True, inline="always")
def _advance(field, z, y, x, lz, ly, lx, lo, hi, mode):  # pragma: no cover - compiled
    if mode == GRID:
        dz, dy, dx = _grid_sample(field, z, y, x, lz, ly, lx)
    elif mode == EXACT:
        dz, dy, dx = _trilinear(field, z, y, x, lz, ly, lx)
    else:
        dz = field[0, int(z), int(y), int(x)]
        dy = field[1, int(z), int(y), int(x)]
        dx = field[2, int(z), int(y), int(x)]
    # float32 sum, then clamp per axis
    return (_clamp(z + dz, lo[0], hi[0]), _clamp(y + dy, lo[1], hi[1]),
            _clamp(x + dx, lo[2], hi[2]))


_LANES = 32
_CHUNK_BLOCKS = 16


@parallel_kernel
def _follow3d(field, start, niter, mode, lo, hi):  # pragma: no cover - compiled
    """End states (3, N) float32 after ``niter`` steps from ``start`` (3, N) float32."""
    lz, ly, lx = field.shape[1], field.shape[2], field.shape[3]
    n = start.shape[1]
    out = np.empty((3, n), np.float32)
    nblocks = (n + _LANES - 1) // _LANES
    for blk in numba.prange(nblocks):
        j0 = blk * _LANES
        m = min(n, j0 + _LANES) - j0
        pos = np.empty((3, m), np.float32)
        prev = np.full((3, m), np.float32(np.nan))  # state two steps back; NaN never matches
        anchor = np.empty((3, m), np.float32)
        lam = np.zeros(m, np.int64)
        power = np.ones(m, np.int64)
        active = np.arange(m)
        for i in range(m):
            for k in range(3):
                pos[k, i] = start[k, j0 + i]
                anchor[k, i] = pos[k, i]
        n_active = m
        t = 0
        while t < niter and n_active > 0:
            t += 1
            kept = 0
            for q in range(n_active):
                i = active[q]
                z, y, x = _advance(field, pos[0, i], pos[1, i], pos[2, i], lz, ly, lx, lo, hi, mode)
                if z == prev[0, i] and y == prev[1, i] and x == prev[2, i]:
                    # Period 1 or 2: parity of the remaining steps picks the end state.
                    if (niter - t) % 2 == 1:
                        z, y, x = pos[0, i], pos[1, i], pos[2, i]
                    pos[0, i], pos[1, i], pos[2, i] = z, y, x
                    continue
                lam[i] += 1
                if z == anchor[0, i] and y == anchor[1, i] and x == anchor[2, i]:
                    for _ in range((niter - t) % lam[i]):
                        z, y, x = _advance(field, z, y, x, lz, ly, lx, lo, hi, mode)
                    pos[0, i], pos[1, i], pos[2, i] = z, y, x
                    continue
                prev[0, i], prev[1, i], prev[2, i] = pos[0, i], pos[1, i], pos[2, i]
                pos[0, i], pos[1, i], pos[2, i] = z, y, x
                if lam[i] == power[i]:
                    anchor[0, i], anchor[1, i], anchor[2, i] = z, y, x
                    power[i] *= 2
                    lam[i] = 0
                active[kept] = i
                kept += 1
            n_active = kept
        for i in range(m):
            for k in range(3):
                out[k, j0 + i] = pos[k, i]
    return out


def follow3d(field: np.ndarray, start: np.ndarray, niter: int, mode: int,
             lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """``_follow3d`` with dynamic scheduling (trajectory lengths differ a lot)."""
    with chunked(_CHUNK_BLOCKS):
        return _follow3d(field, start, niter, mode, lo, hi)
