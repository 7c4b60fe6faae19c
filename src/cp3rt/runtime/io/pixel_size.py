"""The input's pixel size and unit, carried into the mask TIFF, so that a 0.65 µm image gives
masks at 0.65 µm in Fiji, QuPath or napari (not at 1 x 1 pixel).

Read, first found wins: the OME-XML ``PhysicalSizeX/Y/Z`` (+ units); the ImageJ description
(``unit=``, ``spacing=`` for Z) with the XResolution/YResolution tags; the baseline
XResolution/YResolution tags with ResolutionUnit inch or centimetre. A file without any gives
None (nothing is written: the masks stay unitless, as before).

Written: the X/Y resolution tags (pixels per unit) and, for uint8/uint16 masks (what ImageJ
reads), the ImageJ ``unit``/``spacing`` description, as Fiji itself saves a calibrated image.
uint32 masks (ImageJ cannot open them) get the resolution with ResolutionUnit centimetre when
the unit converts to centimetres, else the bare ratio.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Any

import numpy as np

_TO_CM = {"nm": 1e-7, "um": 1e-4, "µm": 1e-4, "\u03bcm": 1e-4, "micron": 1e-4, "mm": 0.1, "cm": 1.0, "m": 100.0}


@dataclasses.dataclass(frozen=True)
class PixelSize:
    """Physical size of one pixel: ``x``, ``y`` (and ``z`` for a stack, else None) in ``unit``."""

    x: float
    y: float
    unit: str
    z: float | None = None


def read_pixel_size(path: str | os.PathLike[str]) -> PixelSize | None:
    """The pixel size stored in a TIFF file (see the module doc); None for other files, a TIFF
    without calibration or one that cannot be parsed."""
    if not str(path).lower().endswith((".tif", ".tiff")):
        return None
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            return _from_ome(tif.ome_metadata) or _from_tags(tif.pages[0], tif.imagej_metadata)
    except Exception:  # noqa: BLE001 - calibration is a courtesy: the read itself reports bad files
        return None


def _from_ome(xml: str | None) -> PixelSize | None:
    if not xml:
        return None
    found = {}
    for axis in "XYZ":
        m = re.search(rf'PhysicalSize{axis}="([^"]+)"', xml)
        u = re.search(rf'PhysicalSize{axis}Unit="([^"]+)"', xml)
        if m:
            found[axis] = (float(m.group(1)), u.group(1) if u else "µm")
    if "X" not in found:
        return None
    y = found.get("Y", found["X"])[0]
    z = found["Z"][0] if "Z" in found else None
    return PixelSize(found["X"][0], y, _clean_unit(found["X"][1]), z)


def _ratio(tag: Any) -> float | None:
    if tag is None:
        return None
    value = tag.value
    num, den = value if isinstance(value, tuple) else (value, 1)
    return float(num) / float(den) if num and den else None


def _size(per_unit: float, scale: float = 1.0) -> float:
    """Pixel size from a resolution (pixels per unit), to 9 digits: the tag's rational (20/13
    for 0.65) gives back 0.65, not 0.6499999999999999."""
    return float(f"{scale / per_unit:.9g}")


def _from_tags(page: Any, ij: dict | None) -> PixelSize | None:
    tags = page.tags
    xres, yres = _ratio(tags.get("XResolution")), _ratio(tags.get("YResolution"))
    if not xres:
        return None
    yres = yres or xres
    if ij and ij.get("unit"):
        z = ij.get("spacing")
        return PixelSize(_size(xres), _size(yres), _clean_unit(str(ij["unit"])), float(z) if z else None)
    unit = tags.get("ResolutionUnit")
    code = int(unit.value) if unit is not None else 2
    if code == 2:  # inch: pixels per inch -> µm per pixel
        return PixelSize(_size(xres, 25400.0), _size(yres, 25400.0), "µm") if (xres, yres) not in ((72.0, 72.0), (1.0, 1.0)) else None
    if code == 3:  # centimetre
        return PixelSize(_size(xres, 1e4), _size(yres, 1e4), "µm")
    return None


def _clean_unit(unit: str) -> str:
    u = unit.strip().replace("\\u00B5", "µ").replace("\\u00b5", "µ")
    return "µm" if u in ("um", "micron", "microns", "\u03bcm", "µm") else u


def tiff_kwargs(pixel_size: PixelSize | None, masks: np.ndarray) -> dict[str, Any]:
    """Extra ``tifffile.imwrite`` arguments that store ``pixel_size`` with ``masks``."""
    if pixel_size is None:
        return {}
    res = (1.0 / pixel_size.x, 1.0 / pixel_size.y)
    if masks.dtype in (np.uint8, np.uint16):
        meta: dict[str, Any] = {"unit": "micron" if pixel_size.unit == "µm" else pixel_size.unit,
                                "axes": "ZYX" if masks.ndim == 3 else "YX"}
        if pixel_size.z is not None and masks.ndim == 3:
            meta["spacing"] = pixel_size.z
        return {"imagej": True, "resolution": res, "metadata": meta}
    to_cm = _TO_CM.get(pixel_size.unit)
    if to_cm is None:
        return {"resolution": res, "resolutionunit": "NONE"}
    return {"resolution": (res[0] / to_cm, res[1] / to_cm), "resolutionunit": "CENTIMETER"}
