"""The runtime's public face: numpy/numba pre-processing, tiles, dynamics, I/O and batch work. No torch.

``run_inputs`` does what ``cp3rt run`` does (folders, plates, huge images, clusters);
``Pipeline`` runs one image at a time; the levels below are described in docs/layout.md.
Names are imported on first use, so that ``import cp3rt.runtime.<level>`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from cp3rt.runtime.batch.files import BatchEvent, BatchSummary, ImageOutcome, OutputOptions, run_batch
    from cp3rt.runtime.batch.inputs import Cluster, InputRoutes, route_inputs, run_inputs
    from cp3rt.runtime.config import PipelineConfig, RunConfig
    from cp3rt.runtime.dynamics import compute_masks
    from cp3rt.runtime.nets import Nets
    from cp3rt.runtime.pipeline import Pipeline
    from cp3rt.runtime.result import Result

_LAZY = {
    "BatchEvent": "cp3rt.runtime.batch.files",
    "BatchSummary": "cp3rt.runtime.batch.files",
    "ImageOutcome": "cp3rt.runtime.batch.files",
    "OutputOptions": "cp3rt.runtime.batch.files",
    "run_batch": "cp3rt.runtime.batch.files",
    "Cluster": "cp3rt.runtime.batch.inputs",
    "InputRoutes": "cp3rt.runtime.batch.inputs",
    "route_inputs": "cp3rt.runtime.batch.inputs",
    "run_inputs": "cp3rt.runtime.batch.inputs",
    "PipelineConfig": "cp3rt.runtime.config",
    "RunConfig": "cp3rt.runtime.config",
    "compute_masks": "cp3rt.runtime.dynamics",
    "Nets": "cp3rt.runtime.nets",
    "Pipeline": "cp3rt.runtime.pipeline",
    "Result": "cp3rt.runtime.result",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'cp3rt.runtime' has no attribute {name!r}")
