"""Tiled percentile normalisation (spec §3.3, ``normalize99_tile``; ``tile_norm_blocksize > 0``).

Low/high percentiles are measured per block and channel, smoothed across blocks, interpolated
back to full resolution and used pixel by pixel:

1. blocks of ``min(blocksize, L)`` per axis placed like network tiles with overlap 0.1
   (``n = 1`` if ``L <= blocksize`` else ``ceil(1.2 * L / blocksize)``, starts
   ``int(linspace(0, L - block, n))``); numpy linear percentiles per block, channel and plane;
2. a block whose range is < 1e-3 takes the values of the nearest good block of its plane and
   channel (squared grid distance, first in row-major order on ties); no good block -> 0 / 1;
3. the (Z, ny, nx, C) grids are Gaussian-smoothed (sigma 1, scipy, reflect) along the block
   rows and the block columns, and with ``norm3D`` along Z with sigma ``tile_norm_smooth3D``
   (0 -> 1). Deviation (docs/deviations.md; ``reference_bugs`` reproduces the reference): the
   reference, written for (ny, nx) grids before planes were added in front, smooths along Z and
   the block rows, never the block columns (a left-right illumination ramp stays in steps of a
   block), and with ``norm3D`` the rows once more instead of Z; without ``norm3D`` its Z
   smoothing also mixes the percentiles of neighbouring planes that are meant to be separate;
4. ``norm3D``: grids averaged over Z and resized to (Y, X) with OpenCV-exact bilinear; otherwise
   one resized grid per plane;
5. ``x <- (x - low) / (high - low)`` in float32, without a range check.

Every block range is >= 1e-3 after step 2 (or exactly 1), and smoothing and bilinear
interpolation are convex combinations, so ``high - low`` stays >= ~1e-3 everywhere.

Deviation: per-plane grids (``norm3D=False``, several planes, several channels) are broken in
the reference — it resizes the low grid in place of the high one, so ``high - low`` is 0 and it
always raises ZeroDivisionError; cp3rt resizes both grids.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.ndimage import gaussian_filter1d

from cp3rt import defaults as D
from cp3rt.runtime.prep.resize import resize_bilinear

BLOCK_OVERLAP = 0.1  # fixed in the reference


def _block_starts(length: int, blocksize: int) -> tuple[int, list[int]]:
    size = min(blocksize, length)
    count = 1 if length <= blocksize else math.ceil((1.0 + 2 * BLOCK_OVERLAP) * length / blocksize)
    return size, [int(v) for v in np.linspace(0, length - size, count).astype(int)]


def _fill_flat_blocks(lo: np.ndarray, hi: np.ndarray) -> None:
    """In place on (ny, nx) grids of one plane/channel: flat blocks copy the nearest good one."""
    flat = hi - lo < D.MIN_PERCENTILE_RANGE
    if not flat.any():
        return
    if flat.all():
        lo[...], hi[...] = 0, 1
        return
    good_y, good_x = np.nonzero(~flat)
    for y, x in zip(*np.nonzero(flat)):
        nearest = int(np.argmin((good_y - y) ** 2 + (good_x - x) ** 2))
        lo[y, x], hi[y, x] = lo[good_y[nearest], good_x[nearest]], hi[good_y[nearest], good_x[nearest]]


def block_percentiles(stack: np.ndarray, blocksize: int, lower: float, upper: float):
    """(Z, ny, nx, C) float32 grids of low and high percentiles, flat blocks filled."""
    nz, nc, ly, lx = stack.shape
    by, ystarts = _block_starts(ly, blocksize)
    bx, xstarts = _block_starts(lx, blocksize)
    lo = np.empty((nz, len(ystarts), len(xstarts), nc), dtype=np.float32)
    hi = np.empty_like(lo)
    for z in range(nz):
        blocks = np.stack([
            np.stack([stack[z, :, y0 : y0 + by, x0 : x0 + bx] for x0 in xstarts])
            for y0 in ystarts
        ])  # (ny, nx, C, by, bx)
        lo[z] = np.percentile(blocks, lower, axis=(-2, -1))
        hi[z] = np.percentile(blocks, upper, axis=(-2, -1))
        for c in range(nc):
            _fill_flat_blocks(lo[z, :, :, c], hi[z, :, :, c])
    return lo, hi


def _smooth(grid: np.ndarray, norm3D: bool, smooth3D: float, reference: bool = False) -> np.ndarray:
    """Smooth a (Z, ny, nx, C) grid of block percentiles (see the module docstring, step 3)."""
    sigma_z = smooth3D if smooth3D != 0 else 1
    if reference:
        for axis in (0, 1):
            grid = gaussian_filter1d(grid, 1, axis=axis)
        return gaussian_filter1d(grid, sigma_z, axis=1) if norm3D else grid  # sic: axis 1
    for axis in (1, 2):  # block rows, block columns
        grid = gaussian_filter1d(grid, 1, axis=axis)
    return gaussian_filter1d(grid, sigma_z, axis=0) if norm3D and grid.shape[0] > 1 else grid


def tile_normalize(stack: np.ndarray, cfg) -> np.ndarray:
    """Normalise a (Z, C, Y, X) float32 stack with blockwise percentiles (see module doc)."""
    lower, upper = cfg.percentiles
    nz, _, ly, lx = stack.shape
    lo, hi = block_percentiles(stack, cfg.tile_norm_blocksize, lower, upper)
    lo = _smooth(lo, cfg.norm3D, cfg.tile_norm_smooth3D, cfg.reference_bugs)
    hi = _smooth(hi, cfg.norm3D, cfg.tile_norm_smooth3D, cfg.reference_bugs)

    def full(grid: np.ndarray) -> np.ndarray:  # (ny, nx, C) -> (C, Y, X)
        return resize_bilinear(np.ascontiguousarray(np.moveaxis(grid, -1, 0)), (ly, lx))

    if not cfg.norm3D and nz > 1:
        lo_full = np.stack([full(lo[z]) for z in range(nz)])
        hi_full = np.stack([full(hi[z]) for z in range(nz)])
    else:
        lo_full = full(lo.mean(axis=0))[np.newaxis]
        hi_full = full(hi.mean(axis=0))[np.newaxis]
    out = stack.astype(np.float32, copy=True)
    out -= lo_full
    out /= hi_full - lo_full
    return out
