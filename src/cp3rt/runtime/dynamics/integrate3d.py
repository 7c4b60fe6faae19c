"""3-D Euler integration of voxels along the flow field (§4.3 GPU path, §4.9).

The reference integrates every 3-D volume with torch ``grid_sample`` (``align_corners=False``)
on coordinates normalised for ``align_corners=True``, so the field is read half a voxel off and
slightly stretched, and zero-padded at the border. ``sampling="grid"`` (this kernel's default;
``compute_masks_3d`` and ``RunConfig`` choose it only with ``reference_bugs``) reproduces that bit
for bit in float32; ``sampling="exact"`` samples the field at the voxel position (trilinear,
clamped corners) - the integration the reference intends (docs/deviations.md row 11). The difference in masks
is measured in ``benchmarks/bench_3d.py`` and ``tests/runtime/dynamics/test_parity3d.py``.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from cp3rt.errors import ConfigError, InputError
from cp3rt.runtime.dynamics._euler3d import EXACT, GRID, NEAREST, follow3d
from cp3rt.runtime.dynamics.integrate import check_niter

Sampling = Literal["grid", "exact"]
SAMPLINGS: tuple[str, ...] = ("grid", "exact")


def check_sampling(sampling: str) -> str:
    if sampling not in SAMPLINGS:
        raise ConfigError(f"sampling={sampling!r} is not allowed; allowed: {', '.join(SAMPLINGS)}.")
    return sampling


def _check(flow: np.ndarray, inds) -> tuple[np.ndarray, np.ndarray]:
    flow = np.asarray(flow)
    if flow.ndim != 4 or flow.shape[0] != 3:
        raise InputError(f"flow must have shape (3, Z, Y, X); got {flow.shape}.")
    idx = np.asarray(inds)
    if idx.ndim != 2 or idx.shape[0] != 3:
        raise InputError("inds must be three 1-D index arrays of equal length (z, y, x).")
    idx = np.ascontiguousarray(idx, dtype=np.int64)
    shape = np.asarray(flow.shape[1:])
    if idx.shape[1] and ((idx.min(axis=1) < 0).any() or (idx.max(axis=1) >= shape).any()):
        raise InputError(f"inds contain positions outside the flow field of shape {tuple(shape)}.")
    return np.ascontiguousarray(flow, dtype=np.float32), idx


def follow_flows_3d(
    flow: np.ndarray,
    inds,
    niter: float = 200,
    interp: bool = True,
    sampling: Sampling = "grid",
) -> np.ndarray:
    """End positions (3, N) float32 (z, y, x) of the voxels ``inds`` after ``niter`` steps.

    ``flow`` (3, Z, Y, X) is the field actually integrated (already masked and divided by 5).
    ``interp=False`` reads the flow at the truncated position (the reference's ``steps3D``).
    Non-finite flow values must be removed first.
    """
    field, idx = _check(flow, inds)
    steps = check_niter(niter)
    check_sampling(sampling)
    shape = field.shape[1:]
    if not interp or sampling == "exact":
        start = idx.astype(np.float32)
        lo = np.zeros(3, np.float32)
        hi = np.asarray([s - 1 for s in shape], np.float32)
        return follow3d(field, start, steps, EXACT if interp else NEAREST, lo, hi)
    # grid_sample path: normalise positions and flows exactly as the reference does, in float32.
    span = np.asarray([s - 1 for s in shape], np.float32)
    scaled = np.empty_like(field)
    start = np.empty(idx.shape, np.float32)
    for k in range(3):
        if shape[k] > 1:
            scaled[k] = field[k] * np.float32(2.0 / float(shape[k] - 1))
            start[k] = idx[k].astype(np.float32) / span[k] * np.float32(2) - np.float32(1)
        else:  # one plane: the reference divides by zero; cp3rt keeps the axis still
            scaled[k] = 0
            start[k] = -1
    ones = np.ones(3, np.float32)
    g = follow3d(scaled, start, steps, GRID, -ones, ones)
    g += np.float32(1)
    g *= np.float32(0.5)
    g *= span[:, None]
    return g
