"""Huge volume files (issue 7): which 3-D inputs go through blocks, a lazy (Z, [C,] Y, X) view
of TIFF / zarr / OME-Zarr volumes, and ``segment_volume_file`` writing their 3-D labels.

A volume is huge when its Y or X side is above ``defaults.HUGE_IMAGE_SIDE`` or it has more
than ``defaults.HUGE_VOLUME_VOXELS`` voxels (a one-piece do_3D run holds ~60 bytes per voxel).
Outputs, as for huge 2-D images (``file_outputs``):
* OME-Zarr input -> ``labels/cp3rt`` (Z, Y, X) inside it (NGFF 0.4), marked complete when
  done; a re-run skips it, a half-written group from a killed run is redone.
* TIFF or plain zarr array -> ``<stem>_cp_masks.tif``, a (Z, Y, X) uint32 BigTIFF written
  under a temporary name and renamed when complete.
Only masks are written (flows of a huge volume would be 16x its size). The diameter must be
known: ``run.diameter`` or else the model's own diameter.

Axes: named axes are used (TIFF series axes, NGFF axes); ``run.z_axis`` / ``run.channel_axis``
(indices of the stored array) override them. Without a Z axis, the one axis longer than 1
that is not a named channel axis is Z (a bare 3-D TIFF reads as QYX); of two unnamed ones the
shorter holds the channels.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cp3rt import defaults as D
from cp3rt.errors import ConfigError, Cp3rtError, InputError
from cp3rt.runtime.batch.blocks.file_outputs import (block_diameter, failed_outcome, outcome_of,
                                                     refuse_extra_outputs, write_block_labels)
from cp3rt.runtime.batch.blocks.lazy import ngff_axes, tiff_axes
from cp3rt.runtime.batch.blocks.volume import segment_volume_blocks
from cp3rt.runtime.batch.files import ImageOutcome, OutputOptions
from cp3rt.runtime.config import RunConfig

if TYPE_CHECKING:  # pragma: no cover
    from cp3rt.runtime.pipeline import Pipeline


def volume_axes(shape: tuple[int, ...], axes: str, name: str = "volume", *,
                z_axis: int | None = None, channel_axis: int | None = None) -> str:
    """Axes letters of a stored array as Z, C, Y, X ('1' for axes of length 1, read at 0)."""
    shape = tuple(int(n) for n in shape)
    if z_axis is not None or channel_axis is not None:
        return _named_axes(shape, name, z_axis, channel_axis)
    axes = axes.upper().replace("S", "C")
    if len(axes) != len(shape) or axes.count("Y") != 1 or axes.count("X") != 1:
        raise InputError(f"{name}: cannot read axes {axes!r} of an array of shape {shape}.")
    out = ["1" if n == 1 and a not in "YX" else a for a, n in zip(axes, shape)]
    others = [i for i, a in enumerate(out) if a not in "1YX"]
    if "Z" not in out:  # a named C stays C; Z is the other axis
        free = [i for i in others if out[i] != "C"]
        if len(free) == 1:
            z = free[0]
        elif len(free) == 2 and "C" not in out:  # two unnamed axes: the shorter holds the channels
            z = max(free, key=lambda i: (shape[i], -i))
        else:
            raise InputError(f"{name}: shape {shape} (axes {axes}) is not a volume; a (Z, [C,] Y, X) stack "
                             "is needed (name its Z axis with z_axis).")
        out = ["Z" if i == z else ("C" if i in free else a) for i, a in enumerate(out)]
    else:
        # an unnamed axis beside a named Z holds the channels
        out = ["C" if i in others and a not in "TZC" and "C" not in out else a for i, a in enumerate(out)]
    extra = [f"{a}={n}" for a, n in zip(out, shape) if a not in "1ZCYX"]
    if extra or out.count("C") > 1:
        raise InputError(f"{name}: has {', '.join(extra) or 'two channel axes'} (axes {axes}); "
                         "volumes are processed as (Z, [C,] Y, X): give one time point.")
    return "".join(out)


def _named_axes(shape: tuple[int, ...], name: str, z_axis: int | None, channel_axis: int | None) -> str:
    nd = len(shape)
    for field, ax in (("z_axis", z_axis), ("channel_axis", channel_axis)):
        if ax is not None and not -nd <= ax < nd:
            raise ConfigError(f"{field}={ax} is not allowed for {name} of shape {shape}; allowed: {-nd}..{nd - 1}.")
    out = ["1"] * nd
    if z_axis is not None:
        out[z_axis % nd] = "Z"
    if channel_axis is not None:
        out[channel_axis % nd] = "C" if out[channel_axis % nd] == "1" else "?"
    rest = [i for i, a in enumerate(out) if a == "1"]
    if "?" in out or len(rest) < 2 or "Z" not in out or any(shape[i] != 1 for i in rest[:-2]):
        raise ConfigError(f"{name}: z_axis={z_axis}, channel_axis={channel_axis} do not leave (Y, X) as "
                          f"the last other axes of shape {shape} (give z_axis, and channel_axis if any).")
    out[rest[-2]], out[rest[-1]] = "Y", "X"
    return "".join(out)


class VolumeView:
    """Lazy (Z, Y, X) or (Z, C, Y, X) view of ``array`` whose axes are ``volume_axes`` letters."""

    def __init__(self, array: Any, axes: str) -> None:
        self._array, self._axes = array, axes
        self.axes = "ZCYX" if "C" in axes else "ZYX"
        self.shape: tuple[int, ...] = tuple(int(array.shape[axes.index(a)]) for a in self.axes)
        self.ndim = len(self.shape)
        self.dtype = array.dtype

    def __getitem__(self, key: Any) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        if Ellipsis in key:
            i = key.index(Ellipsis)
            key = key[:i] + (slice(None),) * (self.ndim - len(key) + 1) + key[i + 1:]
        key = key + (slice(None),) * (self.ndim - len(key))
        if len(key) != self.ndim or not all(isinstance(k, slice) for k in key):
            raise TypeError("VolumeView takes slices only")
        named = dict(zip(self.axes, key))
        out = np.asarray(self._array[tuple(named.get(a, 0) for a in self._axes)])
        kept = [a for a in self._axes if a in named]  # the stored order of the axes read
        return np.transpose(out, [kept.index(a) for a in self.axes])


def _stored(path: Path) -> tuple[tuple[int, ...], str, Any]:
    """(shape, axes letters, lazy opener) of a TIFF / zarr / OME-Zarr, from its metadata."""
    from cp3rt.runtime.io.zarr_io import is_zarr, open_lazy, zarr_module

    if is_zarr(path):
        from cp3rt.runtime.io.ngff import read_image

        node = zarr_module().open(str(path), mode="r")
        image = read_image(path) if not hasattr(node, "shape") else None
        arr = open_lazy(path)
        shape = tuple(arr.shape)
        return shape, ngff_axes(list(image.axes), len(shape)) if image else "Q" * len(shape), lambda: arr
    if path.suffix.lower() in (".tif", ".tiff"):
        shape, axes = tiff_axes(path)
        return shape, axes, lambda: open_lazy(path)
    raise InputError(f"{path} is neither a zarr/OME-Zarr folder nor a (Big)TIFF file.")


def _unnamed(shape: tuple[int, ...]) -> str:
    return "Q" * (len(shape) - 2) + "YX"


def open_volume(path: str | os.PathLike[str], *, z_axis: int | None = None,
                channel_axis: int | None = None) -> VolumeView:
    """Open a TIFF (memory-mapped) / zarr / OME-Zarr volume lazily as (Z, [C,] Y, X)."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p} does not exist.")
    shape, axes, opener = _stored(p)
    arr = opener()
    if tuple(arr.shape) != tuple(shape):  # a TIFF series whose memmap drops axes
        shape, axes = tuple(arr.shape), _unnamed(tuple(arr.shape))
    axes = axes if len(axes) == len(shape) and "Y" in axes and "X" in axes else _unnamed(shape)
    return VolumeView(arr, volume_axes(shape, axes, str(p), z_axis=z_axis, channel_axis=channel_axis))


