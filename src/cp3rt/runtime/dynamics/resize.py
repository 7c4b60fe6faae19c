"""Nearest-neighbour resize of label images with OpenCV ``INTER_NEAREST`` semantics (§4.6, §9.3)."""

from __future__ import annotations

import numba
import numpy as np

from cp3rt.errors import ConfigError, InputError
from cp3rt.runtime.dynamics.threads import parallel_kernel


def nearest_source_index(n_out: int, n_in: int) -> np.ndarray:
    """Source index of each output index: floor(i * in / out), clipped to in - 1.

    Computed like OpenCV: the scale is the double ``1 / (out / in)`` and the product is
    floored in double precision, so rounding matches OpenCV even where i * in / out is an
    integer that the double product misses by one ulp.
    """
    inv_scale = 1.0 / (float(n_out) / float(n_in))
    src = np.floor(np.arange(n_out, dtype=np.float64) * inv_scale).astype(np.int64)
    return np.minimum(src, n_in - 1)


@parallel_kernel
def _gather(img, sy, sx):  # pragma: no cover - compiled
    out = np.empty((sy.shape[0], sx.shape[0]), img.dtype)
    for i in numba.prange(sy.shape[0]):
        row = sy[i]
        for j in range(sx.shape[0]):
            out[i, j] = img[row, sx[j]]
    return out


def resize_nearest(masks: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize a 2-D label image to ``shape = (Y, X)``: output (i, j) takes input
    (floor(i * Y_in / Y), floor(j * X_in / X)). Labels are copied exactly for every integer
    dtype (the reference goes through float32 for uint32 and would corrupt labels > 2**24)."""
    arr = np.asarray(masks)
    if arr.ndim != 2 or arr.size == 0:
        raise InputError(f"masks must be a non-empty 2-D label image; got shape {arr.shape}.")
    try:
        ly, lx = (int(s) for s in shape)
    except (TypeError, ValueError):
        raise ConfigError(f"output_shape must be two positive integers (Y, X); got {shape!r}.") from None
    if ly <= 0 or lx <= 0:
        raise ConfigError(f"output_shape must be two positive integers (Y, X); got {shape!r}.")
    if (ly, lx) == arr.shape:
        return arr.copy()
    sy = nearest_source_index(ly, arr.shape[0])
    sx = nearest_source_index(lx, arr.shape[1])
    return _gather(np.ascontiguousarray(arr), sy, sx)
