"""The outputs of one image file that screening users load into other tools (``cp3rt run
--table / --rois / --outlines / --exclude-on-edges``) and the captioned overlay (``--overlay``).

Each writer takes the input as read (``raw``) and the pipeline's ``Result``; ``write_outputs``
(``batch.image_outputs``) calls :func:`write_extra` for the kinds named here.

* table: ``<stem>_cp_objects.csv`` (or ``.parquet``), one row per object with the mean and
  summed intensity of every channel of the INPUT image (raw values) and, when the input TIFF
  is calibrated, the physical area. After an upsampling restoration the masks no longer have
  the input's size: the table then has no intensity columns (geometry only).
* rois / outlines: ``<stem>_rois.zip`` (Fiji ROI Manager) and ``<stem>_cp_outlines.txt``.
* overlay: outlines on the image with the object count, diameter and models written above;
  with a restoration, the raw image beside the restored one; a volume gives a montage of up to
  six Z planes.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cp3rt.errors import ConfigError
from cp3rt.runtime.config import RunConfig

if TYPE_CHECKING:  # pragma: no cover
    from cp3rt.runtime.result import Result

EXTRA_KINDS = ("table", "rois", "outlines", "overlay")
TABLE_FORMATS = ("csv", "parquet")


def table_format(value: str | None) -> str | None:
    """A ``--table`` value as OutputOptions.table wants it (lower case), None for none;
    ConfigError naming the allowed formats otherwise."""
    if value is not None and value.lower() not in TABLE_FORMATS:
        raise ConfigError(f"--table {value!r} is not allowed; allowed: {', '.join(TABLE_FORMATS)}.")
    return value.lower() if value else None


def without_edge_objects(result: Result) -> Result:
    """``result`` with the objects touching the image border removed and the rest relabelled
    1..n (``--exclude-on-edges``, Cellpose's ``exclude_on_edges``)."""
    from cp3rt.runtime.io.edges import exclude_on_edges

    if getattr(result, "axes", "").startswith("T"):  # a T-stack (batch.frames): each frame's borders
        return dataclasses.replace(result, masks=np.stack([exclude_on_edges(m) for m in result.masks]))
    return dataclasses.replace(result, masks=exclude_on_edges(result.masks))


def _input_channels(raw: np.ndarray, masks: np.ndarray, run: RunConfig) -> np.ndarray | None:
    """Every channel of the input, (C, Y, X) or (Z, C, Y, X) like ``masks``; None when the
    masks are not at the input's size (upsampling restoration)."""
    from cp3rt.runtime.prep.axes import to_cyx

    x = to_cyx(raw, channel_axis=run.channel_axis, z_axis=run.z_axis, nchan=None, do_3D=masks.ndim == 3)
    if masks.ndim == 2 and x.ndim == 3 and x.shape[1:] == masks.shape:
        return x
    if masks.ndim == 3 and x.ndim == 4 and x.shape[0] == masks.shape[0] and x.shape[2:] == masks.shape[1:]:
        return x
    return None


def write_table(final: Path, image: Path, raw: np.ndarray, result: Result, run: RunConfig) -> None:
    """The per-object table of ``result.masks`` (format from ``final``'s suffix)."""
    from cp3rt.runtime.io.objects_table import object_table, write_object_table
    from cp3rt.runtime.io.pixel_size import read_pixel_size

    fmt = final.suffix.lstrip(".").lower()
    if fmt not in TABLE_FORMATS:
        raise ConfigError(f"table format {fmt!r} is not allowed; allowed: {', '.join(TABLE_FORMATS)}.")
    size = read_pixel_size(image)
    spacing = None
    if size is not None:
        spacing = (size.y, size.x) if result.masks.ndim == 2 else ((size.z or 1.0), size.y, size.x)
    table = object_table(result.masks, _input_channels(raw, result.masks, run), pixel_size=spacing,
                         unit=size.unit if size is not None else None)
    write_object_table(final, table)


def _model_name(model: str | None) -> str | None:
    return Path(str(model)).name if model else None


def write_overlay(final: Path, image: Path, raw: np.ndarray, result: Result, run: RunConfig, *,
                  model: str | None, restore_type: str | None) -> None:
    """Outlines on the segmented image under a caption (count, diameter, models); with a
    restoration of the same size, the raw channel on the left and the restored on the right."""
    from cp3rt.runtime.io.pictures import result_caption, write_result_picture, write_volume_picture
    from cp3rt.runtime.prep.axes import to_cyx

    caption = result_caption(result.n_objects, diameter=result.diameter, model=_model_name(model),
                             restore=_model_name(restore_type), name=image.name)
    volume = result.masks.ndim == 3
    plain = to_cyx(raw, channels=run.channels, channel_axis=run.channel_axis, z_axis=run.z_axis, nchan=None,
                   do_3D=volume)
    plain = plain[:, 0] if volume else plain[0]
    if volume:  # a montage of Z planes; the restored stack when it has the masks' planes
        restored = result.restored[:, 0] if result.restored is not None else None
        shown = restored if restored is not None and restored.shape == result.masks.shape else plain
        write_volume_picture(final, shown, result.masks, caption)
        return
    shown, before = plain, None
    if result.restored is not None:
        shown = result.restored[0]
        if plain.shape == shown.shape:
            before = plain
    write_result_picture(final, shown, result.masks, caption, raw=before)


def write_extra(kind: str, final: Path, image: Path, raw: np.ndarray, result: Result, *, run: RunConfig,
                model: str | None = None, restore_type: str | None = None) -> None:
    """Write one output of ``EXTRA_KINDS`` for one image."""
    from cp3rt.runtime.io.rois import write_outlines_txt, write_roi_zip

    if kind == "table":
        write_table(final, image, raw, result, run)
    elif kind == "rois":
        write_roi_zip(final, result.masks)
    elif kind == "outlines":
        write_outlines_txt(final, result.masks)
    elif kind == "overlay":
        write_overlay(final, image, raw, result, run, model=model, restore_type=restore_type)
    else:
        raise ConfigError(f"output kind {kind!r} is not one of {', '.join(EXTRA_KINDS)}.")
