"""The runtime half of the fake ``tensorrt``: plan deserialisation, engines and execution contexts.

See :mod:`fake_tensorrt` for what is faithful to TensorRT and what is cp3rt's own protocol. The
execution context really computes: ``execute_async_v3`` enqueues, on the fake CUDA stream, a job
that reads the input from (fake) device memory, runs the plan's ONNX graph with onnxruntime on
the CPU and writes the outputs back to device memory.
"""

from __future__ import annotations

import json
import types
from typing import Any

import numpy as np
from fake_cuda import ProtocolViolation

MAGIC = b"FAKETRTPLAN1\n"


def add_runtime(trt: types.ModuleType, state: Any) -> None:
    """Define Runtime / ICudaEngine / IExecutionContext on ``trt`` (built by fake_tensorrt)."""
    Severity, DataType, TensorIOMode = trt.ILogger.Severity, trt.DataType, trt.TensorIOMode
    nptype, _check_logger = trt.nptype, trt._check_logger

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
            _log(self.engine.logger, Severity.ERROR, msg)
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
