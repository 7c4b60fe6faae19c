"""Slow, obvious reference implementations of the 3-D dynamics kernels (numpy / scipy, no numba).

Written from the spec (§4.3 GPU path, §4.4, §4.7, §4.9), one point / one label at a time.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

F = np.float32


def grid_sample_point(field: np.ndarray, g: np.ndarray) -> np.ndarray:
    """torch grid_sample (trilinear, zero padding, align_corners=False) at normalised g = (z, y, x);
    float32 throughout, weights and sums in torch's order."""
    size = np.asarray(field.shape[1:])
    pix = [((g[k] + F(1)) * F(size[k]) - F(1)) / F(2) for k in range(3)]
    lo = [int(np.floor(p)) for p in pix]
    out = np.zeros(3, np.float32)
    for c in range(3):
        acc = F(0)
        for dz in (0, 1):
            for dy in (0, 1):
                for dx in (0, 1):
                    corner = (lo[0] + dz, lo[1] + dy, lo[2] + dx)
                    wz, wy, wx = ((pix[k] - F(lo[k])) if d else (F(lo[k] + 1) - pix[k])
                                  for k, d in enumerate((dz, dy, dx)))
                    w = wx * wy * wz  # torch multiplies x, then y, then z
                    if all(0 <= corner[k] < size[k] for k in range(3)):
                        acc = F(acc + F(field[(c, *corner)] * w))
        out[c] = acc
    return out


def trilinear_point(field: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Trilinear value at pixel position p with clamped corners (float64 sums)."""
    size = np.asarray(field.shape[1:])
    i = np.floor(p).astype(int)
    f = p.astype(np.float64) - i
    lo = np.clip(i, 0, size - 1)
    hi = np.minimum(size - 1, lo + 1)
    out = np.zeros(3)
    for dz in (0, 1):
        for dy in (0, 1):
            for dx in (0, 1):
                w = ((f[0] if dz else 1 - f[0]) * (f[1] if dy else 1 - f[1]) * (f[2] if dx else 1 - f[2]))
                idx = tuple(hi[k] if d else lo[k] for k, d in enumerate((dz, dy, dx)))
                out += w * field[(slice(None), *idx)]
    return out.astype(np.float32)


def follow_grid(field: np.ndarray, inds: np.ndarray, niter: int) -> np.ndarray:
    """The reference's 3-D dynamics: normalise, grid_sample steps with clamping, un-normalise."""
    size = np.asarray(field.shape[1:])
    span = (size - 1).astype(np.float32)
    scaled = np.stack([field[k] * F(2.0 / float(span[k])) for k in range(3)])
    out = np.empty(inds.shape, np.float32)
    for j in range(inds.shape[1]):
        g = np.array([inds[k, j].astype(np.float32) / span[k] * F(2) - F(1) for k in range(3)], np.float32)
        for _ in range(niter):
            g = np.clip(g + grid_sample_point(scaled, g), F(-1), F(1)).astype(np.float32)
        out[:, j] = ((g + F(1)) * F(0.5)) * span
    return out


def follow_pixel(field: np.ndarray, inds: np.ndarray, niter: int, interp: bool) -> np.ndarray:
    """Exact trilinear (interp) or truncated-position (steps3D) Euler steps in pixel units."""
    hi = (np.asarray(field.shape[1:]) - 1).astype(np.float32)
    out = np.empty(inds.shape, np.float32)
    for j in range(inds.shape[1]):
        p = inds[:, j].astype(np.float32)
        for _ in range(niter):
            step = trilinear_point(field, p) if interp else field[(slice(None), *p.astype(int))]
            p = np.clip(p + step, F(0), hi).astype(np.float32)
        out[:, j] = p
    return out


def renumber_first_appearance(lab: np.ndarray) -> np.ndarray:
    out = np.zeros_like(lab)
    flat, seen = lab.ravel(), {}
    for v in flat:
        if v and v not in seen:
            seen[v] = len(seen) + 1
    for v, n in seen.items():
        out[lab == v] = n
    return out


def get_masks(points: np.ndarray, inds: np.ndarray, shape, max_size_fraction: float = 0.4) -> np.ndarray:
    """§4.4 in 3-D with dense scipy filters."""
    shape = tuple(shape)
    p = np.stack([np.clip(points[k] + 20, 0, shape[k] + 19) for k in range(3)])
    h = np.zeros(tuple(s + 40 for s in shape), np.int64)
    np.add.at(h, tuple(p), 1)
    hmax = ndi.maximum_filter(h, size=5, mode="constant", cval=0)
    seeds = np.argwhere((h == hmax) & (h > 10))  # raster order
    if len(seeds) == 0:
        return np.zeros(shape, np.int32)
    seeds = seeds[np.argsort(h[tuple(seeds.T)], kind="stable")]
    canvas = np.zeros(h.shape, np.int64)
    for k, s in enumerate(seeds):
        win = tuple(slice(c - 5, c + 6) for c in s)
        m = np.zeros((11, 11, 11), bool)
        m[5, 5, 5] = True
        for _ in range(5):
            m = ndi.binary_dilation(m, np.ones((3, 3, 3), bool)) & (h[win] > 2)
        canvas[win][m] = k + 1
    lab = np.zeros(shape, np.int64)
    lab[tuple(inds)] = canvas[tuple(p)]
    ids, counts = np.unique(lab, return_counts=True)
    for v, c in zip(ids, counts):
        if v and c > max_size_fraction * np.prod(shape):
            lab[lab == v] = 0
    return renumber_first_appearance(lab).astype(np.int32)


def fill_holes_and_remove_small_masks(lab: np.ndarray, min_size: int) -> np.ndarray:
    """§4.7 in 3-D (fixed mode): drop small, fill holes per label in its box (6-connected), drop."""
    def drop_small(x):
        x = x.copy()
        ids, counts = np.unique(x, return_counts=True)
        for v, c in zip(ids, counts):
            if v and c < min_size:
                x[x == v] = 0
        return renumber_first_appearance(x)

    lab = drop_small(lab) if min_size > 0 else lab.copy()
    j = 0
    for i, slc in enumerate(ndi.find_objects(lab)):
        if slc is None:
            continue
        filled = ndi.binary_fill_holes(lab[slc] == i + 1)
        if filled.any():
            lab[slc][filled] = j + 1
            j += 1
    return drop_small(lab) if min_size > 0 else lab
