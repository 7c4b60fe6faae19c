"""3-D masks (§4.9): flows (3, Z, Y, X) + cellprob (Z, Y, X) -> label volume.

Same chain as 2-D without the flow QC: foreground ``cellprob > threshold``, Euler integration of
``dP * fg / 5`` (see ``integrate3d`` for the sampling), histogram over the volume padded by 20,
seeds at 5x5x5 maxima with > 10 end points, 11^3 seed regions grown by 3x3x3 dilation through
bins with > 2 end points, big-mask removal (``max_size_fraction`` of all voxels), renumbering
in raster order, nearest resize back (Y/X per plane, then Z), 3-D hole filling and ``min_size``
in voxels.
"""

from __future__ import annotations

import numpy as np

from cp3rt.defaults import FLOW_SCALE, MAX_SIZE_FRACTION, MIN_SIZE, NITER_AT_RESCALE_1
from cp3rt.errors import ConfigError, InputError
from cp3rt.runtime.dynamics._fill3d import fill_all3d, label_boxes3d
from cp3rt.runtime.dynamics._labels import label_dtype
from cp3rt.runtime.dynamics._seeds import drop_big_and_renumber
from cp3rt.runtime.dynamics._seeds3d import (
    find_seeds3d,
    histogram3d,
    lookup3d,
    paint3d,
    scatter3d,
    seed_regions3d,
)
from cp3rt.runtime.dynamics.cleanup import drop_and_renumber, labels_to_drop
from cp3rt.runtime.dynamics.integrate3d import Sampling, check_sampling, follow_flows_3d
from cp3rt.runtime.dynamics.resize import nearest_source_index


def get_masks_3d(points: np.ndarray, inds: np.ndarray, shape: tuple[int, int, int],
                 max_size_fraction: float = MAX_SIZE_FRACTION) -> np.ndarray:
    """int32 label volume of ``shape`` from integer end points (3, N) of the voxels ``inds``
    (3, N) given in raster order. Seeds of equal count are painted in raster order (the
    reference's torch sort is unstable). No seeds -> all zeros."""
    if not 0.0 < float(max_size_fraction) <= 1.0:
        raise ConfigError(f"max_size_fraction must be in (0, 1]; got {max_size_fraction!r}.")
    shape3 = tuple(int(s) for s in shape)
    pts = np.ascontiguousarray(points, dtype=np.int64)
    idx = np.ascontiguousarray(inds, dtype=np.int64)
    if pts.shape != idx.shape or pts.ndim != 2 or pts.shape[0] != 3:
        raise InputError(f"points must have shape (3, N) matching inds; got {pts.shape} and {idx.shape}.")
    if idx.shape[1] == 0:
        return np.zeros(shape3, np.int32)
    hist, q = histogram3d(pts, shape3)
    seeds, cnt = find_seeds3d(hist)
    if cnt.size == 0:
        return np.zeros(shape3, np.int32)
    regions = seed_regions3d(hist, seeds)
    order = np.argsort(cnt, kind="stable")  # ascending; ties keep raster order
    canvas = paint3d(hist.shape, seeds, regions, order)
    del hist
    labels = lookup3d(canvas, q)
    del canvas
    drop_big_and_renumber(labels, int(cnt.size), float(np.prod(shape3)) * float(max_size_fraction))
    return scatter3d(shape3, idx, labels)


