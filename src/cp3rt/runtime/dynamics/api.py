"""``compute_masks``: network flows + cell probability -> label image (§4.2-4.7, §3.8).

The whole chain of the reference's ``resize_and_compute_masks`` on the CPU path: foreground,
Euler integration of dP/5, seeds and labels, flow QC, nearest resize, hole filling and
small-mask removal. Inputs are converted to float32 (what the network produces).

Non-finite inputs never crash: a NaN/Inf cell probability is background, a NaN/Inf flow value
counts as 0 (in the integrated field and in the QC).
"""

from __future__ import annotations

import numpy as np

from cp3rt.errors import InputError
from cp3rt.runtime.dynamics._euler import follow
from cp3rt.runtime.dynamics._labels import label_dtype
from cp3rt.runtime.dynamics._prepare import prepare
from cp3rt.runtime.dynamics.assemble import get_masks
from cp3rt.runtime.dynamics.cleanup import fill_holes_int32
from cp3rt.runtime.dynamics.config import DynamicsConfig
from cp3rt.runtime.dynamics.qc import drop_bad_labels
from cp3rt.runtime.dynamics.resize import resize_nearest


def _check_inputs(dP: np.ndarray, cellprob: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    dP = np.asarray(dP)
    cellprob = np.asarray(cellprob)
    if cellprob.ndim != 2:
        raise InputError(
            f"cellprob must be a 2-D array (Y, X); got shape {cellprob.shape} "
            "(for 3-D volumes use compute_masks_3d)."
        )
    if dP.shape != (2, *cellprob.shape):
        raise InputError(
            f"dP must have shape (2, {cellprob.shape[0]}, {cellprob.shape[1]}) "
            f"(Y flow, X flow) to match cellprob; got {dP.shape}."
        )
    for name, arr in (("dP", dP), ("cellprob", cellprob)):
        if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
            raise InputError(f"{name} must hold real numbers; got dtype {arr.dtype}.")
    return (np.ascontiguousarray(dP, dtype=np.float32),
            np.ascontiguousarray(cellprob, dtype=np.float32))


def compute_masks_with(dP: np.ndarray, cellprob: np.ndarray, config: DynamicsConfig) -> np.ndarray:
    """Label image (uint16; uint32 beyond 65535 labels) from ``dP`` (2, Y, X) and ``cellprob`` (Y, X).

    The output has ``config.output_shape`` (default: the flow size). No foreground or no seeds
    gives an all-zero uint16 image.
    """
    dP, cellprob = _check_inputs(dP, cellprob)
    out_shape = config.output_shape or cellprob.shape
    if cellprob.size == 0:
        return np.zeros(out_shape, np.uint16)
    # The reference compares float32 cellprob with the threshold in float32.
    flow5, field, ys, xs = prepare(dP, cellprob, np.float32(config.cellprob_threshold))
    if ys.size == 0:
        return np.zeros(out_shape, np.uint16)
    ends = follow(field, ys, xs, config.steps, config.interp).astype(np.int32)  # truncation
    del field
    lab = get_masks(ends, (ys, xs), cellprob.shape, config.max_size_fraction)
    del ends
    if config.qc_enabled and lab.max() > 0:
        lab = drop_bad_labels(lab, flow5, float(config.flow_threshold))  # type: ignore[arg-type]
    if tuple(out_shape) != lab.shape:
        lab = resize_nearest(lab, out_shape)
    lab = fill_holes_int32(lab, int(config.min_size), config.reference_bugs)
    return lab.astype(label_dtype(int(lab.max()) if lab.size else 0), copy=False)


def compute_masks(
    dP: np.ndarray,
    cellprob: np.ndarray,
    *,
    niter: float = DynamicsConfig.niter,
    cellprob_threshold: float = DynamicsConfig.cellprob_threshold,
    flow_threshold: float | None = DynamicsConfig.flow_threshold,
    min_size: int = DynamicsConfig.min_size,
    max_size_fraction: float = DynamicsConfig.max_size_fraction,
    interp: bool = DynamicsConfig.interp,
    output_shape: tuple[int, int] | None = None,
    reference_bugs: bool = False,
) -> np.ndarray:
    """Masks from Cellpose network outputs; keyword form of ``compute_masks_with``.

    dP: float32 (2, Y, X) flows (Y then X, network units, ~5 inside cells); cellprob: float32
    (Y, X) logits. See ``DynamicsConfig`` for the settings; the defaults are the reference's.
    """
    config = DynamicsConfig(
        niter=niter,
        cellprob_threshold=cellprob_threshold,
        flow_threshold=flow_threshold,
        min_size=min_size,
        max_size_fraction=max_size_fraction,
        interp=interp,
        output_shape=output_shape,
        reference_bugs=reference_bugs,
    )
    return compute_masks_with(dP, cellprob, config)
