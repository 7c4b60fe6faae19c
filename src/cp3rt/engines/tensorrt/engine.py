"""TrtEngine: a built plan run with TensorRT's named-tensor API; no torch at run time.

Run protocol (TensorRT 10/11 Python API): ``Runtime(logger).deserialize_cuda_engine(bytes)``;
I/O tensors from ``num_io_tensors`` / ``get_tensor_name(i)`` / ``get_tensor_mode(name)``
(``TensorIOMode.INPUT``) / ``get_tensor_dtype`` (-> numpy via ``trt.nptype``); per profile
``get_tensor_profile_shape(name, profile) -> (min, opt, max)``; per call
``context.set_input_shape(name, shape)`` then ``get_tensor_shape(output)``, then
``set_tensor_address(name, ptr)`` for every I/O tensor, then ``execute_async_v3(stream_handle)``.
Those calls return False (with the reason sent to the logger) instead of raising; every one is
checked.

Buffering: ``slots`` (default 2) sets of pinned host + device buffers, each with its own CUDA
stream and one execution context per optimisation profile. :meth:`TrtEngine.infer_many` keeps one
batch running on the GPU while the host stages the next one, so host work overlaps GPU work.

Memory, allocated once when the engine opens (nothing is allocated or freed while running, so
no ``cudaFree`` synchronises the device mid-stream):
* context memory: one block of ``device_memory_size_v2`` bytes (the largest over all profiles)
  per slot, given to each of the slot's contexts with ``set_device_memory(ptr, size)``; the
  contexts are created with ``ExecutionContextAllocationStrategy.USER_MANAGED``, as Polygraphy's
  TrtRunner does (TensorRT >= 10.1; 10.0 keeps TensorRT's own per-context memory). A slot's
  contexts run on the slot's stream one after another, so sharing the block is safe.
  TensorRT's default (STATIC) would give every context its own block: slots x profiles x the
  activations of the largest batch.
* I/O: pinned host + device buffers per slot, sized for the largest shape of any profile.
A call to :meth:`infer` while an :meth:`infer_many` iteration is unfinished is refused: it
would reuse a slot whose batch is still on the GPU.
"""

from __future__ import annotations

import collections
import dataclasses
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from cp3rt import defaults as D
from cp3rt.engines.base import BaseEngine, Batch, TensorSpec
from cp3rt.engines.tensorrt import _cuda
from cp3rt.engines.tensorrt._trt import construct, current_environment, make_logger
from cp3rt.engines.tensorrt.builder import rebuild_command
from cp3rt.engines.tensorrt.plan_cache import check_plan, read_plan_manifest
from cp3rt.errors import ConfigError, EngineError, IncompatibleEngineError


@dataclasses.dataclass
class _Slot:
    """One in-flight batch's worth of resources."""

    stream: _cuda.Stream
    host: dict[str, _cuda.PinnedBuffer] = dataclasses.field(default_factory=dict)
    device: dict[str, _cuda.DeviceBuffer] = dataclasses.field(default_factory=dict)
    contexts: dict[int, Any] = dataclasses.field(default_factory=dict)

    scratch: _cuda.DeviceBuffer | None = None  # context memory shared by this slot's contexts

    def close(self) -> None:
        self.contexts.clear()  # contexts go before the memory they use
        for buf in [*self.host.values(), *self.device.values(), *([self.scratch] if self.scratch else [])]:
            buf.close()
        self.stream.close()


@dataclasses.dataclass
class _Pending:
    slot: _Slot
    outputs: dict[str, tuple[np.dtype, tuple[int, ...]]]

    def result(self) -> dict[str, np.ndarray]:
        self.slot.stream.synchronize()
        return {name: self.slot.host[name].view(dtype, shape).copy()
                for name, (dtype, shape) in self.outputs.items()}


