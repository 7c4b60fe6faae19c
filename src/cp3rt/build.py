"""``cp3rt build``'s library side: model spec (zoo name, weight file, .onnx) -> TensorRT plan.

TensorRT and the GPU are checked before anything is exported, so a machine without them gets
the one-sentence refusal at once. The ONNX export comes from cp3rt's artefact cache (exported on
first use, needs torch); the plan goes to ``out_dir`` or to the plan cache.

It sits beside :mod:`cp3rt.artefacts`, above the engines: it turns a model spec into an artefact
(with the artefact cache) and then builds it with the TensorRT backend, like :mod:`cp3rt.check`
is ``cp3rt check``'s library side.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from cp3rt.artefacts import resolve_model
from cp3rt.engines.tensorrt._trt import TrtEnvironment, current_environment
from cp3rt.engines.tensorrt.builder import PLAN_SUFFIX, BuildConfig, Progress, build_plan
from cp3rt.engines.tensorrt.plan_cache import PlanCache
from cp3rt.manifest import EngineManifest


@dataclasses.dataclass(frozen=True)
class BuiltPlan:
    spec: str
    plan_path: Path
    manifest: EngineManifest
    built: bool                 # False: a valid plan was already in the cache
    seconds: float | None       # build time when built here
    plan_bytes: int
    environment: TrtEnvironment


def build_for_model(
    spec: str | os.PathLike[str],
    config: BuildConfig = BuildConfig(),
    *,
    out_dir: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
) -> BuiltPlan:
    """Build (or find in the cache) the plan of ``spec`` at ``config.precision``."""
    trt_env = current_environment(config.device)
    onnx = resolve_model(spec, precision=config.precision, backend="ort").path
    if out_dir is not None:
        source = Path(os.fspath(spec)).name.removesuffix(".onnx").removesuffix(f".{config.precision}")
        target = Path(out_dir) / f"{source}.{config.precision}{PLAN_SUFFIX}"
        result = build_plan(onnx, target, config, progress=progress, environment=trt_env)
        return BuiltPlan(os.fspath(spec), result.plan_path, result.manifest, True, result.seconds,
                         result.plan_bytes, trt_env[1])
    entry = PlanCache().get(onnx, config, progress=progress, environment=trt_env)
    return BuiltPlan(os.fspath(spec), entry.plan_path, entry.manifest, entry.built, entry.seconds,
                     entry.plan_path.stat().st_size, trt_env[1])
