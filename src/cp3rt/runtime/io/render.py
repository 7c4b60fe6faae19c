"""Pictures of results: mask outlines, flow colour wheel, outline overlays (spec §8.2)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from cp3rt.defaults import MIN_PERCENTILE_RANGE, PERCENTILES
from cp3rt.errors import ConfigError
from cp3rt.runtime.io._outlines import outer_contours
from cp3rt.runtime.io.write import output_path

def _outlines_2d(masks: np.ndarray) -> np.ndarray:
    slices = ndimage.find_objects(masks)
    boxes = np.zeros((len(slices), 4), dtype=np.int64)  # empty rows = absent labels
    for k, box in enumerate(slices):
        if box is not None:
            boxes[k] = (box[0].start, box[0].stop, box[1].start, box[1].stop)
    out = np.zeros(masks.shape, dtype=bool)
    outer_contours(np.ascontiguousarray(masks), boxes, out)
    return out


def masks_to_outlines(masks: Any) -> np.ndarray:
    """Boolean map of the outer contour pixels of every label, for 2-D or 3-D (per plane).

    Same pixels as the reference's OpenCV external contours: holes of a label (even when
    another label fills them) give no outline.
    """
    m = np.asarray(masks)
    if m.ndim not in (2, 3):
        raise ConfigError(f"masks has {m.ndim} dimensions; outlines need a 2-D or 3-D array.")
    if m.dtype.kind not in "biu":
        raise ConfigError(f"masks has dtype {m.dtype}; label images must be integers.")
    if m.dtype.kind == "b" or m.dtype.itemsize > 4:
        m = m.astype(np.int32 if m.max(initial=0) < 2**31 else np.int64)  # find_objects types
    if m.ndim == 3:
        return np.stack([_outlines_2d(plane) for plane in m])
    return _outlines_2d(m)


def normalize99(x: np.ndarray) -> np.ndarray:
    """1/99 percentile scaling in the input's float precision; flat data (range <= 1e-3) -> 0."""
    x = np.array(x, dtype=x.dtype if x.dtype in (np.float32, np.float64) else np.float32)
    lo = np.percentile(x, PERCENTILES[0])
    hi = np.percentile(x, PERCENTILES[1])
    if hi - lo > MIN_PERCENTILE_RANGE:
        x -= lo
        x /= hi - lo
    else:
        x[:] = 0
    return x


def flows_to_rgb(dP: Any) -> np.ndarray:
    """Colour-wheel picture of a flow field ``(2, ...)`` = (dY, dX): hue = direction,
    brightness = 1/99-percentile-normalised magnitude. Returns uint8 ``(..., 3)``.

    A 3-component field (dZ, dY, dX) takes the magnitude of all three and the angle of the
    first two, like the reference's GUI picture.
    """
    d = np.asarray(dP)
    if d.ndim < 2 or d.shape[0] < 2:
        raise ConfigError(f"dP has shape {d.shape}; flows need a leading axis of >= 2 components.")
    if d.dtype not in (np.float32, np.float64):
        d = d.astype(np.float32)
    mag = np.clip(normalize99(np.sqrt(np.sum(d**2, axis=0))), 0, 1.0) * 255
    angle = np.arctan2(d[1], d[0]) + np.pi
    mag /= 2  # cos(.) + 1 spans [0, 2]: halve so full magnitude maps to [0, 255]
    rgb = np.zeros((*d.shape[1:], 3), dtype=np.uint8)
    for c, phase in enumerate((0.0, 2 * np.pi / 3, 4 * np.pi / 3)):
        rgb[..., c] = np.clip(mag * (np.cos(angle + phase) + 1), 0, 255).astype(np.uint8)
    return rgb


def display_rgb(image: np.ndarray) -> np.ndarray:
    """(Y, X[, C]) image -> uint8 RGB for pictures: each of the first three channels 1-99 %
    normalised and clipped (one channel is grey)."""
    if image.ndim == 2:
        image = image[..., None]
    # Channels beyond the third are not shown (an RGBA file keeps its colours).
    planes = [np.clip(normalize99(image[..., c].astype(np.float32)), 0, 1)
              for c in range(min(3, image.shape[-1]))]
    if len(planes) == 1:
        planes = planes * 3
    while len(planes) < 3:
        planes.append(np.zeros_like(planes[0]))
    return (np.stack(planes, axis=-1) * 255).astype(np.uint8)


def write_overlay_png(
    path: str | os.PathLike[str],
    image: Any,
    masks: Any,
    color: tuple[int, int, int] = (255, 0, 0),
) -> Path:
    """Write an RGB PNG: the 1/99-normalised image with every mask outline in ``color``.

    Grey images are shown grey; 2-3 channels become red, green (and blue); further channels
    are not shown.
    """
    from PIL import Image

    img = np.asarray(image)
    m = np.asarray(masks)
    if img.ndim == 3 and img.shape[1:] == m.shape and img.shape[:2] != m.shape:
        img = np.moveaxis(img, 0, -1)  # (C, Y, X) -> channels-last
    if m.ndim != 2 or img.ndim not in (2, 3) or img.shape[:2] != m.shape:
        raise ConfigError(
            f"image has shape {img.shape} and masks {m.shape}; overlays need a 2-D label image "
            "and an image of the same height and width ((Y, X), (Y, X, C) or (C, Y, X))."
        )
    if len(color) != 3 or not all(0 <= int(c) <= 255 for c in color):
        raise ConfigError(f"color is {color}; it must be three integers in [0, 255].")
    rgb = display_rgb(img)
    rgb[masks_to_outlines(m)] = np.asarray(color, dtype=np.uint8)
    with output_path(path) as tmp:
        Image.fromarray(rgb).save(tmp, format="PNG")
    return Path(path)


def write_flow_picture_tif(path: str | os.PathLike[str], dP: Any) -> Path:
    """Write Cellpose's ``_flows.tif``: the colour flow picture of ``dP`` as a uint8 RGB TIFF.

    2-D ``dP (2, Y, X)`` gives one (Y, X, 3) page; a volume's ``dP`` — ``(3, Z, Y, X)`` from
    do_3D, ``(2, Z, Y, X)`` from stitched planes — one picture of (dY, dX) per plane, (Z, Y, X, 3). The reference scales the uint8 picture by 65535 first,
    which wraps around (NumPy 1) or raises (NumPy 2): cp3rt keeps the picture as it is.
    """
    import tifffile

    d = np.asarray(dP)
    rgb = flows_to_rgb(d) if d.ndim == 3 else np.stack([flows_to_rgb(d[-2:, z]) for z in range(d.shape[1])])
    with output_path(path) as tmp:
        tifffile.imwrite(tmp, rgb, compression="zlib", photometric="rgb")
    return Path(path)
