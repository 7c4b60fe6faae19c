"""Flow dynamics: Cellpose network flows -> instance masks, with numba kernels (no torch).

Reproduces the reference's CPU path (``docs/reference-behaviour.md`` §4): the
heat-diffusion flows and the Euler end points are bit-identical, masks match. The functions
below are 2-D and reject volumes with a clear error; 3-D volumes go through
``compute_masks_3d`` / ``follow_flows_3d`` (masks3d.py, integrate3d.py).

Deliberate deviations (documented where they happen): the small-mask index bug of §4.7 is fixed
unless ``reference_bugs=True``; equal-count seeds are ordered in raster order (the reference's
torch sort is unstable); non-finite inputs are sanitised instead of propagating.
"""

from __future__ import annotations

from cp3rt.runtime.dynamics.api import compute_masks, compute_masks_with
from cp3rt.runtime.dynamics.assemble import get_masks
from cp3rt.runtime.dynamics.cleanup import fill_holes_and_remove_small_masks
from cp3rt.runtime.dynamics.config import DynamicsConfig
from cp3rt.runtime.dynamics.flows import masks_to_flows
from cp3rt.runtime.dynamics.integrate import follow_flows, niter_for
from cp3rt.runtime.dynamics.integrate3d import follow_flows_3d
from cp3rt.runtime.dynamics.masks3d import compute_masks_3d, fill_holes_3d
from cp3rt.runtime.dynamics.qc import flow_error, remove_bad_flow_masks
from cp3rt.runtime.dynamics.resize import resize_nearest

__all__ = [
    "DynamicsConfig",
    "compute_masks",
    "compute_masks_3d",
    "compute_masks_with",
    "fill_holes_3d",
    "fill_holes_and_remove_small_masks",
    "flow_error",
    "follow_flows",
    "follow_flows_3d",
    "get_masks",
    "masks_to_flows",
    "niter_for",
    "remove_bad_flow_masks",
    "resize_nearest",
]
