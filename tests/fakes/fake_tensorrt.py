"""A fake ``tensorrt`` module (10.x or 11.x flavour) that checks cp3rt's call protocol and computes.

Faithful to TensorRT where cp3rt can observe it (Python API docs of 10.x and 11.x):
* failures are reported the TensorRT way: ``OnnxParser.parse`` returns False with the messages in
  ``get_error(i).desc()``; ``build_serialized_network`` and ``deserialize_cuda_engine`` return
  None and log ERROR messages; ``set_input_shape`` (outside the active profile's bounds) and
  ``execute_async_v3`` (a shape or an address missing) return False and log the reason;
* 11.x: networks are always strongly typed, ``NetworkDefinitionCreationFlag.STRONGLY_TYPED`` is
  kept but ignored, ``EXPLICIT_BATCH`` and the precision flags (``BuilderFlag.FP16`` ...) are gone;
  10.x: a precision builder flag on a strongly typed network fails the build;
* a plan only loads on the TensorRT version and GPU compute capability it was built for;
* builders, runtimes, engines and contexts live on the CUDA device current when they were made
  (``cudaSetDevice``), as in TensorRT: a plan is built for the current device, and an engine
  refuses memory or streams of another device;
* a wheel is built for one CUDA major (``tensorrt-cu12`` / ``tensorrt-cu13``, ``cuda_major``):
  ``Builder``/``Runtime`` raise ``TypeError`` when the CUDA bindings are of another major, or the
  driver is too old or absent (what the real constructors do: pybind11 reports the null object
  of a failed CUDA initialisation as a TypeError). :func:`install` also puts a
  ``tensorrt_cu<major>`` distribution's metadata on ``sys.path``, as the wheel does;
* names and parameter names are the real ones: tests/engines/tensorrt/test_trt_api_surface.py
  checks every class, member and signature here against the published stubs (tensorrt-stubs);
* every object logs to the logger of the builder/runtime it came from (per-runtime loggers).

It really computes: the "plan" carries the ONNX graph, and ``execute_async_v3`` enqueues, on the
fake CUDA stream, a job that reads the input from (fake) device memory, runs the graph with
onnxruntime on the CPU and writes the outputs back to device memory.

Beyond TensorRT, it enforces cp3rt's own protocol with :class:`ProtocolViolation`: input shapes
before tensor addresses, device pointers that hold the whole tensor, an fp16 graph only in a
strongly typed network (precision from the graph), context memory of the right size and device,
never used by two contexts at once.

What the fakes cannot know (the only places where they guess; everything else was checked
against the real bindings' stubs or the real cuda-bindings, see tests/engines/tensorrt):
* the exact wording of TensorRT's log messages and of the constructors' TypeError (modelled on
  real ones; cp3rt's messages only quote them);
* how much context memory an engine needs (fake_trt_runtime.ACTIVATION_BYTES_PER_PIXEL per input
  pixel of a profile's largest batch) and what TensorRT does when given too little (the fake
  raises ProtocolViolation);
* whether ``create_timing_cache`` returns None or raises for a corrupt blob (None + an ERROR);
* enum values and removals in 11.x (no 11.x stubs are published: 10.13's values are assumed);
* a cudaMemcpy between two devices (accepted, as with peer access); device memory is poisoned
  with NaN bytes only in its first fake_cuda.POISON_BYTES.
"""

from __future__ import annotations

import enum
import hashlib
import importlib.machinery
import json
import sys
import time
import types
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import fake_trt_runtime
import onnx
from fake_cuda import FakeCudaState, ProtocolViolation
from fake_trt_runtime import MAGIC
_NP = {"FLOAT": np.float32, "HALF": np.float16, "INT32": np.int32, "INT64": np.int64, "BOOL": np.bool_}
_ONNX_TO_TRT = {onnx.TensorProto.FLOAT: "FLOAT", onnx.TensorProto.FLOAT16: "HALF",
                onnx.TensorProto.INT32: "INT32", onnx.TensorProto.INT64: "INT64"}


