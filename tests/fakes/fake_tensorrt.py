"""A fake ``tensorrt`` module (10.x or 11.x flavour) that checks cp3rt's call protocol and computes.

Faithful to TensorRT where cp3rt can observe it (Python API docs of 10.x and 11.x):
* failures are reported the TensorRT way: ``OnnxParser.parse`` returns False with the messages in
  ``get_error(i).desc()``; ``build_serialized_network`` and ``deserialize_cuda_engine`` return
  None and log ERROR messages; ``set_input_shape`` (outside the active profile's bounds) and
  ``execute_async_v3`` (a shape or an address missing) return False and log the reason;
* 11.x: networks are always strongly typed, ``NetworkDefinitionCreationFlag.STRONGLY_TYPED`` is
  kept but ignored, ``EXPLICIT_BATCH`` and the precision flags (``BuilderFlag.FP16`` ...) are gone;
  10.x: a precision builder flag on a strongly typed network fails the build;
* a plan only loads on the TensorRT version and GPU compute capability it was built for.

It really computes: the "plan" carries the ONNX graph, and ``execute_async_v3`` enqueues, on the
fake CUDA stream, a job that reads the input from (fake) device memory, runs the graph with
onnxruntime on the CPU and writes the outputs back to device memory.

Beyond TensorRT, it enforces cp3rt's own protocol with :class:`ProtocolViolation`: input shapes
before tensor addresses, device pointers that hold the whole tensor, an fp16 graph only in a
strongly typed network (precision from the graph).
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
import onnx
from fake_cuda import FakeCudaState, ProtocolViolation

MAGIC = b"FAKETRTPLAN1\n"
_NP = {"FLOAT": np.float32, "HALF": np.float16, "INT32": np.int32, "INT64": np.int64, "BOOL": np.bool_}
_ONNX_TO_TRT = {onnx.TensorProto.FLOAT: "FLOAT", onnx.TensorProto.FLOAT16: "HALF",
                onnx.TensorProto.INT32: "INT32", onnx.TensorProto.INT64: "INT64"}


@dataclass
class FakeTrtState:
    """Knobs and records of one fake TensorRT installation."""

    version: str = "10.9.0.34"
    cuda: FakeCudaState = field(default_factory=FakeCudaState)
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

    DataType = enum.IntEnum("DataType", ["FLOAT", "HALF", "INT8", "INT32", "BOOL", "INT64"], start=0)
    TensorIOMode = enum.IntEnum("TensorIOMode", ["NONE", "INPUT", "OUTPUT"], start=0)
    MemoryPoolType = enum.IntEnum("MemoryPoolType", ["WORKSPACE", "DLA_MANAGED_SRAM"], start=0)
    if major >= 11:
        NetworkDefinitionCreationFlag = enum.IntEnum(
            "NetworkDefinitionCreationFlag",
            {"STRONGLY_TYPED": 1, "PREFER_AOT_PYTHON_PLUGINS": 2, "PREFER_JIT_PYTHON_PLUGINS": 3})
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

        def get_input(self, i: int) -> ITensor:
            return self.inputs[i]

        def get_output(self, i: int) -> ITensor:
            return self.outputs[i]

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

        def get_error(self, i: int) -> ParserError:
            return self.errors[i]

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

        def set_shape(self, name: str, min: Any, opt: Any, max: Any) -> None:  # noqa: A002
            lo, op, hi = (tuple(int(d) for d in s) for s in (min, opt, max))
            if not (len(lo) == len(op) == len(hi)) or not all(a <= b <= c for a, b, c in zip(lo, op, hi)):
                self.valid = False
            self.shapes[name] = (lo, op, hi)

        def get_shape(self, name: str) -> list:
            return [list(s) for s in self.shapes[name]]

    class IHostMemory(bytes):
        @property
        def nbytes(self) -> int:
            return len(self)

    def _cache_header() -> bytes:
        props = state.cuda.devices[0]
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

        def set_memory_pool_limit(self, pool: Any, size: int) -> None:
            self.pool_limits[MemoryPoolType(pool)] = int(size)

        def add_optimization_profile(self, profile: IOptimizationProfile) -> int:
            if not profile.valid or not profile.shapes:
                _log(self.logger, Severity.ERROR, "Parameter check failed, condition: profile.isValid()")
                return -1
            self.profiles.append(profile)
            return len(self.profiles) - 1

        def create_timing_cache(self, serialized: bytes) -> ITimingCache:
            blob = bytes(serialized)
            if not blob:
                return ITimingCache(set())
            header, _, body = blob.partition(b"\n")
            cache = ITimingCache(set(json.loads(body)) if body else set())
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
            if not state.cuda.devices:
                raise TypeError("pybind11::init(): factory function returned nullptr (CUDA initialization failure with error: 100)")
            self.logger = logger
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
            props = state.cuda.devices[0]
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

    # ---- runtime -----------------------------------------------------------------------------
    class ICudaEngine:
        def __init__(self, header: dict, onnx_bytes: bytes) -> None:
            import onnxruntime as ort

            self.header = header
            self.io = [(n, tuple(s), DataType[d], TensorIOMode.INPUT) for n, s, d in header["inputs"]]
            self.io += [(n, tuple(s), DataType[d], TensorIOMode.OUTPUT) for n, s, d in header["outputs"]]
            self.session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])

        def _entry(self, name: str):
            for entry in self.io:
                if entry[0] == name:
                    return entry
            raise KeyError(f"no tensor named {name}")

        @property
        def num_io_tensors(self) -> int:
            return len(self.io)

        @property
        def num_optimization_profiles(self) -> int:
            return len(self.header["profiles"])

        def get_tensor_name(self, index: int) -> str:
            return self.io[index][0]

        def get_tensor_mode(self, name: str):
            return self._entry(name)[3]

        def get_tensor_dtype(self, name: str):
            return self._entry(name)[2]

        def get_tensor_shape(self, name: str) -> tuple[int, ...]:
            return self._entry(name)[1]

        def get_tensor_profile_shape(self, name: str, profile_index: int) -> list[tuple[int, ...]]:
            if self.get_tensor_mode(name) != TensorIOMode.INPUT:
                raise RuntimeError(f"{name} is not an input tensor")
            return [tuple(s) for s in self.header["profiles"][profile_index][name]]

        def create_execution_context(self) -> IExecutionContext:
            ctx = IExecutionContext(self)
            state.contexts.append(ctx)
            return ctx

    class IExecutionContext:
        def __init__(self, engine: ICudaEngine) -> None:
            self.engine = engine
            self.profile = 0
            self.shapes: dict[str, tuple[int, ...]] = {}
            self.addresses: dict[str, int] = {}
            self.executions = 0

        def _error(self, msg: str) -> bool:
            _log(runtime_logger[0], Severity.ERROR, msg)
            return False

        def set_optimization_profile_async(self, profile_index: int, stream_handle: int) -> bool:
            if not 0 <= profile_index < self.engine.num_optimization_profiles:
                return self._error(f"Error Code 3: API Usage Error (profileIndex {profile_index} out of range)")
            self.profile = profile_index
            self.shapes.clear()
            return True

        def set_input_shape(self, name: str, shape: Any) -> bool:
            entry = self.engine._entry(name)
            dims = tuple(int(d) for d in shape)
            low, _opt, high = self.engine.get_tensor_profile_shape(name, self.profile)
            if entry[3] != TensorIOMode.INPUT or len(dims) != len(entry[1]) or not all(
                    lo <= d <= hi for lo, d, hi in zip(low, dims, high)):
                return self._error(
                    f"IExecutionContext::setInputShape: Error Code 3: API Usage Error (Parameter check "
                    f"failed, condition: satisfyProfile. Set dimension {list(dims)} for tensor {name} does "
                    f"not satisfy any optimization profiles. Valid range for profile {self.profile}: "
                    f"{list(low)}..{list(high)}.)")
            self.shapes[name] = dims
            return True

        def get_tensor_shape(self, name: str) -> tuple[int, ...]:
            entry = self.engine._entry(name)
            if entry[3] == TensorIOMode.INPUT:
                return self.shapes.get(name, entry[1])
            known: dict[str, int] = {}
            for n, _s, _d, mode in self.engine.io:
                if mode == TensorIOMode.INPUT and n in self.shapes:
                    for param, value in zip(self.engine.header["dims"][n], self.shapes[n]):
                        if param:
                            known[param] = value
            return tuple(d if d >= 0 else known.get(p, -1)
                         for d, p in zip(entry[1], self.engine.header["dims"][name]))

        def set_tensor_address(self, name: str, memory: int) -> bool:
            self.engine._entry(name)
            unset = [n for n, _s, _d, m in self.engine.io if m == TensorIOMode.INPUT and n not in self.shapes]
            if unset:
                raise ProtocolViolation(f"set_tensor_address({name}) before set_input_shape for {unset}.")
            if state.cuda.find(int(memory), 1, "device") is None:
                raise ProtocolViolation(f"set_tensor_address({name}) got {int(memory):#x}, not device memory.")
            self.addresses[name] = int(memory)
            return True

        def execute_async_v3(self, stream_handle: int) -> bool:
            io = self.engine.io
            unset = [n for n, _s, _d, m in io if m == TensorIOMode.INPUT and n not in self.shapes]
            if unset:
                return self._error(f"Error Code 3: API Usage Error (Parameter check failed, condition: "
                                   f"inputShapesSpecified. Input shape of {unset[0]} is not specified.)")
            missing = [n for n, *_ in io if n not in self.addresses]
            if missing:
                return self._error(f"Error Code 3: API Usage Error (Parameter check failed, condition: "
                                   f"mContext.profileObliviousBindings.at(profileObliviousIndex) || "
                                   f"getPtrOrNull(mOutputAllocators, profileObliviousIndex). Neither "
                                   f"address or allocator is set for output tensor {missing[0]}.)")
            jobs = []
            for name, _s, dtype, mode in io:
                shape = self.get_tensor_shape(name)
                nbytes = int(np.prod(shape)) * np.dtype(nptype(dtype)).itemsize
                if state.cuda.find(self.addresses[name], nbytes, "device") is None:
                    raise ProtocolViolation(f"device buffer of {name} is smaller than {shape} needs.")
                jobs.append((name, self.addresses[name], nptype(dtype), shape, mode))
            session = self.engine.session

            def run() -> None:  # what the GPU does when the stream reaches this point
                feeds = {n: state.cuda.device_array(p, dt, sh).copy()
                         for n, p, dt, sh, m in jobs if m == TensorIOMode.INPUT}
                outs = [j for j in jobs if j[4] == TensorIOMode.OUTPUT]
                values = session.run([j[0] for j in outs], feeds)
                for (n, p, dt, sh, _m), value in zip(outs, values):
                    state.cuda.device_array(p, dt, sh)[...] = value

            state.cuda.enqueue(int(stream_handle), run)
            self.executions += 1
            return True

    runtime_logger: list[Any] = [None]

    class Runtime:
        def __init__(self, logger: Any) -> None:
            _check_logger(logger)
            self.logger = logger
            runtime_logger[0] = logger

        def deserialize_cuda_engine(self, serialized_engine: bytes) -> ICudaEngine | None:
            data = bytes(serialized_engine)
            err = lambda msg: (_log(self.logger, Severity.ERROR, msg), None)[1]  # noqa: E731
            if not data.startswith(MAGIC) or len(data) < len(MAGIC) + 8:
                return err("Error Code 1: Serialization (Serialization assertion magicTagRead == kMAGIC_TAG failed.Magic tag does not match)")
            size = int.from_bytes(data[len(MAGIC):len(MAGIC) + 8], "little")
            start = len(MAGIC) + 8
            try:
                header = json.loads(data[start:start + size])
            except ValueError:
                return err("Error Code 1: Serialization (Serialization assertion stdVersionRead == kSERIALIZATION_VERSION failed.)")
            if header["version"] != state.version:
                return err(f"Error Code 6: API Usage Error (The engine plan file is not compatible with this "
                           f"version of TensorRT, expecting library version {state.version} got "
                           f"{header['version']}, please rebuild.)")
            props = state.cuda.devices[0] if state.cuda.devices else None
            here = f"{props.major}.{props.minor}" if props else "none"
            if header["cc"] != here:
                return err(f"Error Code 6: API Usage Error (The engine plan file is generated on an "
                           f"incompatible device, expecting compute {here} got compute {header['cc']}, "
                           "please rebuild.)")
            return ICudaEngine(header, data[start + size:])

    for obj in (ILogger, Logger, DataType, TensorIOMode, MemoryPoolType, NetworkDefinitionCreationFlag,
                BuilderFlag, OnnxParser, Builder, Runtime, IBuilderConfig, IOptimizationProfile,
                ITimingCache, ICudaEngine, IExecutionContext, INetworkDefinition, IHostMemory):
        setattr(trt, obj.__name__, obj)
    trt.nptype = nptype
    trt.volume = lambda shape: int(np.prod(tuple(shape)))
    trt.STATE = state
    return trt


def install(monkeypatch, state: FakeTrtState) -> types.ModuleType:  # noqa: ANN001
    """Install fake ``tensorrt`` + fake CUDA bindings into ``sys.modules``."""
    import fake_cuda

    fake_cuda.install(monkeypatch, state.cuda)
    trt = build_module(state)
    if monkeypatch is None:
        sys.modules["tensorrt"] = trt
    else:
        monkeypatch.setitem(sys.modules, "tensorrt", trt)
    return trt
