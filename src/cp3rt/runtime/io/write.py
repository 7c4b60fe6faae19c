"""Atomic writers for TIFF and JSON outputs; file-system failures become OutputError."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from cp3rt._fs import atomic_path
from cp3rt.errors import ConfigError, OutputError


@contextlib.contextmanager
def output_path(final: str | os.PathLike[str]) -> Iterator[Path]:
    """:func:`cp3rt._fs.atomic_path`, turning OS errors (read-only folder, disk full...) into
    :class:`OutputError` naming the folder."""
    final = Path(final)
    try:
        with atomic_path(final) as tmp:
            yield tmp
    except OSError as exc:
        why = exc.strerror or str(exc) or type(exc).__name__
        raise OutputError(f"Cannot write {final.name} into folder {final.parent}: {why}.") from exc


def mask_dtype(masks: np.ndarray) -> type[np.unsignedinteger[Any]]:
    """uint16 when every label fits, else uint32 (as Cellpose's TIFF masks)."""
    top = int(masks.max(initial=0))
    if top >= 2**32:
        raise ConfigError(f"masks has label {top}; at most 2**32 - 1 labels can be stored.")
    return np.uint16 if top < 2**16 else np.uint32


def _check_masks(masks: Any) -> np.ndarray:
    m = np.asarray(masks)
    if m.dtype.kind not in "biu":
        raise ConfigError(f"masks has dtype {m.dtype}; label images must be integers.")
    if m.size and m.min() < 0:
        raise ConfigError(f"masks has negative labels (min {m.min()}); labels must be >= 0.")
    return m


def write_masks_tif(path: str | os.PathLike[str], masks: Any, pixel_size: Any = None,
                    axes: str | None = None) -> Path:
    """Write a label image as a zlib-compressed TIFF (uint16, or uint32 above 65535 labels);
    ``pixel_size`` (an ``io.pixel_size.PixelSize``, e.g. the input's) is stored with it, and
    ``axes`` (e.g. ``TYX`` for a time-lapse) in its ImageJ metadata (tifffile's for uint32)."""
    import tifffile

    from cp3rt.runtime.io.pixel_size import tiff_kwargs

    m = _check_masks(masks)
    m = m.astype(mask_dtype(m), copy=False)
    with output_path(path) as tmp:
        tifffile.imwrite(tmp, m, compression="zlib", **_with_axes(tiff_kwargs(pixel_size, m), m, axes))
    return Path(path)


def _with_axes(kwargs: dict[str, Any], masks: np.ndarray, axes: str | None) -> dict[str, Any]:
    """``kwargs`` for tifffile.imwrite with ``axes`` recorded (ImageJ for 8/16-bit labels)."""
    if axes is None:
        return kwargs
    if len(axes) != masks.ndim:
        raise ConfigError(f"axes {axes!r} do not fit masks of shape {masks.shape}.")
    out = dict(kwargs)
    meta = dict(out.get("metadata") or {})
    meta["axes"] = axes
    if "Z" not in axes:
        meta.pop("spacing", None)
    out["metadata"] = meta
    if masks.dtype in (np.uint8, np.uint16):
        out["imagej"] = True
    return out


def write_image_tif(path: str | os.PathLike[str], image: Any) -> Path:
    """Write a float image as a zlib-compressed float32 TIFF.

    (C, Y, X) data (flows, restored channels) is stored as C grey pages; only a channels-last
    (Y, X, 3 or 4) image keeps an RGB(A) page. Said explicitly because tifffile's guess for 3- or
    4-channel float data (RGB) is deprecated and is going to change.
    """
    import tifffile

    x = np.asarray(image, dtype=np.float32)
    colour = x.ndim == 3 and x.shape[-1] in (3, 4)
    with output_path(path) as tmp:
        tifffile.imwrite(tmp, x, compression="zlib", photometric="rgb" if colour else "minisblack")
    return Path(path)


def write_json(path: str | os.PathLike[str], data: Any) -> Path:
    """Write ``data`` as indented UTF-8 JSON (NaN not allowed: store None instead)."""
    text = json.dumps(data, indent=2, allow_nan=False) + "\n"
    with output_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)
