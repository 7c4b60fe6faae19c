"""Euler integration of pixels along the flow field (§4.3) and the step-count rule (§3.7)."""

from __future__ import annotations

import math

import numpy as np

from cp3rt.defaults import NITER_AT_RESCALE_1
from cp3rt.errors import ConfigError, InputError
from cp3rt.runtime.dynamics._euler import follow


def niter_for(rescale: float, resample: bool = True, user_niter: float | None = None) -> int:
    """Number of Euler steps the reference runs (§3.7).

    A user value > 0 wins; otherwise ``(1 / rescale) * 200`` with ``resample`` (the reference
    computes it in exactly this float64 order) and 200 without. The result is truncated like the
    reference's ``np.uint32`` conversion: 266.67 -> 266.
    """
    if user_niter is not None and user_niter != 0:
        return check_niter(user_niter)
    if not resample:
        return NITER_AT_RESCALE_1
    if not (isinstance(rescale, (int, float, np.floating, np.integer)) and math.isfinite(rescale)
            and rescale > 0):
        raise ConfigError(f"rescale must be a finite number > 0; got {rescale!r}.")
    return check_niter((1.0 / float(rescale)) * NITER_AT_RESCALE_1)


def check_niter(niter: float, field: str = "niter") -> int:
    """Validate a step count and truncate it to an integer like ``np.uint32`` does."""
    if isinstance(niter, bool) or not isinstance(niter, (int, float, np.integer, np.floating)):
        raise ConfigError(f"{field} must be a number >= 0; got {niter!r}.")
    # The reference allows up to 2**32 - 1 (uint32); the kernels count steps in int32.
    if not math.isfinite(niter) or niter < 0 or niter >= 2**31:
        raise ConfigError(f"{field} must be a finite number in [0, 2**31); got {niter!r}.")
    return int(niter)


def follow_flows(
    flow: np.ndarray,
    inds: tuple[np.ndarray, np.ndarray],
    niter: float = NITER_AT_RESCALE_1,
    interp: bool = True,
) -> np.ndarray:
    """End positions (2, N) float32 of the pixels ``inds = (rows, cols)`` after ``niter`` steps.

    ``flow`` is the field actually integrated, i.e. already masked and divided by 5
    (``compute_masks`` does that). Each step adds the flow at the current position - bilinear
    (``interp=True``) or at the truncated integer position - and clamps to [0, L-1].
    Bit-identical to the reference CPU path. Non-finite flow values must be removed first.
    """
    flow = np.asarray(flow)
    if flow.ndim != 3 or flow.shape[0] != 2:
        raise InputError(f"flow must have shape (2, Y, X); got {flow.shape}.")
    flow = np.ascontiguousarray(flow, dtype=np.float32)
    ys = np.ascontiguousarray(inds[0], dtype=np.int64)
    xs = np.ascontiguousarray(inds[1], dtype=np.int64)
    if ys.shape != xs.shape or ys.ndim != 1:
        raise InputError("inds must be two 1-D index arrays of equal length (rows, cols).")
    ly, lx = flow.shape[1:]
    if ys.size and (ys.min() < 0 or ys.max() >= ly or xs.min() < 0 or xs.max() >= lx):
        raise InputError(f"inds contain positions outside the flow field of size {ly}x{lx}.")
    return follow(flow, ys, xs, check_niter(niter), bool(interp))
