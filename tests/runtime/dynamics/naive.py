"""Slow, obvious reference implementations of every dynamics kernel (numpy / scipy, no numba).

Written from the spec (§4), one step per line, so a reader can check them against the text.
The kernel tests compare cp3rt's numba code with these on small inputs.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi


def masks_to_flows(masks: np.ndarray, niter: int | None = None) -> np.ndarray:
    """§4.1, label by label with whole-array numpy updates."""
    mu = np.zeros((2, *masks.shape), np.float64)
    for label in np.unique(masks):
        if label == 0:
            continue
        ys, xs = np.nonzero(masks == label)
        y0, x0 = ys.min(), xs.min()
        ly, lx = ys.max() - y0 + 1 + 2, xs.max() - x0 + 1 + 2
        yl = ys - y0 + 1  # local coordinates in the box enlarged by one pixel
        xl = xs - x0 + 1
        ymean, xmean = yl.mean(), xl.mean()
        src = np.argmin((xl - xmean) ** 2 + (yl - ymean) ** 2)  # first minimum = raster order
        t = np.zeros((ly, lx), np.float64)
        for _ in range(2 * (ly + lx) if niter is None else niter):
            t[yl[src], xl[src]] += 1
            # all nine neighbours are read before anything is written (synchronous update)
            s = (t[yl, xl] + t[yl - 1, xl] + t[yl + 1, xl] + t[yl, xl - 1] + t[yl, xl + 1]
                 + t[yl - 1, xl - 1] + t[yl - 1, xl + 1] + t[yl + 1, xl - 1] + t[yl + 1, xl + 1])
            t[yl, xl] = (1.0 / 9.0) * s
        mu[0, ys, xs] = t[yl + 1, xl] - t[yl - 1, xl]
        mu[1, ys, xs] = t[yl, xl + 1] - t[yl, xl - 1]
    return mu / (1e-60 + np.sqrt(mu[0] ** 2 + mu[1] ** 2))


def bilinear(flow: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """§4.3 precision recipe, vectorised over points; y, x float32 arrays."""
    ly, lx = flow.shape[1:]
    iy = y.astype(np.int64)
    ix = x.astype(np.int64)
    fy = (y - iy.astype(np.float32)).astype(np.float32)
    fx = (x - ix.astype(np.float32)).astype(np.float32)
    y0 = np.clip(iy, 0, ly - 1)
    x0 = np.clip(ix, 0, lx - 1)
    y1 = np.minimum(ly - 1, y0 + 1)
    x1 = np.minimum(lx - 1, x0 + 1)
    omy = 1.0 - fy.astype(np.float64)
    omx = 1.0 - fx.astype(np.float64)
    out = np.empty((2, y.size), np.float32)
    for c in range(2):
        a, b = flow[c, y0, x0], flow[c, y0, x1]
        cc, d = flow[c, y1, x0], flow[c, y1, x1]
        t1 = a.astype(np.float64) * omy * omx
        t2 = b.astype(np.float64) * omy * fx.astype(np.float64)
        t3 = (cc * fy).astype(np.float64) * omx  # float32 product first
        t4 = (d * fy * fx).astype(np.float64)  # all float32
        out[c] = (t1 + t2 + t3 + t4).astype(np.float32)
    return out


def follow_flows(flow: np.ndarray, inds, niter: int, interp: bool = True) -> np.ndarray:
    """§4.3: every point, every step, no shortcuts."""
    ly, lx = flow.shape[1:]
    p = np.stack([inds[0], inds[1]]).astype(np.float32)
    for _ in range(int(niter)):
        if interp:
            step = bilinear(flow, p[0], p[1])
        else:
            step = flow[:, p[0].astype(np.int64), p[1].astype(np.int64)]
        p[0] = np.minimum(np.float32(ly - 1), np.maximum(np.float32(0), p[0] + step[0]))
        p[1] = np.minimum(np.float32(lx - 1), np.maximum(np.float32(0), p[1] + step[1]))
    return p


def renumber_first_appearance(lab: np.ndarray) -> np.ndarray:
    values, first = np.unique(lab.ravel(), return_index=True)
    order = values[np.argsort(first)]
    order = order[order != 0]
    remap = np.zeros(int(lab.max()) + 1, lab.dtype)
    remap[order] = np.arange(1, order.size + 1)
    return remap[lab]


def get_masks(points: np.ndarray, inds, shape, max_size_fraction: float = 0.4) -> np.ndarray:
    """§4.4 with scipy filters; seeds sorted with a stable ascending sort."""
    ly, lx = shape
    py = np.clip(points[0] + 20, 0, ly + 19)
    px = np.clip(points[1] + 20, 0, lx + 19)
    hist = np.zeros((ly + 40, lx + 40), np.int64)
    np.add.at(hist, (py, px), 1)
    hmax = ndi.maximum_filter(hist, size=5, mode="constant", cval=0)  # counts >= 0
    sy, sx = np.nonzero((hist == hmax) & (hist > 10))
    lab = np.zeros(shape, np.int64)
    if sy.size == 0:
        return lab
    order = np.argsort(hist[sy, sx], kind="stable")
    canvas = np.zeros(hist.shape, np.int64)
    for rank, k in enumerate(order):
        win = hist[sy[k] - 5:sy[k] + 6, sx[k] - 5:sx[k] + 6]
        region = np.zeros((11, 11), bool)
        region[5, 5] = True
        for _ in range(5):
            region = ndi.binary_dilation(region, np.ones((3, 3), bool)) & (win > 2)
        canvas[sy[k] - 5:sy[k] + 6, sx[k] - 5:sx[k] + 6][region] = rank + 1
    lab[inds] = canvas[py, px]
    counts = np.bincount(lab.ravel())
    big = np.nonzero(counts > ly * lx * max_size_fraction)[0]
    lab[np.isin(lab, big[big > 0])] = 0
    return renumber_first_appearance(lab)


def flow_error(masks: np.ndarray, dP: np.ndarray) -> np.ndarray:
    """§4.5: per-label means of the squared differences, label by label."""
    mu = masks_to_flows(masks)
    d5 = dP.astype(np.float32) / np.float32(5.0)
    err = np.full(int(masks.max()), np.nan)
    for label in range(1, int(masks.max()) + 1):
        sel = masks == label
        if sel.any():
            err[label - 1] = (np.mean((mu[0][sel] - d5[0][sel]) ** 2)
                              + np.mean((mu[1][sel] - d5[1][sel]) ** 2))
    return err


def fill_holes_and_remove_small_masks(masks: np.ndarray, min_size: int,
                                      reference_bugs: bool = False) -> np.ndarray:
    """§4.7 with scipy's binary_fill_holes (4-connected background)."""
    def drop_small(lab):
        values, counts = np.unique(lab, return_counts=True)
        if reference_bugs:
            drop = np.nonzero(counts[1:] < min_size)[0] + 1  # index + 1, not the label value
        else:
            drop = values[(counts < min_size) & (values > 0)]
        lab = np.where(np.isin(lab, drop), 0, lab)
        return renumber_first_appearance(lab)

    lab = masks.astype(np.int64)
    if min_size > 0:
        lab = drop_small(lab)
    j = 0
    for i, slc in enumerate(ndi.find_objects(lab)):
        if slc is None:
            continue
        msk = lab[slc] == i + 1
        if not msk.any() and not reference_bugs:
            continue  # swallowed by an earlier label's fill: no number spent in fixed mode
        lab[slc][ndi.binary_fill_holes(msk)] = j + 1
        j += 1
    if min_size > 0:
        lab = drop_small(lab)
    return lab


def resize_nearest(masks: np.ndarray, shape) -> np.ndarray:
    """§4.6 / §9.3: OpenCV nearest, out i <- in floor(i * (1 / (out / in))) in doubles."""
    def index(n_out, n_in):
        return np.minimum(np.floor(np.arange(n_out) * (1.0 / (n_out / n_in))).astype(int), n_in - 1)
    return masks[np.ix_(index(shape[0], masks.shape[0]), index(shape[1], masks.shape[1]))]