def resize_nearest_3d(lab: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """OpenCV INTER_NEAREST on every plane to (Y, X), then on every Y-slice to Z (§4.6)."""
    sz = nearest_source_index(int(shape[0]), lab.shape[0])
    sy = nearest_source_index(int(shape[1]), lab.shape[1])
    sx = nearest_source_index(int(shape[2]), lab.shape[2])
    return np.ascontiguousarray(lab[np.ix_(sz, sy, sx)])


def fill_holes_3d(lab: np.ndarray, min_size: int, reference_bugs: bool = False) -> np.ndarray:
    """§4.7 on an int32 label volume (copy returned): drop small, fill 3-D holes label by label
    (6-connected background), drop small again; labels 1..N in raster order of first voxel."""
    nz, ny, nx = lab.shape
    flat = lab.reshape(nz * ny, nx)  # raster order of the volume == raster order of this view
    if min_size > 0:
        flat = drop_and_renumber(flat, labels_to_drop(flat, min_size, reference_bugs))
    else:
        flat = flat.copy()
    vol = np.ascontiguousarray(flat.reshape(nz, ny, nx))
    if vol.size == 0 or vol.max() == 0:
        return vol
    fill_all3d(vol, label_boxes3d(vol, int(vol.max())), reference_bugs)
    if min_size > 0:
        flat = vol.reshape(nz * ny, nx)
        vol = drop_and_renumber(flat, labels_to_drop(flat, min_size, reference_bugs)).reshape(nz, ny, nx)
    return vol


def _check(dP: np.ndarray, cellprob: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    dP = np.asarray(dP)
    cellprob = np.asarray(cellprob)
    if cellprob.ndim != 3 or dP.shape != (3, *cellprob.shape):
        raise InputError(
            f"3-D dynamics need dP of shape (3, Z, Y, X) and cellprob of shape (Z, Y, X); got "
            f"{dP.shape} and {cellprob.shape}."
        )
    return np.asarray(dP, dtype=np.float32), np.asarray(cellprob, dtype=np.float32)


def compute_masks_3d(
    dP: np.ndarray,
    cellprob: np.ndarray,
    *,
    niter: float = NITER_AT_RESCALE_1,
    cellprob_threshold: float = 0.0,
    min_size: int = MIN_SIZE,
    max_size_fraction: float = MAX_SIZE_FRACTION,
    interp: bool = True,
    output_shape: tuple[int, int, int] | None = None,
    reference_bugs: bool = False,
    sampling: Sampling | None = None,
) -> np.ndarray:
    """Label volume (uint16; uint32 beyond 65535 labels) from 3-D flows (Z, Y, X order) and
    cell probability. ``min_size`` is in voxels at the output resolution; ``output_shape``
    (Z, Y, X) resizes the masks with nearest neighbour before the clean-up. ``sampling`` None:
    "exact", or the reference's "grid" with ``reference_bugs`` (docs/deviations.md row 11)."""
    dP, cellprob = _check(dP, cellprob)
    if sampling is None:
        sampling = "grid" if reference_bugs else "exact"
    check_sampling(sampling)
    if isinstance(min_size, bool) or int(min_size) != min_size:
        raise ConfigError(f"min_size must be an integer (<= 0 disables it); got {min_size!r}.")
    out_shape = tuple(int(s) for s in (output_shape or cellprob.shape))
    if len(out_shape) != 3 or min(out_shape) <= 0:
        raise ConfigError(f"output_shape must be three positive integers (Z, Y, X); got {output_shape!r}.")
    # Non-finite cellprob is background, non-finite flow counts as 0 (as in 2-D).
    fg = np.isfinite(cellprob) & (cellprob > np.float32(cellprob_threshold))
    inds = np.stack(np.nonzero(fg))
    if inds.shape[1] == 0:
        return np.zeros(out_shape, np.uint16)
    field = np.where(np.isfinite(dP) & fg, dP, np.float32(0)) / np.float32(FLOW_SCALE)
    ends = follow_flows_3d(field, inds, niter, interp, sampling).astype(np.int32)  # truncation
    del field
    lab = get_masks_3d(ends, inds, cellprob.shape, max_size_fraction)
    del ends
    if out_shape != lab.shape:
        lab = resize_nearest_3d(lab, out_shape)
    lab = fill_holes_3d(lab, int(min_size), reference_bugs)
    return lab.astype(label_dtype(int(lab.max()) if lab.size else 0), copy=False)
