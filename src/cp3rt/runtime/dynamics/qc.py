"""Flow-consistency QC (§4.5): drop masks whose own flows disagree with the network's."""

from __future__ import annotations

import numpy as np

from cp3rt.defaults import FLOW_SCALE, FLOW_THRESHOLD
from cp3rt.errors import ConfigError, InputError
from cp3rt.runtime.dynamics._heat import flow_errors
from cp3rt.runtime.dynamics._labels import apply_map, as_label_image, label_boxes


def flow_over_5(dP: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    arr = np.asarray(dP)
    if arr.shape != (2, *shape):
        raise InputError(f"dP must have shape (2, {shape[0]}, {shape[1]}) like the masks; got {arr.shape}.")
    """Network flows / 5 in float32 (the reference's exact division), non-finite -> 0."""
    flow5 = arr.astype(np.float32, copy=False) / np.float32(FLOW_SCALE)
    return np.ascontiguousarray(np.where(np.isfinite(flow5), flow5, np.float32(0.0)))


def flow_error(masks: np.ndarray, dP: np.ndarray) -> np.ndarray:
    """Per-label flow error, float64 array of length ``masks.max()`` (entry l-1 is label l).

    error_l = mean over label l of (mu_y - dP_y/5)^2 + mean of (mu_x - dP_x/5)^2, where mu are
    the unit flows recomputed from the masks (``masks_to_flows``) and dP the raw network flows
    (float32, not masked). Labels absent from ``masks`` get NaN, as in the reference.
    Non-finite dP values count as 0. Raises InputError when the largest id exceeds the pixel
    count (the table would be mostly empty and could be huge).
    """
    lab, values = as_label_image(masks)
    if values is not None:
        raise InputError(
            f"masks has label ids up to {int(values[-1])}, more than its {lab.size} pixels; "
            "flow_error returns one entry per id, so relabel to consecutive ids first "
            "(remove_bad_flow_masks accepts any ids)."
        )
    flow5 = flow_over_5(dP, lab.shape)
    if lab.size == 0 or lab.max() == 0:
        return np.zeros(0, np.float64)
    return flow_errors(lab, label_boxes(lab), flow5)


def remove_bad_flow_masks(
    masks: np.ndarray, dP: np.ndarray, threshold: float = FLOW_THRESHOLD
) -> np.ndarray:
    """Copy of ``masks`` with every label whose flow error exceeds ``threshold`` set to 0.

    Labels are not renumbered (gaps remain, as in the reference). ``threshold <= 0`` or None
    returns an unchanged copy (QC off).
    """
    arr = np.asarray(masks)
    if threshold is None or threshold <= 0:
        return arr.copy()
    if not np.isfinite(threshold):
        raise ConfigError(f"flow_threshold must be a finite number; got {threshold!r}.")
    lab, values = as_label_image(arr)
    out = drop_bad_labels(lab, flow_over_5(dP, lab.shape), float(threshold))
    if values is not None:
        out = values[out]
    return out.astype(arr.dtype, copy=False)


def drop_bad_labels(lab: np.ndarray, flow5: np.ndarray, threshold: float) -> np.ndarray:
    """int32 ``lab`` without the labels whose flow error against ``flow5`` (= dP / 5, finite,
    float32) is above ``threshold``. The building block of ``compute_masks``."""
    nmax = int(lab.max()) if lab.size else 0
    if nmax == 0:
        return lab.copy()
    err = flow_errors(lab, label_boxes(lab), flow5)
    remap = np.arange(nmax + 1, dtype=np.int32)
    remap[1:][err > threshold] = 0  # NaN (absent label) compares False: kept, like the reference
    return apply_map(lab, remap)