def is_volume_input(path: str | os.PathLike[str]) -> bool:
    """True for a TIFF / zarr whose metadata describe a (Z, [C,] Y, X) stack with Z > 1."""
    p = Path(path)
    if not (p.suffix.lower() in (".tif", ".tiff") or p.is_dir()):
        return False
    try:
        shape, axes, _ = _stored(p)
        volume_axes(shape, axes if "Y" in axes.upper() and "X" in axes.upper() else _unnamed(shape))
    except InputError:
        return False
    return True


def is_huge_volume(path: str | os.PathLike[str], *, side: int = D.HUGE_IMAGE_SIDE,
                   voxels: int = D.HUGE_VOLUME_VOXELS) -> bool:
    """A volume (``is_volume_input``) with Y or X > ``side`` or more than ``voxels`` voxels."""
    p = Path(path)
    if not is_volume_input(p):
        return False
    shape, axes, _ = _stored(p)
    axes = volume_axes(shape, axes if "Y" in axes.upper() and "X" in axes.upper() else _unnamed(shape))
    lz, ly, lx = (shape[axes.index(a)] for a in "ZYX")
    return max(ly, lx) > side or math.prod((lz, ly, lx)) > voxels


def segment_volume_file(
    pipeline: Pipeline,
    path: Path,
    run: RunConfig,
    outputs: OutputOptions,
    *,
    block_size: int | None = None,
    block_size_z: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    labels_root: Path | None = None,
) -> ImageOutcome:
    """Segment one huge volume in blocks and write its 3-D labels (see the module docstring;
    ``labels_root``: see ``file_outputs.write_block_labels``);
    ``block_size`` None: ``defaults.BLOCK_SIZE_3D``. Errors become a failed outcome."""
    path = Path(path)
    try:
        refuse_extra_outputs(path, outputs, "huge volumes")
        t0 = time.perf_counter()
        volume = open_volume(path, z_axis=run.z_axis, channel_axis=run.channel_axis)
        diameter = block_diameter(pipeline, run)
        written, summary = write_block_labels(
            path, outputs, (volume.shape[0], *volume.shape[-2:]),
            lambda out, _scratch: segment_volume_blocks(
                pipeline, volume, out, diameter=diameter, run=run, block_size=block_size or D.BLOCK_SIZE_3D,
                block_size_z=block_size_z, progress=progress),
            lambda out, s: dict(n_objects=s.n_objects, blocks=s.n_blocks, diameter=diameter, halo=list(s.halo),
                                anisotropy=run.anisotropy),
            labels_root=labels_root)
        return outcome_of(path, written, summary, time.perf_counter() - t0, diameter)
    except (Cp3rtError, OSError) as err:
        return failed_outcome(path, err)
