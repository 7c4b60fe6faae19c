"""Huge images on disk: lazy readers for OME-Zarr / zarr and BigTIFF (memory-mapped), and
label writers, (Y, X) or (Z, Y, X) (NGFF ``labels/`` group inside an OME-Zarr, or a BigTIFF memmap).

zarr is an optional dependency (``pip install cp3rt[scale]``), imported only here; OME-Zarr
metadata (NGFF 0.4 on zarr v2, 0.5 on zarr v3) go through ome-zarr-py in ``ngff`` (the ``zarr``
extra). Labels are written in the image's NGFF version: ``labels/`` lists them, each one a
multiscale label image with the image's levels, scales and units, and ``image-label`` metadata.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from cp3rt import defaults as D
from cp3rt._lazy import require
from cp3rt.errors import InputError, OutputError

LABEL_CHUNK = 1024
LABEL_CHUNK_3D = (64, 256, 256)  # 16 MB uint32 chunks; volume blocks are written core by core
_AXES = "tczyx"


def zarr_module() -> Any:
    """The ``zarr`` package, imported on first use (the ``scale`` extra; a missing one is an
    error that says what to install). Every module that opens zarr stores gets it here."""
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
        zarr = zarr_module()
        node = zarr.open(str(p), mode="r")
        if hasattr(node, "shape"):
            return node
        from cp3rt.runtime.io.ngff import read_image

        image = read_image(p)
        if image is None:
            raise InputError(f"{p} is a zarr group without NGFF 'multiscales' metadata; give the array inside it.")
        return node[image.datasets[0]]
    if p.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        try:
            return tifffile.memmap(p, mode="r")
        except ValueError:  # compressed or tiled: read through tifffile's zarr store
            store = tifffile.imread(p, aszarr=True)
            return zarr_module().open(store, mode="r")
    raise InputError(f"{p} is neither a zarr/OME-Zarr folder nor a (Big)TIFF file.")


def create_ngff_labels(root: str | os.PathLike[str], shape: tuple[int, ...], name: str = D.LABELS_NAME,
                       *, overwrite: bool = False, image: str | os.PathLike[str] | None = None) -> Any:
    """Create ``root/labels/<name>`` (uint32, zero-filled, (Y, X) or (Z, Y, X)) for the
    OME-Zarr image at ``image`` (default ``root`` itself) with the image's levels, scales,
    units and NGFF version, registered in ``labels``; returns level 0, writable. The lower
    levels are filled by ``mark_complete``."""
    from cp3rt.runtime.io import ngff

    if len(shape) not in (2, 3):
        raise OutputError(f"{root}: labels are (Y, X) or (Z, Y, X), not shape {tuple(shape)}.")
    source = Path(image if image is not None else root)
    meta = ngff.read_image(source)
    if meta is None:
        raise OutputError(f"{source}: not an OME-Zarr image (no NGFF 'multiscales'); labels need one.")
    if (Path(root) / "labels" / name).exists() and not overwrite:
        raise OutputError(f"{root}/labels/{name} exists already; pass overwrite to replace it.")
    chunks = tuple(min(c, int(n)) for c, n in zip(LABEL_CHUNK_3D, shape)) if len(shape) == 3 else (LABEL_CHUNK,) * 2
    try:
        return ngff.create_labels(root, meta, tuple(int(n) for n in shape), name, chunks)
    except OSError as exc:
        raise OutputError(f"{root}: cannot write labels ({exc.strerror or exc}).") from exc


def mark_complete(arr: Any, **info: Any) -> None:
    """Fill the lower levels of written NGFF labels from level 0 ``arr`` (nearest neighbour),
    then set ``cp3rt`` attributes on it (their presence means 'done', so they come last)."""
    from cp3rt.runtime.io.ngff import fill_lower_levels

    fill_lower_levels(arr)
    arr.attrs["cp3rt"] = {"complete": True, **info}


def is_complete(root: str | os.PathLike[str], name: str = D.LABELS_NAME) -> bool:
    p = Path(root) / "labels" / name / "0"
    if not is_zarr(p):
        return False
    return bool(zarr_module().open(str(p), mode="r").attrs.get("cp3rt", {}).get("complete"))


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
                     axes: str | None = None, *, version: str = "0.4", scale_factors: tuple[int, ...] = (),
                     scale: dict[str, float] | None = None, units: dict[str, str] | None = None) -> Any:
    """Write an array as an OME-Zarr image with ome-zarr-py (tests, benchmarks): NGFF
    ``version`` 0.4 (zarr v2) or 0.5 (zarr v3), one level plus one per ``scale_factors``;
    ``axes`` names its axes (``"zyx"``, ``"czyx"``...), default ``"yx"`` / ``"cyx"``;
    ``scale`` / ``units``: level 0's pixel size and unit per axis name."""
    from cp3rt.runtime.io.ngff import ome_zarr

    oz = ome_zarr()
    axes = (axes or ("cyx" if image.ndim == 3 else "yx")).lower()
    if len(axes) != image.ndim or set(axes) - set(_AXES):
        raise InputError(f"axes={axes!r} does not name the {image.ndim} axes of the image (letters tczyx).")
    fmt = oz.format.format_from_version(version)
    group = zarr_module().open_group(str(root), mode="w", zarr_format=fmt.zarr_format)
    full = dict.fromkeys(axes, 1.0) | (scale or {})
    oz.writer.write_image(image, group, scale_factors=list(scale_factors), fmt=fmt, axes=axes,
                          scale=full, axes_units=units,
                          storage_options={"chunks": (*image.shape[:-2], chunks, chunks)})
    return group[oz.writer.get_metadata(group)["multiscales"][0]["datasets"][0]["path"]]