@dataclass
class FakeTrtState:
    """Knobs and records of one fake TensorRT installation."""

    version: str = "10.9.0.34"
    cuda: FakeCudaState = field(default_factory=FakeCudaState)
    cuda_major: int = 12                # the CUDA major this "wheel" is built for (tensorrt-cu12)
    build_delay: float = 0.0            # seconds; lets two processes overlap their builds
    fail_build_with: str | None = None  # log this ERROR and return None from the build
    builds: int = 0
    timing_cache_hits: int = 0
    networks: list[Any] = field(default_factory=list)
    configs: list[Any] = field(default_factory=list)
    contexts: list[Any] = field(default_factory=list)

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])


def build_module(state: FakeTrtState) -> types.ModuleType:
    trt = types.ModuleType("tensorrt")
    # A spec like an installed package's: importlib.util.find_spec (used by torch._dynamo) needs it.
    trt.__spec__ = importlib.machinery.ModuleSpec("tensorrt", None)
    trt.__version__ = state.version
    major = state.major

    # ---- enums --------------------------------------------------------------------------
    class Severity(enum.IntEnum):
        INTERNAL_ERROR = 0
        ERROR = 1
        WARNING = 2
        INFO = 3
        VERBOSE = 4

    severity_enum = Severity

    class ILogger:
        Severity = severity_enum

        def __init__(self) -> None:
            self._initialised = True

        def log(self, severity: Severity, msg: str) -> None:  # pragma: no cover - overridden
            pass

    class Logger(ILogger):
        def __init__(self, min_severity: Severity = Severity.WARNING) -> None:
            super().__init__()
            self.min_severity = min_severity

    # Enum values are those of tensorrt-stubs 10.13 (the newest published); the 11.x flavour assumes
    # them unchanged, which nothing here can check.
    DataType = enum.IntEnum("DataType", {"FLOAT": 0, "HALF": 1, "INT8": 2, "INT32": 3, "BOOL": 4, "INT64": 8})
    TensorIOMode = enum.IntEnum("TensorIOMode", ["NONE", "INPUT", "OUTPUT"], start=0)
    MemoryPoolType = enum.IntEnum("MemoryPoolType", ["WORKSPACE", "DLA_MANAGED_SRAM"], start=0)
    if major >= 11:
        NetworkDefinitionCreationFlag = enum.IntEnum(
            "NetworkDefinitionCreationFlag",
            {"STRONGLY_TYPED": 1, "PREFER_JIT_PYTHON_PLUGINS": 2, "PREFER_AOT_PYTHON_PLUGINS": 3})
        BuilderFlag = enum.IntEnum("BuilderFlag", {"DEBUG": 2, "GPU_FALLBACK": 3, "REFIT": 4,
                                                   "DISABLE_TIMING_CACHE": 5, "TF32": 6})
    else:
        NetworkDefinitionCreationFlag = enum.IntEnum(
            "NetworkDefinitionCreationFlag", {"EXPLICIT_BATCH": 0, "STRONGLY_TYPED": 1})
        BuilderFlag = enum.IntEnum("BuilderFlag", {"FP16": 0, "INT8": 1, "DEBUG": 2, "GPU_FALLBACK": 3,
                                                   "REFIT": 4, "DISABLE_TIMING_CACHE": 5, "TF32": 6,
                                                   "BF16": 17})
    precision_flags = {n for n in ("FP16", "INT8", "BF16") if hasattr(BuilderFlag, n)}

    def nptype(dtype: Any) -> type:
        return _NP[DataType(dtype).name]

    def _check_logger(logger: Any) -> None:
        if not isinstance(logger, ILogger):
            raise TypeError(f"incompatible constructor arguments: logger must be a tensorrt.ILogger, got {type(logger)}")
        if not getattr(logger, "_initialised", False):
            raise TypeError("tensorrt.ILogger.__init__() must be called when overriding __init__")

    def _log(logger: Any, sev: Severity, msg: str) -> None:
        logger.log(sev, msg)

    def _init_cuda() -> None:
        """What Builder/Runtime construction does first: initialise CUDA, or fail as pybind11 does."""
        cuda = state.cuda
        bindings = cuda.runtime_version // 1000
        if bindings != state.cuda_major or cuda.driver_version // 1000 < state.cuda_major:
            raise TypeError("pybind11::init(): factory function returned nullptr (CUDA initialization "
                            f"failure with error: 35; TensorRT for CUDA {state.cuda_major}, CUDA "
                            f"runtime {bindings}, driver {cuda.driver_version})")
        if not cuda.devices:
            raise TypeError("pybind11::init(): factory function returned nullptr (CUDA initialization "
                            "failure with error: 100)")

    # ---- network and parser -----------------------------------------------------------------
    @dataclass
    class ITensor:
        name: str
        shape: tuple[int, ...]
        dtype: Any

    class INetworkDefinition:
        def __init__(self, strongly_typed: bool) -> None:
            self.strongly_typed = strongly_typed
            self.inputs: list[ITensor] = []
            self.outputs: list[ITensor] = []
            self.onnx_bytes: bytes | None = None
            self.has_fp16 = False
            self.dim_names: dict[str, list[str | None]] = {}

        @property
        def num_inputs(self) -> int:
            return len(self.inputs)

        @property
        def num_outputs(self) -> int:
            return len(self.outputs)

        def get_input(self, index: int) -> ITensor:
            return self.inputs[index]

        def get_output(self, index: int) -> ITensor:
            return self.outputs[index]

    class ParserError:
        def __init__(self, desc: str, node: int = -1) -> None:
            self._desc, self._node = desc, node

        def desc(self) -> str:
            return self._desc

        def node(self) -> int:
            return self._node

        def code(self) -> str:
            return "INVALID_GRAPH"

    def _value_infos(graph_values: Any, names: dict) -> list[ITensor]:
        out = []
        for v in graph_values:
            t = v.type.tensor_type
            dims = [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]
            names[v.name] = [d.dim_param if d.HasField("dim_param") else None for d in t.shape.dim]
            out.append(ITensor(v.name, tuple(dims), DataType[_ONNX_TO_TRT[t.elem_type]]))
        return out

    class OnnxParser:
        def __init__(self, network: INetworkDefinition, logger: Any) -> None:
            _check_logger(logger)
            self.network, self.logger, self.errors = network, logger, []

        @property
        def num_errors(self) -> int:
            return len(self.errors)

        def get_error(self, index: int) -> ParserError:
            return self.errors[index]

        def clear_errors(self) -> None:
            self.errors = []

        def parse(self, model: bytes, path: str | None = None) -> bool:
            try:
                proto = onnx.load_from_string(bytes(model))
                onnx.checker.check_model(proto)
            except Exception as exc:  # noqa: BLE001 - the parser turns everything into errors
                self.errors.append(ParserError(
                    f"ModelImporter.cpp:{len(bytes(model))}: Failed to parse ONNX model: {exc}"))
                return False
            net = self.network
            net.inputs = _value_infos(proto.graph.input, net.dim_names)
            net.outputs = _value_infos(proto.graph.output, net.dim_names)
            net.onnx_bytes = bytes(model)
            net.has_fp16 = any(t.data_type == onnx.TensorProto.FLOAT16 for t in proto.graph.initializer)
            return True

    # ---- builder config, profiles, timing cache -----------------------------------------------
    class IOptimizationProfile:
        def __init__(self) -> None:
            self.shapes: dict[str, tuple] = {}
            self.valid = True

        def set_shape(self, input: str, min: Any, opt: Any, max: Any) -> None:  # noqa: A002
            name = input
            lo, op, hi = (tuple(int(d) for d in s) for s in (min, opt, max))
            if not (len(lo) == len(op) == len(hi)) or not all(a <= b <= c for a, b, c in zip(lo, op, hi)):
                self.valid = False
            self.shapes[name] = (lo, op, hi)

        def get_shape(self, input: str) -> list:  # noqa: A002
            return [list(s) for s in self.shapes[input]]

    class IHostMemory(bytes):
        @property
        def nbytes(self) -> int:
            return len(self)

    def _cache_header() -> bytes:
        props = state.cuda.current_props
        return f"FAKETIMING {state.version} sm{props.major}{props.minor}\n".encode()

    class ITimingCache:
        def __init__(self, entries: set[str]) -> None:
            self.entries = entries
            self.compatible = True

        def serialize(self) -> IHostMemory:
            return IHostMemory(_cache_header() + json.dumps(sorted(self.entries)).encode())

    class IBuilderConfig:
        def __init__(self, logger: Any) -> None:
            self.logger = logger
            self.flags = {BuilderFlag.TF32}  # TF32 is on by default
            self.profiles: list[IOptimizationProfile] = []
            self._level = 3
            self.pool_limits: dict = {}
            self.timing_cache: ITimingCache | None = None
            state.configs.append(self)

        @property
        def builder_optimization_level(self) -> int:
            return self._level

        @builder_optimization_level.setter
        def builder_optimization_level(self, value: int) -> None:
            if not 0 <= int(value) <= 5:
                _log(self.logger, Severity.ERROR, f"Parameter check failed, condition: level >= 0 && level <= 5 ({value})")
                return
            self._level = int(value)

        def set_flag(self, flag: Any) -> None:
            self.flags.add(BuilderFlag(flag))

        def clear_flag(self, flag: Any) -> None:
            self.flags.discard(BuilderFlag(flag))

        def get_flag(self, flag: Any) -> bool:
            return BuilderFlag(flag) in self.flags

        def set_memory_pool_limit(self, pool: Any, pool_size: int) -> None:
            self.pool_limits[MemoryPoolType(pool)] = int(pool_size)

        def add_optimization_profile(self, profile: IOptimizationProfile) -> int:
            if not profile.valid or not profile.shapes:
                _log(self.logger, Severity.ERROR, "Parameter check failed, condition: profile.isValid()")
                return -1
            self.profiles.append(profile)
            return len(self.profiles) - 1

        def create_timing_cache(self, serialized_timing_cache: bytes) -> ITimingCache | None:
            blob = bytes(serialized_timing_cache)
            if not blob:
                return ITimingCache(set())
            header, _, body = blob.partition(b"\n")
            try:
                if not header.startswith(b"FAKETIMING "):
                    raise ValueError("no timing cache header")
                entries = set(json.loads(body)) if body else set()
            except ValueError:  # a guess: see "What the fakes cannot know" above
                _log(self.logger, Severity.ERROR, "Error Code 1: Serialization (Serialization assertion "
                     "timing cache magic tag does not match)")
                return None
            cache = ITimingCache(entries)
            cache.compatible = header + b"\n" == _cache_header()
            return cache

        def set_timing_cache(self, cache: ITimingCache, ignore_mismatch: bool) -> bool:
            if not cache.compatible and not ignore_mismatch:
                _log(self.logger, Severity.WARNING, "Timing cache was created on a different device or TensorRT version")
                return False
            self.timing_cache = cache
            return True

        def get_timing_cache(self) -> ITimingCache | None:
            return self.timing_cache

    class Builder:
        def __init__(self, logger: Any) -> None:
            _check_logger(logger)
            _init_cuda()
            self.logger = logger
            self.device = state.cuda.current_device
            if major < 11:
                self.platform_has_fast_fp16 = True

        def create_network(self, flags: int = 0) -> INetworkDefinition:
            typed = major >= 11 or bool(int(flags) & (1 << int(NetworkDefinitionCreationFlag.STRONGLY_TYPED)))
            net = INetworkDefinition(typed)
            state.networks.append(net)
            return net

        def create_builder_config(self) -> IBuilderConfig:
            return IBuilderConfig(self.logger)

        def create_optimization_profile(self) -> IOptimizationProfile:
            return IOptimizationProfile()

        def build_serialized_network(self, network: INetworkDefinition, config: IBuilderConfig):
            err = lambda msg: (_log(self.logger, Severity.ERROR, msg), None)[1]  # noqa: E731
            if network.onnx_bytes is None:
                return err("Error Code 4: API Usage Error (Network must have at least one output)")
            if network.has_fp16 and not network.strongly_typed:
                raise ProtocolViolation("an fp16 graph was parsed into a weakly typed network; "
                                        "cp3rt builds strongly typed networks (precision from the graph).")
            set_precision = sorted(f.name for f in config.flags if f.name in precision_flags)
            if network.strongly_typed and set_precision:
                return err(f"Error Code 4: API Usage Error (BuilderFlag::k{set_precision[0]} is not "
                           "allowed with a strongly typed network)")
            dynamic = [t for t in network.inputs if any(d < 0 for d in t.shape)]
            if dynamic and not config.profiles:
                return err("Error Code 4: API Usage Error (Network has dynamic or shape inputs, "
                           "but no optimization profile has been defined.)")
            for index, profile in enumerate(config.profiles):
                for t in network.inputs:
                    if t.name not in profile.shapes:
                        return err(f"Error Code 4: API Usage Error (Optimization profile {index} "
                                   f"does not define dimensions for input {t.name})")
                    for s in profile.shapes[t.name]:
                        if len(s) != len(t.shape) or any(d >= 0 and d != v for d, v in zip(t.shape, s)):
                            return err(f"Error Code 4: API Usage Error (profile {index} shape {s} "
                                       f"does not match input {t.name} dimensions {t.shape})")
            if state.fail_build_with:
                return err(state.fail_build_with)
            if state.build_delay:
                time.sleep(state.build_delay)
            key = hashlib.sha256(network.onnx_bytes).hexdigest()
            if config.timing_cache is not None:
                if key in config.timing_cache.entries:
                    state.timing_cache_hits += 1
                config.timing_cache.entries.add(key)
            state.builds += 1
            props = state.cuda.devices[self.device]
            header = {
                "version": state.version, "cc": f"{props.major}.{props.minor}",
                "inputs": [[t.name, list(t.shape), t.dtype.name] for t in network.inputs],
                "outputs": [[t.name, list(t.shape), t.dtype.name] for t in network.outputs],
                "dims": network.dim_names,
                "profiles": [{k: [list(s) for s in v] for k, v in p.shapes.items()} for p in config.profiles],
                "flags": sorted(f.name for f in config.flags),
            }
            blob = json.dumps(header).encode()
            return IHostMemory(MAGIC + len(blob).to_bytes(8, "little") + blob + network.onnx_bytes)

    for obj in (ILogger, Logger, DataType, TensorIOMode, MemoryPoolType, NetworkDefinitionCreationFlag,
                BuilderFlag, OnnxParser, Builder, IBuilderConfig, IOptimizationProfile,
                ITimingCache, INetworkDefinition, IHostMemory):
        setattr(trt, obj.__name__, obj)
    trt.nptype = nptype
    trt._check_logger = _check_logger
    trt._init_cuda = _init_cuda
    fake_trt_runtime.add_runtime(trt, state)
    trt.volume = lambda shape: int(np.prod(tuple(shape)))
    trt.STATE = state
    return trt


