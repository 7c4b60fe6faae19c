"""Cellpose-GUI-compatible ``_seg.npy`` files (spec §8.2): a pickled dict of masks and flows."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cp3rt.errors import ConfigError, InputError
from cp3rt.runtime.io.render import flows_to_rgb, masks_to_outlines, normalize99
from cp3rt.runtime.io.write import output_path

SEG_SUFFIX = "_seg.npy"
_FLOW_Z_SCALE = 10.0  # 3-D: dZ picture = dZ / 10 * 127 + 127 (GUI convention)


def seg_npy_path(image_path: str | os.PathLike[str]) -> Path:
    """``folder/name.tif`` -> ``folder/name_seg.npy`` (next to the image, as Cellpose)."""
    p = Path(image_path)
    return p.with_name(p.stem + SEG_SUFFIX)


def _nearest(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Nearest-neighbour resize of the first two axes with OpenCV's floor(i * in / out) rule."""
    if a.shape[:2] == tuple(shape):
        return a
    rows = np.minimum((np.arange(shape[0]) * (a.shape[0] / shape[0])).astype(np.int64),
                      a.shape[0] - 1)
    cols = np.minimum((np.arange(shape[1]) * (a.shape[1] / shape[1])).astype(np.int64),
                      a.shape[1] - 1)
    return a[rows][:, cols]


def _uint8_prob(cellprob: np.ndarray) -> np.ndarray:
    return (np.clip(normalize99(cellprob), 0, 1) * 255).astype(np.uint8)


def seg_dict(
    masks: Any,
    flows_dp: Any,
    cellprob: Any,
    *,
    filename: str | os.PathLike[str],
    diameter: float,
    channels: Sequence[int] = (0, 0),
    img_restore: Any = None,
    restore_type: str | None = None,
    ratio: float = 1.0,
) -> dict[str, Any]:
    """The dict stored in a ``_seg.npy``: GUI flow layout, outlines, manual flags, metadata;
    ``filename`` (the image) is stored as an absolute path, which the GUI opens first.

    2-D: ``masks (Ly, Lx)``, ``flows_dp (2, Ly', Lx')`` (dY, dX), ``cellprob (Ly', Lx')``;
    3-D: ``masks (Lz, Ly, Lx)``, ``flows_dp (3, Lz, Ly, Lx)``, ``cellprob (Lz, Ly, Lx)``.
    """
    m = np.asarray(masks)
    dp = np.asarray(flows_dp)
    prob = np.asarray(cellprob)
    if m.dtype.kind not in "biu" or m.ndim not in (2, 3):
        raise ConfigError(f"masks has shape {m.shape}, dtype {m.dtype}; need 2-D/3-D integers.")
    if dp.shape[0] != m.ndim or dp.shape[1:] != prob.shape or prob.ndim != m.ndim:
        raise ConfigError(
            f"flows_dp has shape {dp.shape} and cellprob {prob.shape}; for masks of shape "
            f"{m.shape} they must be ({m.ndim}, *S) and S."
        )
    rgb = flows_to_rgb(dp)
    if m.ndim == 2:
        flows: list[Any] = [
            _nearest(rgb, m.shape)[np.newaxis],
            _nearest(_uint8_prob(prob), m.shape)[np.newaxis],
            np.zeros(rgb.shape, dtype=np.uint8)[np.newaxis],  # 2-D has no dZ picture
        ]
    else:
        flows = [rgb, _uint8_prob(prob),
                 (dp[0] / _FLOW_Z_SCALE * 127 + 127).astype(np.uint8)]
    flows.append([])  # slot of the reference's optional extra output
    flows.append(np.concatenate((dp, prob[np.newaxis]), axis=0))
    outlines = m * masks_to_outlines(m)
    # The reference switches to uint32 at 65535 (not 65536) labels; same here for identical files.
    wide = outlines.max(initial=0) >= 2**16 - 1
    dtype = np.uint32 if wide else np.uint16
    data: dict[str, Any] = {
        "outlines": outlines.astype(dtype),
        "masks": m.astype(dtype),
        "chan_choose": [int(c) for c in channels],
        "ismanual": np.zeros(int(m.max(initial=0)), dtype=bool),
        # Absolute: the GUI opens the image at `filename`, else next to the _seg.npy; a path
        # as typed (relative to where cp3rt ran) is found by neither once --out is elsewhere.
        "filename": os.path.abspath(os.fspath(filename)),
        "flows": flows,
        "diameter": float(diameter),
    }
    if restore_type is not None and img_restore is not None:
        data["restore"] = restore_type
        data["ratio"] = float(ratio)
        data["img_restore"] = np.asarray(img_restore)
    return data


def write_seg_npy(
    path: str | os.PathLike[str],
    result: Any,
    *,
    image_path: str | os.PathLike[str],
    channels: Sequence[int] | None = None,
    restore_type: str | None = None,
) -> Path:
    """Write a pipeline result as a pickled ``_seg.npy`` that the Cellpose GUI can open.

    ``result`` needs ``masks``, ``dP``, ``cellprob``, ``diameter`` and ``restored`` ((C, Y, X)
    or None) attributes, as :class:`cp3rt.runtime.result.Result`. A restored image is stored
    channels-last as ``img_restore`` with ``restore`` = ``restore_type`` and ``ratio`` 1.
    """
    restored = getattr(result, "restored", None)
    data = seg_dict(
        result.masks, result.dP, result.cellprob,
        filename=image_path, diameter=float(result.diameter),
        channels=(0, 0) if channels is None else channels,
    )
    if restored is not None:
        # Written whenever there is a restored image (the reference needs a model name too);
        # the GUI reads `restore` next to `img_restore`, so both keys are always present.
        data["restore"] = restore_type
        data["ratio"] = 1.0
        data["img_restore"] = np.moveaxis(np.asarray(restored), 0, -1)
    return write_seg_dict(path, data)


def write_seg_dict(path: str | os.PathLike[str], data: dict[str, Any]) -> Path:
    """Write a :func:`seg_dict` as a pickled ``_seg.npy``."""
    if not isinstance(data, dict) or "masks" not in data or "outlines" not in data:
        raise ConfigError("data must be a dict from seg_dict (with 'masks' and 'outlines').")
    # The arrays have different shapes, so the dict is stored as a 0-d object array (pickled).
    with output_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, np.array(data, dtype=object), allow_pickle=True)
    return Path(path)


def read_seg_npy(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a ``_seg.npy`` dict. It is a pickle: only open files you trust."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p} does not exist.")
    try:
        data = np.load(p, allow_pickle=True).item()
    except Exception as exc:  # np.load/pickle raise many types for a damaged file
        raise InputError(f"{p} cannot be read as a Cellpose _seg.npy: {exc}.") from exc
    if not isinstance(data, dict) or "masks" not in data:
        raise InputError(f"{p} is not a Cellpose _seg.npy (no 'masks' entry).")
    return data
