"""Huge images on disk: lazy readers for OME-Zarr / zarr and BigTIFF (memory-mapped), and
label writers, (Y, X) or (Z, Y, X) (NGFF ``labels/`` group inside an OME-Zarr, or a BigTIFF memmap).

zarr is an optional dependency (``pip install cp3rt[scale]``), imported only here. OME-Zarr
is written as NGFF 0.4 (zarr format 2): ``labels/.zattrs`` lists the label images, each one a
multiscales group with a single level ``0`` and ``image-label`` metadata.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from cp3rt import defaults as D
from cp3rt._lazy import require
from cp3rt.errors import InputError, OutputError

NGFF_VERSION = "0.4"
LABEL_CHUNK = 1024
LABEL_CHUNK_3D = (64, 256, 256)  # 16 MB uint32 chunks; volume blocks are written core by core
_AXIS_TYPES = {"t": "time", "c": "channel", "z": "space", "y": "space", "x": "space"}


def _zarr():
    return require("zarr", "reading and writing zarr / OME-Zarr images (pip install cp3rt[scale])")


def is_zarr(path: str | os.PathLike[str]) -> bool:
    p = Path(path)
    return p.is_dir() and any((p / f).exists() for f in (".zgroup", ".zarray", "zarr.json"))


def open_lazy(path: str | os.PathLike[str]) -> Any:
    """A sliceable array for a huge image, read on demand: OME-Zarr (level 0 of the first
    multiscale), a plain zarr array, or a TIFF/BigTIFF (memory-mapped when uncompressed)."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p} does not exist.")
    if is_zarr(p):
        zarr = _zarr()
        node = zarr.open(str(p), mode="r")
        if hasattr(node, "shape"):
            return node
        ms = node.attrs.get("multiscales")
        if not ms:
            raise InputError(f"{p} is a zarr group without NGFF 'multiscales' metadata; give the array inside it.")
        return node[ms[0]["datasets"][0]["path"]]
    if p.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        try:
            return tifffile.memmap(p, mode="r")
        except ValueError:  # compressed or tiled: read through tifffile's zarr store
            store = tifffile.imread(p, aszarr=True)
            return _zarr().open(store, mode="r")
    raise InputError(f"{p} is neither a zarr/OME-Zarr folder nor a (Big)TIFF file.")


def _multiscales(name: str, ndim: int = 2, axes_names: str = "yx") -> list[dict]:
    axes = [{"name": a, "type": _AXIS_TYPES[a]} for a in axes_names]
    return [{"version": NGFF_VERSION, "name": name, "axes": axes,
             "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1.0] * ndim}]}]}]


def create_ngff_labels(root: str | os.PathLike[str], shape: tuple[int, ...], name: str = D.LABELS_NAME,
                       *, overwrite: bool = False) -> Any:
    """Create ``root/labels/<name>/0`` (uint32, zero-filled, (Y, X) or (Z, Y, X)) in an
    OME-Zarr (or a new one at ``root``) and register it in ``labels/.zattrs``; returns the
    writable array."""
    if len(shape) not in (2, 3):
        raise OutputError(f"{root}: labels are (Y, X) or (Z, Y, X), not shape {tuple(shape)}.")
    volume = len(shape) == 3
    zarr = _zarr()
    try:
        group = zarr.open_group(str(root), mode="a", zarr_format=2)
        labels = group.require_group("labels")
        names = list(labels.attrs.get("labels", []))
        if name in labels and not overwrite:
            raise OutputError(f"{root}/labels/{name} exists already; pass overwrite to replace it.")
        lab = labels.create_group(name, overwrite=True)
        lab.attrs["multiscales"] = _multiscales(name, len(shape), "zyx" if volume else "yx")
        lab.attrs["image-label"] = {"version": NGFF_VERSION, "source": {"image": "../../"}}
        chunks = tuple(min(c, int(n)) for c, n in zip(LABEL_CHUNK_3D, shape)) if volume else (LABEL_CHUNK,) * 2
        arr = lab.create_array("0", shape=tuple(shape), chunks=chunks, dtype="uint32", fill_value=0)
        if name not in names:
            labels.attrs["labels"] = [*names, name]
        return arr
    except OSError as exc:
        raise OutputError(f"{root}: cannot write labels ({exc.strerror or exc}).") from exc


def mark_complete(arr: Any, **info: Any) -> None:
    """Set ``cp3rt`` attributes on a written label array (its presence means 'done')."""
    arr.attrs["cp3rt"] = {"complete": True, **info}


def is_complete(root: str | os.PathLike[str], name: str = D.LABELS_NAME) -> bool:
    p = Path(root) / "labels" / name / "0"
    if not is_zarr(p):
        return False
    return bool(_zarr().open(str(p), mode="r").attrs.get("cp3rt", {}).get("complete"))


def create_bigtiff_labels(path: str | os.PathLike[str], shape: tuple[int, ...]) -> np.memmap:
    """A zero-filled uint32 BigTIFF, memory-mapped for writing (flush it when done); a
    (Z, Y, X) shape is written as one series with axes ZYX."""
    import tifffile

    extra = {"metadata": {"axes": "ZYX"}} if len(shape) == 3 else {}
    try:
        return tifffile.memmap(path, shape=tuple(shape), dtype=np.uint32, bigtiff=True, **extra)
    except OSError as exc:
        raise OutputError(f"{path}: cannot create a BigTIFF ({exc.strerror or exc}).") from exc


def write_ngff_image(root: str | os.PathLike[str], image: np.ndarray, chunks: int = LABEL_CHUNK,
                     axes: str | None = None) -> Any:
    """Write an array as a single-level OME-Zarr image (tests, benchmarks); ``axes`` names
    its axes (``"zyx"``, ``"czyx"``...), default ``"yx"`` / ``"cyx"``."""
    zarr = _zarr()
    axes = (axes or ("cyx" if image.ndim == 3 else "yx")).lower()
    if len(axes) != image.ndim or set(axes) - set(_AXIS_TYPES):
        raise InputError(f"axes={axes!r} does not name the {image.ndim} axes of the image (letters tczyx).")
    group = zarr.open_group(str(root), mode="w", zarr_format=2)
    group.attrs["multiscales"] = _multiscales("image", image.ndim, axes)
    arr = group.create_array("0", shape=image.shape, chunks=(*image.shape[:-2], chunks, chunks),
                             dtype=image.dtype, fill_value=0)
    arr[...] = image
    return arr