def dist_folder(state: FakeTrtState) -> str:
    """A folder holding the metadata of ``tensorrt_cu<major>`` at the fake's version, as the real
    wheel installs it (cp3rt reads which CUDA major TensorRT is built for from it)."""
    import tempfile
    from pathlib import Path

    root = Path(tempfile.gettempdir()) / f"cp3rt-fake-trt-dist-{state.cuda_major}-{state.version}"
    name = f"tensorrt_cu{state.cuda_major}"
    info = root / f"{name}-{state.version}.dist-info"
    if not (info / "METADATA").is_file():
        info.mkdir(parents=True, exist_ok=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {state.version}\n")
    return str(root)


def install(monkeypatch, state: FakeTrtState, *, dist: bool = True) -> types.ModuleType:  # noqa: ANN001
    """Install fake ``tensorrt`` + fake CUDA bindings into ``sys.modules`` (and, with ``dist``, the
    ``tensorrt_cu<major>`` distribution metadata on ``sys.path``)."""
    import fake_cuda

    fake_cuda.install(monkeypatch, state.cuda)
    trt = build_module(state)
    if monkeypatch is None:
        sys.modules["tensorrt"] = trt
        if dist:
            sys.path.insert(0, dist_folder(state))
    else:
        monkeypatch.setitem(sys.modules, "tensorrt", trt)
        if dist:
            monkeypatch.syspath_prepend(dist_folder(state))
    return trt
