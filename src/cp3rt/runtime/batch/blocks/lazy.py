"""A (Y, X) or (C, Y, X) read-on-demand view of a huge image file of any layout.

Files come as (Y, X), (Y, X, S) RGB TIFFs, OME-Zarr (T, C, Z, Y, X)-style arrays... The block
runner wants channels first and only slices of Y and X, read when asked; indexing a zarr array
with integers would load it, so singleton T/Z axes are fixed here and channels moved to the
front per slice that is actually read.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from cp3rt.errors import InputError


class PlaneView:
    """Lazy (Y, X) or (C, Y, X) view of ``array`` whose axes are named by ``axes`` (T, C, Z, Y, X, S)."""

    def __init__(self, array: Any, axes: str, name: str = "image") -> None:
        axes = axes.upper().replace("S", "C")
        if len(axes) != len(array.shape) or "Y" not in axes or "X" not in axes or axes.count("C") > 1:
            raise InputError(f"{name}: cannot read axes {axes!r} of an array of shape {tuple(array.shape)}.")
        for ax, n in zip(axes, array.shape):
            if ax not in "CYX" and n != 1:
                raise InputError(f"{name}: has {ax}={n}; huge images are processed as 2-D planes (give one plane).")
        self._array, self._axes = array, axes
        c = (array.shape[axes.index("C")],) if "C" in axes else ()
        self.shape: tuple[int, ...] = (*c, array.shape[axes.index("Y")], array.shape[axes.index("X")])
        self.ndim = len(self.shape)
        self.dtype = array.dtype

    def __getitem__(self, key: Any) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        if key and key[0] is Ellipsis:
            key = (slice(None),) * (self.ndim - len(key) + 1) + key[1:]
        key = key + (slice(None),) * (self.ndim - len(key))
        if len(key) != self.ndim or not all(isinstance(k, slice) for k in key):
            raise TypeError("PlaneView takes slices only")
        named = dict(zip("CYX"[-self.ndim:], key))
        base = tuple(named.get(ax, 0) for ax in self._axes)
        out = np.asarray(self._array[base])
        if "C" in self._axes and self._axes.index("C") > self._axes.index("Y"):
            out = np.moveaxis(out, -1, 0)  # channels-last file -> channels first
        return out


def tiff_axes(path: str | os.PathLike[str]) -> tuple[tuple[int, ...], str]:
    """(shape, axes) of a TIFF's first series, without reading pixels."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tf:
            s = tf.series[0]
            return tuple(s.shape), s.axes
    except (OSError, ValueError, IndexError, tifffile.TiffFileError) as exc:  # IndexError: no series
        raise InputError(f"{path}: cannot read the TIFF header ({exc}).") from exc


def guess_axes(shape: tuple[int, ...]) -> str:
    """Axes of an array with no metadata: YX, YXC (last axis <= 4) or CYX."""
    if len(shape) == 2:
        return "YX"
    if len(shape) == 3:
        return "YXC" if shape[-1] <= 4 else "CYX"
    return "T" * (len(shape) - 3) + "CYX"


def ngff_axes(meta: list[Any] | None, ndim: int) -> str:
    """Axes letters from NGFF multiscales 'axes' (0.4 dicts or 0.3 strings)."""
    if not meta:
        return "TCZYX"[-ndim:] if ndim <= 5 else guess_axes((0,) * ndim)
    names = [(a["name"] if isinstance(a, dict) else a).upper() for a in meta]
    return "".join(n if n in "TCZYX" else "T" for n in names)


def open_plane(path: str | os.PathLike[str]) -> PlaneView:
    """Open a zarr / OME-Zarr / (Big)TIFF lazily as a (Y, X) or (C, Y, X) view."""
    from cp3rt.runtime.io.zarr_io import is_zarr, open_lazy, zarr_module

    p = Path(path)
    arr = open_lazy(p)
    if is_zarr(p):
        from cp3rt.runtime.io.ngff import read_image

        node = zarr_module().open(str(p), mode="r")
        image = read_image(p) if not hasattr(node, "shape") else None
        axes = ngff_axes(list(image.axes), len(arr.shape)) if image else guess_axes(tuple(arr.shape))
    else:
        shape, axes = tiff_axes(p)
        if tuple(arr.shape) != shape:
            axes = guess_axes(tuple(arr.shape))
    return PlaneView(arr, axes, str(p))
