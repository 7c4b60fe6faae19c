"""The outputs of one image file (masks, ``_seg.npy``, flows, restored image, overlay), each
written atomically; masks last, so that their presence means the image is complete."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cp3rt.errors import ConfigError
from cp3rt.runtime.config import RunConfig

if TYPE_CHECKING:  # pragma: no cover
    from cp3rt.runtime.result import Result


def write_outputs(
    image: Path,
    raw: np.ndarray,
    result: Result,
    finals: dict[str, Path],
    *,
    run: RunConfig,
    restore_type: str | None = None,
    model: str | None = None,
) -> tuple[Path, ...]:
    """Write the outputs named in ``finals`` (each atomically, by cp3rt.runtime.io); masks
    last, so that their presence means the image is complete even if the process dies."""
    from cp3rt.runtime import io as cio
    from cp3rt.runtime.batch.object_outputs import EXTRA_KINDS, write_extra
    from cp3rt.runtime.io.pixel_size import read_pixel_size

    others = sorted(k for k in finals if k != "masks")
    if getattr(result, "axes", "").startswith("T") and others:
        raise ConfigError(
            f"{image} has T frames, written as one T-stack of masks; the other outputs "
            f"({', '.join(others)}) are per 2-D image: run without them, or one frame per file."
        )
    order = [k for k in finals if k != "masks"] + ["masks"]
    flat_only = sorted(k for k in ("seg", "rois", "outlines") if k in finals)
    if result.masks.ndim == 3 and flat_only:
        raise ConfigError(
            f"{image}: --{' and --'.join('save-seg' if k == 'seg' else k for k in flat_only)} "
            "only work for 2-D images, not for volumes (--do-3d / --stitch-threshold)."
        )
    written = []
    for kind in order:
        final = finals[kind]
        if kind == "masks":
            cio.write_masks_tif(final, result.masks, read_pixel_size(image), axes=getattr(result, "axes", None))
        elif kind == "seg":
            cio.write_seg_npy(final, result, image_path=image, channels=run.channels,
                              restore_type=restore_type)
        elif kind == "flows":  # Cellpose's _flows.tif: the colour flow picture (of dY, dX)
            cio.write_flow_picture_tif(final, result.dP)
        elif kind == "dP":  # Cellpose's _dP.tif: the raw flows, (2, Y, X) or (3, Z, Y, X)
            cio.write_image_tif(final, result.dP)
        elif kind == "cellprob":
            cio.write_image_tif(final, result.cellprob)
        elif kind == "restored":
            if result.restored is None:
                continue
            cio.write_image_tif(final, result.restored)
        elif kind in EXTRA_KINDS:  # tables, ROI sets, outlines, the captioned overlay
            write_extra(kind, final, image, raw, result, run=run, model=model, restore_type=restore_type)
        written.append(final)
    return tuple(written)

