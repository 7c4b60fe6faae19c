"""The runtime half of the fake ``tensorrt``: plan deserialisation, engines and execution contexts.

See :mod:`fake_tensorrt` for what is faithful to TensorRT and what is cp3rt's own protocol. The
execution context really computes: ``execute_async_v3`` enqueues, on the fake CUDA stream, a job
that reads the input from (fake) device memory, runs the plan's ONNX graph with onnxruntime on
the CPU and writes the outputs back to device memory.

Context memory (TensorRT >= 10.1 names, checked against tensorrt-stubs 10.13):
``ICudaEngine.device_memory_size_v2`` (the largest over all profiles),
``get_device_memory_size_for_profile_v2(p)``, ``create_execution_context(strategy)`` with
``ExecutionContextAllocationStrategy.{STATIC, ON_PROFILE_CHANGE, USER_MANAGED}``, and
``IExecutionContext.set_device_memory(memory, size)``. STATIC contexts take the largest size from
the device's budget (and fail with an OutOfMemory error and None, as TensorRT does, when it is
spent); USER_MANAGED ones must be given a block before ``execute_async_v3``, and one block used
by two contexts running at once on different streams is a ProtocolViolation (TensorRT calls it
undefined behaviour). The size itself is made up (``ACTIVATION_BYTES_PER_PIXEL`` per input pixel
of the profile's largest batch); the real size depends on the tactics chosen.
"""

from __future__ import annotations

import json
import types
from typing import Any

import numpy as np
from fake_cuda import ProtocolViolation

MAGIC = b"FAKETRTPLAN1\n"
ACTIVATION_BYTES_PER_PIXEL = 64


