"""Built plans, found or built on demand, in a cache keyed by everything that makes a plan valid.

Layout: ``<cache>/plans/<key>/<model>.plan`` + ``<model>.plan.json``, where ``key`` is
:meth:`EngineManifest.cache_key` of the plan's manifest: weights and ONNX sha256, precision,
shape profile, TensorRT version, GPU compute capability and GPU model name. A plan is only ever used after
:func:`check_plan` (version, GPU and sha256 of the file against its manifest). In the cache a bad
plan is rebuilt; a plan given by path is refused with the exact rebuild command.

Concurrency: builds of one key run under a file lock, into a temporary folder that is renamed
into place when complete, so two processes asking for the same plan build it once and a killed
build leaves nothing that looks finished.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from cp3rt.manifest import EngineManifest, manifest_path_for, sha256_file
from cp3rt.engines.tensorrt._trt import TrtEnvironment
from cp3rt.engines.tensorrt.builder import (
    PLAN_SUFFIX,
    BuildConfig,
    Progress,
    build_plan,
    read_onnx_manifest,
    rebuild_command,
    use_environment,
)
from cp3rt.errors import IncompatibleEngineError

_SUBDIR = "plans"


@dataclasses.dataclass(frozen=True)
class PlanEntry:
    """A plan ready to open; ``built`` if this call built it, ``reason`` why it was (re)built."""

    plan_path: Path
    manifest: EngineManifest
    built: bool = False
    reason: str = ""
    seconds: float | None = None  # build time, when this call built it


def check_plan(plan_path: Path, manifest: EngineManifest, env: TrtEnvironment, command: str) -> None:
    """Refuse a plan built for another TensorRT/GPU, or whose bytes are not what was built."""
    manifest.check_compatible(
        rebuild_command=command,
        tensorrt_version=env.tensorrt_version,
        compute_capability=env.compute_capability,
    )
    if manifest.tensorrt_version is None or manifest.compute_capability is None:
        raise IncompatibleEngineError(
            f"{plan_path.name}: its manifest does not say which TensorRT/GPU it was built for; "
            f"rebuild with: {command}"
        )
    if not plan_path.is_file():
        raise IncompatibleEngineError(f"{plan_path}: plan file not found; rebuild with: {command}")
    if sha256_file(plan_path) != manifest.artefact_sha256:
        raise IncompatibleEngineError(
            f"{plan_path.name} is corrupted or was changed after it was built (its sha256 differs "
            f"from {manifest_path_for(plan_path).name}); rebuild with: {command}"
        )


def read_plan_manifest(plan_path: Path, command_hint: str = "cp3rt build MODEL") -> EngineManifest:
    sidecar = manifest_path_for(plan_path)
    if not sidecar.is_file():
        raise IncompatibleEngineError(
            f"{plan_path}: its manifest {sidecar.name} is missing, so the plan cannot be checked "
            f"against this GPU; rebuild with: {command_hint} --out {plan_path.parent}"
        )
    return EngineManifest.read(sidecar)


class PlanCache:
    """Find or build the plan for an exported ONNX file on this machine's GPU."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        if root is None:
            from cp3rt.cache import cache_dir

            root = cache_dir() / _SUBDIR
        self.root = Path(root)

    def expected_manifest(
        self, onnx_manifest: EngineManifest, onnx_sha: str, config: BuildConfig, env: TrtEnvironment
    ) -> EngineManifest:
        """The manifest a plan built here from this ONNX would have (minus its own sha256)."""
        return dataclasses.replace(
            onnx_manifest, shapes=config.shapes, artefact_sha256="", onnx_sha256=onnx_sha,
            tensorrt_version=env.tensorrt_version, gpu_name=env.gpu_name,
            compute_capability=env.compute_capability,
        )

    def folder_for(self, manifest: EngineManifest) -> Path:
        return self.root / manifest.cache_key()

    def get(
        self,
        onnx_path: str | os.PathLike[str],
        config: BuildConfig = BuildConfig(),
        *,
        build: bool = True,
        progress: Progress | None = None,
        environment: tuple[Any, TrtEnvironment] | None = None,
    ) -> PlanEntry:
        """The valid cached plan for ``onnx_path``; built (or rebuilt) when needed and allowed."""
        onnx_path = Path(onnx_path)
        trt_env = use_environment(environment, config.device)
        env = trt_env[1]
        onnx_manifest, onnx_sha = read_onnx_manifest(onnx_path)
        expected = self.expected_manifest(onnx_manifest, onnx_sha, config, env)
        folder = self.folder_for(expected)
        command = rebuild_command(dataclasses.replace(expected, onnx_path=os.fspath(onnx_path.resolve())), None)
        found, problem = self._valid_in(folder, env, command)
        if found is not None:
            return found
        if not build:
            raise IncompatibleEngineError(
                f"no usable plan for {onnx_path.name} on this GPU ({problem}); build it with: {command}"
            )
        import filelock

        self.root.mkdir(parents=True, exist_ok=True)
        with filelock.FileLock(str(folder) + ".lock"):
            found, problem = self._valid_in(folder, env, command)  # built while we waited?
            if found is not None:
                return found
            if folder.exists():  # stale or corrupted: ours to replace, we hold the lock
                shutil.rmtree(folder)
            tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".part", dir=self.root))
            try:
                name = Path(onnx_manifest.source_model).name or "model"
                result = build_plan(
                    onnx_path, tmp / f"{name}.{config.precision}{PLAN_SUFFIX}", config,
                    progress=progress, environment=trt_env,
                )
                os.replace(tmp, folder)
            except BaseException:
                with contextlib.suppress(OSError):
                    shutil.rmtree(tmp)
                raise
        plan = folder / result.plan_path.name
        return PlanEntry(plan, result.manifest, built=True, reason=problem, seconds=result.seconds)

    def _valid_in(self, folder: Path, env: TrtEnvironment, command: str) -> tuple[PlanEntry | None, str]:
        """(entry, "") for a valid finished plan in ``folder``, else (None, why not)."""
        if not folder.is_dir():
            return None, "not built yet"
        plans = sorted(p for p in folder.glob(f"*{PLAN_SUFFIX}") if not p.name.startswith("."))
        if len(plans) != 1 or not manifest_path_for(plans[0]).is_file():
            return None, "incomplete cache entry"
        try:
            manifest = EngineManifest.read(manifest_path_for(plans[0]))
            check_plan(plans[0], manifest, env, command)
        except IncompatibleEngineError as exc:
            return None, str(exc)
        return PlanEntry(plans[0], manifest), ""
