"""Native TensorRT backend: build plans from cp3rt's ONNX exports, cache them, run them.

Nothing heavy is imported here; ``tensorrt`` and the CUDA bindings load when a plan is built or
opened. TensorRT >= 10 only (10 and 11 share one code path: strongly typed networks).
A model spec (zoo name, weight file) -> plan is :func:`cp3rt.build.build_for_model`, a level up:
it needs the artefact cache, which sits above the engines.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from cp3rt.engines.tensorrt.builder import BuildConfig, BuildResult, build_plan, parse_batch
    from cp3rt.engines.tensorrt.engine import TrtEngine
    from cp3rt.engines.tensorrt.plan_cache import PlanCache, PlanEntry, check_plan

__all__ = [
    "BuildConfig", "BuildResult", "PlanCache", "PlanEntry", "TrtEngine",
    "build_plan", "check_plan", "parse_batch",
]

_LAZY = {
    "BuildConfig": "builder", "BuildResult": "builder", "build_plan": "builder",
    "parse_batch": "builder", "TrtEngine": "engine", "PlanCache": "plan_cache",
    "PlanEntry": "plan_cache", "check_plan": "plan_cache",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"cp3rt.engines.tensorrt.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'cp3rt.engines.tensorrt' has no attribute {name!r}")