class TrtEngine(BaseEngine):
    """A TensorRT plan (``cp3rt build``) with its manifest beside it."""

    backend = "trt"

    def __init__(self, plan_path: str | os.PathLike[str], *, device: int = 0,
                 slots: int = D.TRT_ENGINE_SLOTS) -> None:
        if isinstance(slots, bool) or not isinstance(slots, int) or slots < 1:
            raise ConfigError(f"slots={slots!r} is not allowed; allowed: an int >= 1.")
        path = Path(plan_path)
        trt, env = current_environment(device)
        manifest = read_plan_manifest(path)
        check_plan(path, manifest, env, rebuild_command(manifest, path.parent))
        self._trt = trt
        self._device = device  # current_environment made it this thread's current device
        self._logger = make_logger(trt)
        self._runtime = construct(trt, "Runtime", self._logger)
        engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            raise IncompatibleEngineError(
                f"TensorRT {env.tensorrt_version} cannot load {path.name}: "
                f"{self._logger.error_text('deserialisation failed')}; rebuild with: "
                f"{rebuild_command(manifest, path.parent)}"
            )
        self._engine = engine
        inputs, outputs = self._io_specs()
        super().__init__(inputs, outputs, manifest, label=path.name)
        self._profiles = [
            tuple(tuple(int(d) for d in s) for s in engine.get_tensor_profile_shape(inputs[0].name, p))
            for p in range(engine.num_optimization_profiles)
        ]
        self.path = path
        self.environment = env
        self._streaming = False
        self._slots: list[_Slot] = []
        self._next_slot = 0
        try:
            for _ in range(slots):
                self._slots.append(self._make_slot())
            self._allocate_io()
        except BaseException:
            self._release()
            raise

    # ---- description ----------------------------------------------------------------------
    def _io_specs(self) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
        trt, engine = self._trt, self._engine
        inputs, outputs = [], []
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name))).name
            shape = tuple(None if int(d) < 0 else int(d) for d in engine.get_tensor_shape(name))
            spec = TensorSpec(name, dtype, shape)
            (inputs if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else outputs).append(spec)
        if len(inputs) != 1:
            raise EngineError(f"plan has inputs {[s.name for s in inputs]}; cp3rt plans have one.")
        return tuple(inputs), tuple(outputs)

    @property
    def profiles(self) -> list[tuple[tuple[int, ...], ...]]:
        """(min, opt, max) input shape of every optimisation profile."""
        return list(self._profiles)

    def profile_for(self, shape: tuple[int, ...]) -> int:
        """The first profile whose bounds hold ``shape`` (profile 0 is the 224 x 224 one)."""
        for index, (low, _opt, high) in enumerate(self._profiles):
            if all(lo <= s <= hi for lo, s, hi in zip(low, shape, high)):
                return index
        raise EngineError(f"input shape {shape} is outside every optimisation profile of {self.path.name}.")

    # ---- running --------------------------------------------------------------------------
    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self._refuse_if_streaming("infer()")
        return self._submit(feeds).result()

    def _refuse_if_streaming(self, call: str) -> None:
        if self._streaming:
            raise EngineError(
                f"{call} cannot run now: an infer_many() on this engine is still running ({self._label}) "
                "and its batches occupy the engine's buffers; finish or close that iteration first, "
                "or open a second engine."
            )

    def infer_many(self, batches: Iterable[Batch]) -> Iterator[dict[str, np.ndarray]]:
        """Results of ``batches`` in order, with up to ``slots`` batches in flight at once."""
        self._refuse_if_streaming("infer_many()")
        self._streaming = True
        pending: collections.deque[_Pending] = collections.deque()
        try:
            for batch in batches:
                feeds = self._validated(batch)
                if len(pending) == len(self._slots):
                    yield self._collect(pending)
                with self._backend_errors():
                    pending.append(self._submit(feeds))
            while pending:
                yield self._collect(pending)
        finally:
            for left in pending:  # an abandoned iteration: its slots are free once their work is done
                if left.slot.stream.raw is not None:  # (close() already waited for it otherwise)
                    left.slot.stream.synchronize()
            self._streaming = False

    def _collect(self, pending: collections.deque[_Pending]) -> dict[str, np.ndarray]:
        with self._backend_errors():
            return pending.popleft().result()

    def _submit(self, feeds: dict[str, np.ndarray]) -> _Pending:
        _cuda.set_device(self._device)  # the current device is per host thread
        self._logger.errors.clear()  # a message names this call's errors, not an earlier call's
        slot = self._slots[self._next_slot]
        self._next_slot = (self._next_slot + 1) % len(self._slots)
        name = self._inputs[0].name
        array = np.ascontiguousarray(feeds[name])
        profile = self.profile_for(array.shape)
        ctx = self._context(slot, profile)
        self._ok(ctx.set_input_shape(name, tuple(array.shape)), f"set_input_shape({name}, {array.shape})")
        outputs = {}
        for spec in self._outputs:
            shape = tuple(int(d) for d in ctx.get_tensor_shape(spec.name))
            if any(d < 0 for d in shape):
                raise EngineError(f"TensorRT left output {spec.name} with shape {shape} after the input shape was set.")
            outputs[spec.name] = (np.dtype(spec.dtype), shape)
        # Host work for this batch: it overlaps whatever the other slot has running on the GPU.
        np.copyto(slot.host[name].view(array.dtype, array.shape), array)
        for tensor, buf in slot.device.items():
            if tensor == name or tensor in outputs:
                self._ok(ctx.set_tensor_address(tensor, buf.ptr), f"set_tensor_address({tensor})")
        _cuda.copy_to_device(slot.device[name], slot.host[name], array.nbytes, slot.stream)
        self._ok(ctx.execute_async_v3(slot.stream.handle), "execute_async_v3")
        for out, (dtype, shape) in outputs.items():
            nbytes = int(np.prod(shape)) * dtype.itemsize
            _cuda.copy_to_host(slot.host[out], slot.device[out], nbytes, slot.stream)
        return _Pending(slot, outputs)

    def _context(self, slot: _Slot, profile: int) -> Any:
        return slot.contexts[profile]

    def _make_slot(self) -> _Slot:
        """A stream, one context-memory block and one context per profile sharing it."""
        trt, engine = self._trt, self._engine
        slot = _Slot(_cuda.Stream())
        try:
            strategy = getattr(trt, "ExecutionContextAllocationStrategy", None)
            # device_memory_size_v2 and set_device_memory arrived in TensorRT 10.1; 10.0 keeps
            # TensorRT's own (STATIC) context memory.
            user_managed = strategy is not None and hasattr(engine, "device_memory_size_v2")
            size = int(engine.device_memory_size_v2) if user_managed else 0
            slot.scratch = _cuda.DeviceBuffer(size) if size else None
            for profile in range(len(self._profiles)):
                self._logger.errors.clear()
                if user_managed:
                    ctx = engine.create_execution_context(strategy.USER_MANAGED)
                else:  # pragma: no cover - TensorRT 10.0
                    ctx = engine.create_execution_context()
                if ctx is None:
                    raise EngineError(f"TensorRT could not create an execution context for {self._label}: "
                                      f"{self._logger.error_text('no reason logged')}.")
                if slot.scratch is not None:
                    ctx.set_device_memory(slot.scratch.ptr, slot.scratch.nbytes)
                if profile:
                    self._ok(ctx.set_optimization_profile_async(profile, slot.stream.handle),
                             f"set_optimization_profile_async({profile})")
                slot.contexts[profile] = ctx
        except BaseException:
            slot.close()
            raise
        return slot

    def _allocate_io(self) -> None:
        """Pinned + device buffers per slot for every I/O tensor, at the largest size any profile
        allows (output sizes asked of TensorRT at each profile's largest input shape)."""
        name = self._inputs[0].name
        nbytes: dict[str, int] = {}
        first = self._slots[0]
        for profile, (_low, _opt, high) in enumerate(self._profiles):
            ctx = self._context(first, profile)
            self._ok(ctx.set_input_shape(name, high), f"set_input_shape({name}, {high})")
            sizes = {name: (np.dtype(self._inputs[0].dtype), high)}
            for spec in self._outputs:
                sizes[spec.name] = (np.dtype(spec.dtype), tuple(int(d) for d in ctx.get_tensor_shape(spec.name)))
            for tensor, (dtype, shape) in sizes.items():
                if any(d < 0 for d in shape):
                    raise EngineError(f"TensorRT left {tensor} with shape {shape} at the largest input shape {high}.")
                nbytes[tensor] = max(nbytes.get(tensor, 0), int(np.prod(shape)) * dtype.itemsize)
        for slot in self._slots:
            for tensor, size in nbytes.items():
                slot.device[tensor] = _cuda.DeviceBuffer(size)
                slot.host[tensor] = _cuda.PinnedBuffer(size)

    def _ok(self, result: Any, call: str) -> None:
        if result is False:
            raise EngineError(f"TensorRT {call} failed for {self._label}: "
                              f"{self._logger.error_text('no reason logged')}.")

    def _release(self) -> None:
        if self._slots:
            _cuda.set_device(self._device)
        for slot in self._slots:
            slot.stream.synchronize()
            slot.close()
        self._slots = []
        self._engine = None
        self._runtime = None
