"""End points -> label image (§4.4): histogram, seeds, 11x11 expansion, lookup, clean-up."""

from __future__ import annotations

import numpy as np

from cp3rt.defaults import MAX_SIZE_FRACTION
from cp3rt.errors import ConfigError, InputError
from cp3rt.runtime.dynamics._seeds import (
    drop_big_and_renumber,
    find_seeds,
    histogram,
    lookup,
    paint,
    scatter,
    seed_regions,
)


def get_masks(
    points: np.ndarray,
    inds: tuple[np.ndarray, np.ndarray],
    shape: tuple[int, int],
    max_size_fraction: float = MAX_SIZE_FRACTION,
) -> np.ndarray:
    """int32 label image of ``shape`` from integer end points (2, N) of the pixels ``inds``
    (rows, cols; any order, each pixel once).

    Seeds are histogram bins with > 10 end points that equal their 5x5 maximum; each grows to
    the bins with > 2 end points within 5 king moves; seeds are painted in ascending count order
    (higher counts overwrite; equal counts in raster order - the reference's unstable torch sort
    may order such ties differently). Pixels take the label of their end point's bin; labels
    with more than ``max_size_fraction`` of all pixels are removed; labels are 1..N in raster
    order of first appearance. No seeds -> all zeros.
    """
    if not (0.0 < float(max_size_fraction) <= 1.0):
        raise ConfigError(
            f"max_size_fraction must be in (0, 1]; got {max_size_fraction!r}."
        )
    ly, lx = (int(s) for s in shape)
    pts = np.asarray(points)
    ys = np.ascontiguousarray(inds[0], dtype=np.int64)
    xs = np.ascontiguousarray(inds[1], dtype=np.int64)
    if pts.ndim != 2 or pts.shape[0] != 2 or pts.shape[1] != ys.size or xs.size != ys.size:
        raise InputError(
            f"points must have shape (2, N) matching inds (N={ys.size}); got {pts.shape}."
        )
    if ys.size == 0:
        return np.zeros((ly, lx), np.int32)
    if ys.min() < 0 or ys.max() >= ly or xs.min() < 0 or xs.max() >= lx:
        raise InputError(f"inds contain pixels outside the image of size {ly}x{lx}.")
    linear = ys * lx + xs
    if linear.size > 1 and not (linear[1:] > linear[:-1]).all():
        # Labels are numbered along the pixel list, so it must be in raster order.
        order = np.argsort(linear, kind="stable")
        ys, xs, pts = ys[order], xs[order], pts[:, order]
    py = np.ascontiguousarray(pts[0], dtype=np.int64)
    px = np.ascontiguousarray(pts[1], dtype=np.int64)
    hist, qy, qx = histogram(py, px, ly, lx)
    sy, sx, cnt = find_seeds(hist)
    if sy.size == 0:
        return np.zeros((ly, lx), np.int32)
    regions = seed_regions(hist, sy, sx)
    order = np.argsort(cnt, kind="stable")  # ascending; ties keep raster order
    canvas = paint(hist.shape, sy, sx, regions, order)
    labels = lookup(canvas, qy, qx)
    drop_big_and_renumber(labels, int(sy.size), float(ly * lx) * float(max_size_fraction))
    return scatter((ly, lx), ys, xs, labels)

