"""ONNX Runtime backend: CPU by default, CUDA / TensorRT execution providers when installed.

onnxruntime-gpu on a machine without a usable GPU lists the GPU providers, builds the session
without complaint and then runs on CPU. cp3rt checks the providers the session really came up
with and refuses instead of silently running somewhere else.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np

from cp3rt import defaults
from cp3rt._lazy import require
from cp3rt.engines.base import BaseEngine, TensorSpec
from cp3rt.manifest import EngineManifest, manifest_path_for, sha256_file
from cp3rt.errors import BackendUnavailableError, ConfigError, EngineError, IncompatibleEngineError

ProviderName = Literal["cpu", "cuda", "tensorrt"]
PROVIDERS: dict[str, str] = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}
GRAPH_OPT_LEVELS = ("disable", "basic", "extended", "all")
EXECUTION_MODES = ("sequential", "parallel")
_ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(uint8)": "uint8",
    "tensor(bool)": "bool",
}
_GPU_HINT = "install onnxruntime-gpu (pip install 'cp3rt[gpu]') on a machine with an NVIDIA GPU"


@dataclasses.dataclass(frozen=True)
class OrtOptions:
    """Session settings; defaults come from benchmarks/results/tiles_cpu.md."""

    providers: tuple[str, ...] = ("cpu",)
    threads: int | None = defaults.ORT_THREADS
    graph_opt: str = defaults.ORT_GRAPH_OPT
    execution_mode: str = defaults.ORT_EXECUTION_MODE
    mem_arena: bool = defaults.ORT_MEM_ARENA
    spin: bool = defaults.ORT_SPIN
    mem_pattern: bool = defaults.ORT_MEM_PATTERN

    def __post_init__(self) -> None:
        if isinstance(self.providers, str):
            object.__setattr__(self, "providers", (self.providers,))
        if not self.providers:
            raise ConfigError(f"providers is empty; allowed: one or more of {', '.join(PROVIDERS)}.")
        for name in self.providers:
            if name not in PROVIDERS:
                raise ConfigError(f"providers contains {name!r}; allowed: {', '.join(PROVIDERS)}.")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise ConfigError(f"threads is {self.threads!r}; allowed: None (onnxruntime decides) or an int >= 1.")
        if self.graph_opt not in GRAPH_OPT_LEVELS:
            raise ConfigError(f"graph_opt is {self.graph_opt!r}; allowed: {', '.join(GRAPH_OPT_LEVELS)}.")
        if self.execution_mode not in EXECUTION_MODES:
            raise ConfigError(
                f"execution_mode is {self.execution_mode!r}; allowed: {', '.join(EXECUTION_MODES)}."
            )

    def session_options(self, ort: Any) -> Any:
        so = ort.SessionOptions()
        so.graph_optimization_level = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[self.graph_opt]
        so.execution_mode = (
            ort.ExecutionMode.ORT_PARALLEL if self.execution_mode == "parallel" else ort.ExecutionMode.ORT_SEQUENTIAL
        )
        so.intra_op_num_threads = self.threads or 0  # 0: one per physical core
        so.enable_cpu_mem_arena = self.mem_arena
        so.enable_mem_pattern = self.mem_pattern
        # Spinning threads burn CPU between calls, which the numba dynamics then lack.
        so.add_session_config_entry("session.intra_op.allow_spinning", "1" if self.spin else "0")
        so.log_severity_level = 3  # errors only: the library does not print
        return so


class OrtEngine(BaseEngine):
    """An ONNX file run by onnxruntime, with the manifest beside it when there is one."""

    def __init__(
        self,
        onnx_path: str | os.PathLike[str],
        *,
        providers: tuple[str, ...] | str = ("cpu",),
        threads: int | None = defaults.ORT_THREADS,
        graph_opt: str = defaults.ORT_GRAPH_OPT,
        execution_mode: str = defaults.ORT_EXECUTION_MODE,
        mem_arena: bool = defaults.ORT_MEM_ARENA,
        spin: bool = defaults.ORT_SPIN,
        mem_pattern: bool = defaults.ORT_MEM_PATTERN,
    ) -> None:
        options = OrtOptions(tuple([providers] if isinstance(providers, str) else providers),
                             threads, graph_opt, execution_mode, mem_arena, spin, mem_pattern)
        path = Path(onnx_path)
        if not path.is_file():
            raise EngineError(f"ONNX file {path} does not exist.")
        ort = require("onnxruntime", "the onnxruntime backend")
        wanted = [PROVIDERS[p] for p in options.providers]
        available = ort.get_available_providers()
        missing = [p for p in wanted if p not in available]
        if missing:
            raise BackendUnavailableError(
                f"onnxruntime {ort.__version__} here offers {available}, not {missing}; {_GPU_HINT}."
            )
        manifest = read_manifest(path)
        session_providers = wanted + ([] if "CPUExecutionProvider" in wanted else ["CPUExecutionProvider"])
        try:
            session = ort.InferenceSession(
                str(path), sess_options=options.session_options(ort), providers=session_providers
            )
        except Exception as exc:  # onnxruntime raises its own pybind exception types
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise EngineError(f"onnxruntime cannot load {path}: {first}") from exc
        came_up = session.get_providers()
        lost = [p for p in wanted if p not in came_up]
        if lost:
            raise BackendUnavailableError(
                f"onnxruntime was asked for {lost} but the session for {path.name} came up with "
                f"{came_up}: the GPU or its CUDA/cuDNN/TensorRT libraries are not usable here, and "
                "cp3rt does not silently run on another device."
            )
        inputs = tuple(_spec(a) for a in session.get_inputs())
        outputs = tuple(_spec(a) for a in session.get_outputs())
        if manifest is not None:
            check_manifest_matches(path, manifest, inputs)
        super().__init__(inputs, outputs, manifest, label=path.name)
        self.path = path
        self.options = options
        self.backend = f"ort-{options.providers[0]}"
        self._session = session
        self._output_names = [s.name for s in outputs]

    @property
    def session_providers(self) -> list[str]:
        return list(self._session.get_providers())

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        contiguous = {k: np.ascontiguousarray(v) for k, v in feeds.items()}
        # onnxruntime's own errors (e.g. out of GPU memory) become an EngineError in infer().
        values = self._session.run(self._output_names, contiguous)
        return dict(zip(self._output_names, values))

    def _release(self) -> None:
        del self._session


def _spec(arg: Any) -> TensorSpec:
    dtype = _ORT_TYPES.get(arg.type)
    if dtype is None:
        raise EngineError(f"tensor {arg.name!r} has type {arg.type}, which cp3rt engines do not handle.")
    shape = tuple(d if isinstance(d, int) else None for d in arg.shape)
    return TensorSpec(arg.name, dtype, shape)


def read_manifest(path: Path) -> EngineManifest | None:
    """The manifest beside an ONNX file (None without one), refused if it describes another file."""
    sidecar = manifest_path_for(path)
    if not sidecar.is_file():
        return None
    manifest = EngineManifest.read(sidecar)
    if manifest.artefact_sha256 and manifest.artefact_sha256 != sha256_file(path):
        raise IncompatibleEngineError(
            f"{sidecar.name} describes another file than {path.name} (sha256 differs); "
            f"re-export with: cp3rt export {manifest.source_model}"
        )
    return manifest


def check_manifest_matches(path: Path, manifest: EngineManifest, inputs: tuple[TensorSpec, ...]) -> None:
    """Refuse an ONNX file whose input channels disagree with its manifest."""
    image = inputs[0]
    if len(image.shape) == 4 and image.shape[1] not in (None, manifest.nchan):
        raise IncompatibleEngineError(
            f"{path.name} takes {image.shape[1]} channels but its manifest says {manifest.nchan}; "
            f"re-export with: cp3rt export {manifest.source_model}"
        )
