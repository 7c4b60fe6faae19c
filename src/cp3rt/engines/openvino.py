"""OpenVINO backend: cp3rt's ONNX exports on the CPU through Intel's OpenVINO runtime.

It reads the same ``.onnx`` + manifest as onnxruntime and runs it on the ``CPU`` device with a
latency hint and cp3rt's thread rule (one per physical core unless told). ``precision`` is the
arithmetic, not the graph: ``fp32`` pins OpenVINO's inference precision to f32 (on CPUs with
AMX or AVX512-BF16 OpenVINO would otherwise quietly compute in bf16); ``bf16`` asks for bf16
arithmetic on the fp32 graph (AMX tiles on Sapphire Rapids and later), which changes results
and is judged on masks (benchmarks/results/cpu_speed.md). OpenVINO is an optional extra
(``pip install 'cp3rt[openvino]'``), imported when this backend is asked for.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from cp3rt import defaults
from cp3rt._lazy import require
from cp3rt.engines.base import BaseEngine, TensorSpec
from cp3rt.engines.ort import check_manifest_matches, read_manifest
from cp3rt.errors import BackendUnavailableError, ConfigError, EngineError

# int8: a QDQ graph, whose quantized parts OpenVINO runs in int8 whatever the hint.
OV_PRECISIONS = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}
_OV_TYPES = {"f32": "float32", "f16": "float16", "f64": "float64", "i64": "int64", "i32": "int32",
             "u8": "uint8", "boolean": "bool"}


class OpenVinoEngine(BaseEngine):
    """An ONNX file compiled by OpenVINO for the CPU, with the manifest beside it when there is one."""

    def __init__(self, onnx_path: str | os.PathLike[str], *, precision: str = "fp32",
                 threads: int | None = defaults.ORT_THREADS) -> None:
        if precision not in OV_PRECISIONS:
            raise ConfigError(f"precision={precision!r} is not allowed for the openvino backend; "
                              f"allowed: {', '.join(OV_PRECISIONS)}.")
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise ConfigError(f"threads={threads!r} is not allowed; allowed: None (one per core) or an int >= 1.")
        path = Path(onnx_path)
        if not path.is_file():
            raise EngineError(f"ONNX file {path} does not exist.")
        ov = require("openvino", "the openvino backend")
        manifest = read_manifest(path)
        core = ov.Core()
        if "CPU" not in core.available_devices:
            raise BackendUnavailableError(f"OpenVINO {ov.__version__} sees no CPU device here ({core.available_devices}).")
        # No thread pinning: a pinned OpenVINO thread waits for its core while another program
        # runs there, an unpinned one moves. On this shared 2-core Xeon (load 3-4), bf16 tiles/s
        # pinned 11.6-12.7, unpinned 12.1-21.6 (benchmarks/results/openvino_pinning.md); quiet: equal.
        config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": OV_PRECISIONS[precision],
                                  "ENABLE_CPU_PINNING": False}
        if threads is not None:
            config["INFERENCE_NUM_THREADS"] = threads
        try:
            compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
        except Exception as exc:  # OpenVINO raises its own RuntimeError subclasses
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise EngineError(f"OpenVINO cannot load {path}: {first}") from exc
        inputs = tuple(_spec(p) for p in compiled.inputs)
        outputs = tuple(_spec(p) for p in compiled.outputs)
        if manifest is not None:
            check_manifest_matches(path, manifest, inputs)
        super().__init__(inputs, outputs, manifest, label=path.name)
        self.path = path
        self.precision = precision
        self.backend = "openvino-cpu"
        self._request = compiled.create_infer_request()
        self._compiled = compiled
        self._names = [s.name for s in outputs]

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self._request.infer({k: np.ascontiguousarray(v) for k, v in feeds.items()})
        # The request's output buffers are reused by the next call: copy them out.
        return {name: self._request.get_tensor(name).data.copy() for name in self._names}

    def _release(self) -> None:
        del self._request, self._compiled


def _spec(port: Any) -> TensorSpec:
    type_name = port.get_element_type().get_type_name()
    dtype = _OV_TYPES.get(type_name)
    if dtype is None:
        raise EngineError(f"tensor {port.get_any_name()!r} has type {type_name}, which cp3rt engines do not handle.")
    shape = tuple(d.get_length() if d.is_static else None for d in port.get_partial_shape())
    return TensorSpec(port.get_any_name(), dtype, shape)