def add_runtime(trt: types.ModuleType, state: Any) -> None:
    """Define Runtime / ICudaEngine / IExecutionContext on ``trt`` (built by fake_tensorrt)."""
    import enum
    import weakref

    Severity, DataType, TensorIOMode = trt.ILogger.Severity, trt.DataType, trt.TensorIOMode
    nptype, _check_logger = trt.nptype, trt._check_logger
    Strategy = enum.IntEnum("ExecutionContextAllocationStrategy",
                            {"STATIC": 0, "ON_PROFILE_CHANGE": 1, "USER_MANAGED": 2})
    trt.ExecutionContextAllocationStrategy = Strategy
    scratch_users: dict[int, int] = {}  # context-memory pointer -> stream of its last execution

    def _release(device: int, nbytes: int) -> None:
        state.cuda.reserved[device] = state.cuda.reserved.get(device, 0) - nbytes

    def _log(logger: Any, sev: Any, msg: str) -> None:
        logger.log(sev, msg)

    class ICudaEngine:
        def __init__(self, header: dict, onnx_bytes: bytes, logger: Any, device: int) -> None:
            import onnxruntime as ort

            self.header = header
            self.logger = logger    # the logger of the Runtime that deserialised it
            self.device = device    # the CUDA device current at deserialisation
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

        def get_device_memory_size_for_profile_v2(self, profile_index: int) -> int:
            shapes = self.header["profiles"][profile_index]
            return max(int(np.prod(hi)) // hi[1] * ACTIVATION_BYTES_PER_PIXEL for _lo, _op, hi in shapes.values())

        @property
        def device_memory_size_v2(self) -> int:
            return max(self.get_device_memory_size_for_profile_v2(p) for p in range(self.num_optimization_profiles))

        @property
        def device_memory_size(self) -> int:  # deprecated in 10.1 for the _v2 one
            return self.device_memory_size_v2

        def create_execution_context(self, strategy: Any = Strategy.STATIC) -> IExecutionContext | None:
            strategy = Strategy(strategy)
            need = {Strategy.STATIC: self.device_memory_size_v2,
                    Strategy.ON_PROFILE_CHANGE: self.get_device_memory_size_for_profile_v2(0),
                    Strategy.USER_MANAGED: 0}[strategy]
            device = state.cuda.current_device
            if need > state.cuda.free_bytes(device):
                _log(self.logger, Severity.ERROR, f"Error Code 2: OutOfMemory (Requested size was {need} bytes.)")
                return None
            ctx = IExecutionContext(self, strategy)
            if need:
                state.cuda.reserved[device] = state.cuda.reserved.get(device, 0) + need
                weakref.finalize(ctx, _release, device, need)
            state.contexts.append(weakref.ref(ctx))
            return ctx

    class IExecutionContext:
        def __init__(self, engine: ICudaEngine, strategy: Any = Strategy.STATIC) -> None:
            self.engine = engine
            self.strategy = strategy
            self.memory: int | None = None
            self.profile = 0
            self.shapes: dict[str, tuple[int, ...]] = {}
            self.addresses: dict[str, int] = {}
            self.executions = 0

        def _error(self, msg: str) -> bool:
            _log(self.engine.logger, Severity.ERROR, msg)
            return False

        def set_device_memory(self, memory: int, size: int) -> None:
            need = self.engine.device_memory_size_v2
            alloc = state.cuda.find(int(memory), max(int(size), 1), "device")
            if alloc is None or alloc.device != self.engine.device:
                raise ProtocolViolation(f"set_device_memory got {int(memory):#x} (+{size}), not one device "
                                        f"allocation on GPU {self.engine.device}.")
            if int(size) < need or int(memory) % 256:
                raise ProtocolViolation(f"set_device_memory got {size} bytes at {int(memory):#x}; the engine "
                                        f"needs {need} bytes, 256-byte aligned (device_memory_size_v2).")
            self.memory = int(memory)

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
            alloc = state.cuda.find(int(memory), 1, "device")
            if alloc is None:
                raise ProtocolViolation(f"set_tensor_address({name}) got {int(memory):#x}, not device memory.")
            if alloc.device != self.engine.device:
                raise ProtocolViolation(f"set_tensor_address({name}) got memory of GPU {alloc.device} for an "
                                        f"engine on GPU {self.engine.device}.")
            self.addresses[name] = int(memory)
            return True

        def execute_async_v3(self, stream_handle: int) -> bool:
            io = self.engine.io
            on = state.cuda.stream_device.get(int(stream_handle))
            if on is not None and on != self.engine.device:
                return self._error(f"Error Code 1: Cuda Runtime (invalid resource handle: a stream of GPU {on} "
                                   f"given to an engine on GPU {self.engine.device})")
            unset = [n for n, _s, _d, m in io if m == TensorIOMode.INPUT and n not in self.shapes]
            if unset:
                return self._error(f"Error Code 3: API Usage Error (Parameter check failed, condition: "
                                   f"inputShapesSpecified. Input shape of {unset[0]} is not specified.)")
            if self.strategy == Strategy.USER_MANAGED and self.memory is None:
                return self._error("Error Code 3: API Usage Error (Parameter check failed, condition: "
                                   "mContext.deviceMemory. Device memory is not set for a context created "
                                   "with ExecutionContextAllocationStrategy::kUSER_MANAGED.)")
            if self.memory is not None:
                other = scratch_users.get(self.memory)
                if other is not None and other != int(stream_handle) and state.cuda.streams.get(other):
                    raise ProtocolViolation("one context-memory block is used by two contexts running at "
                                            f"once (streams {other:#x} and {int(stream_handle):#x}).")
                scratch_users[self.memory] = int(stream_handle)
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

    class Runtime:
        def __init__(self, logger: Any) -> None:
            _check_logger(logger)
            trt._init_cuda()
            self.logger = logger
            self.device = state.cuda.current_device

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
            props = state.cuda.current_props if state.cuda.devices else None
            here = f"{props.major}.{props.minor}" if props else "none"
            if header["cc"] != here:
                return err(f"Error Code 6: API Usage Error (The engine plan file is generated on an "
                           f"incompatible device, expecting compute {here} got compute {header['cc']}, "
                           "please rebuild.)")
            return ICudaEngine(header, data[start + size:], self.logger, state.cuda.current_device)


    for obj in (Runtime, ICudaEngine, IExecutionContext):
        setattr(trt, obj.__name__, obj)
