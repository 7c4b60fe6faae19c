"""A fake ``cuda.bindings.runtime`` (cuda-python) that behaves like the real one where cp3rt can tell.

* Every call returns a tuple ``(cudaError_t, *results)``; errors are return codes, not exceptions.
* Host (``cudaMallocHost``) and device (``cudaMalloc``) memory are real process memory at real
  addresses, kept apart in two registries: a copy whose direction does not match its ``kind``,
  or that runs past an allocation, fails with ``cudaErrorInvalidValue`` like the driver does.
* New device memory is filled with 0xFF bytes (NaN as float32), so reading an output the GPU
  never wrote shows up as NaN instead of a lucky zero. Limit of the fake: only the first
  ``POISON_BYTES`` of an allocation are filled; the rest is lazily mapped zero pages, so that
  buffers sized for a 256-tile batch cost no host memory until touched.
* Device memory counts against the device's ``totalGlobalMem``: ``cudaMalloc`` past it returns
  ``cudaErrorMemoryAllocation``, and the fake TensorRT's own context memory (``reserved``) counts
  too, so an engine that needs more memory than the GPU has fails as it would on the GPU.
* Streams are queues: async copies and kernels (the fake TensorRT enqueues its work here) only
  run when the stream is synchronised (or memory is freed, which synchronises in CUDA too), so a
  host that reads results before ``cudaStreamSynchronize`` sees stale data, as on a real GPU.
* ``devices=[]`` models a machine without a GPU: ``cudaGetDeviceCount`` returns
  ``cudaErrorNoDevice``.
* The driver is versioned like the real one: ``driver_version`` (12040 = CUDA 12.4; 0 = no driver
  installed) against the bindings' ``runtime_version`` (12090 = cuda-bindings 12.9). With no
  driver, or one older than the bindings' CUDA major, every device call returns
  ``cudaErrorInsufficientDriver`` (what cuda-bindings 12.9 and 13.5 return on a machine without a
  driver), while ``cudaDriverGetVersion``/``cudaRuntimeGetVersion`` still answer.
  ``cudaGetErrorName``/``cudaGetErrorString`` give the real name and description.
* Devices are indexed: ``cudaSetDevice`` sets the calling thread's current device (0 until set,
  ``cudaErrorInvalidDevice`` past the last one), and memory and streams belong to the device that
  was current when they were made, as in CUDA. The fake TensorRT builds and runs on the current
  device, so work that ignores ``--device`` shows up on GPU 0.
"""

from __future__ import annotations

import collections
import ctypes
import enum
import importlib.machinery
import itertools
import mmap
import sys
import threading
import types
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


class ProtocolViolation(AssertionError):
    """cp3rt used the (fake) CUDA/TensorRT API in a way that would corrupt memory or is against
    the call protocol cp3rt promises; never raised by the real libraries, so tests fail on it."""


class cudaError_t(enum.IntEnum):  # noqa: N801 - the binding's own name
    cudaSuccess = 0
    cudaErrorInvalidValue = 1
    cudaErrorMemoryAllocation = 2
    cudaErrorInsufficientDriver = 35
    cudaErrorNoDevice = 100
    cudaErrorInvalidDevice = 101
    cudaErrorInvalidResourceHandle = 400


# What the real cudaGetErrorString says (cuda-bindings 12.9/13.5).
_DESCRIPTIONS = {
    cudaError_t.cudaErrorInvalidValue: "invalid argument",
    cudaError_t.cudaErrorMemoryAllocation: "out of memory",
    cudaError_t.cudaErrorInsufficientDriver: "CUDA driver version is insufficient for CUDA runtime version",
    cudaError_t.cudaErrorNoDevice: "no CUDA-capable device is detected",
    cudaError_t.cudaErrorInvalidDevice: "invalid device ordinal",
    cudaError_t.cudaErrorInvalidResourceHandle: "invalid resource handle",
}


class cudaMemcpyKind(enum.IntEnum):  # noqa: N801
    cudaMemcpyHostToHost = 0
    cudaMemcpyHostToDevice = 1
    cudaMemcpyDeviceToHost = 2
    cudaMemcpyDeviceToDevice = 3


class cudaStream_t:  # noqa: N801
    def __init__(self, handle: int) -> None:
        self._handle = handle

    def __int__(self) -> int:
        return self._handle

    def getPtr(self) -> int:  # noqa: N802 - the binding's own name
        return self._handle


@dataclass
class DeviceProps:
    name: bytes = b"Fake NVIDIA H100 80GB HBM3"
    major: int = 9
    minor: int = 0
    totalGlobalMem: int = 80 * 2**30  # noqa: N815


POISON_BYTES = 64 << 20


@dataclass
class _Alloc:
    kind: str           # "host" | "device"
    buffer: object      # keeps the memory mapped
    nbytes: int
    device: int = 0     # the device current when it was allocated


@dataclass
class FakeCudaState:
    devices: list[DeviceProps] = field(default_factory=lambda: [DeviceProps()])
    driver_version: int = 12040     # what cudaDriverGetVersion says; 0: no NVIDIA driver
    runtime_version: int = 12090    # the CUDA version the bindings are built for (cudaRuntimeGetVersion)
    allocations: dict[int, _Alloc] = field(default_factory=dict)
    streams: dict[int, collections.deque] = field(default_factory=dict)
    calls: collections.Counter = field(default_factory=collections.Counter)
    stream_device: dict[int, int] = field(default_factory=dict)
    reserved: dict[int, int] = field(default_factory=dict)   # device -> bytes TensorRT allocated itself
    _ids: itertools.count = field(default_factory=lambda: itertools.count(0x7000))
    _local: threading.local = field(default_factory=threading.local)

    @property
    def current_device(self) -> int:
        """The calling thread's current device (``cudaSetDevice``; 0 until set, as in CUDA)."""
        return getattr(self._local, "device", 0)

    @property
    def current_props(self) -> DeviceProps:
        return self.devices[self.current_device]

    # ---- helpers the fake TensorRT uses -----------------------------------------------------
    def used(self, device: int) -> int:
        """Device memory in use on ``device``: cudaMalloc'ed plus what TensorRT reserved itself."""
        return self.reserved.get(device, 0) + sum(
            a.nbytes for a in self.allocations.values() if a.kind == "device" and a.device == device)

    def free_bytes(self, device: int) -> int:
        return self.devices[device].totalGlobalMem - self.used(device)

    def find(self, ptr: int, nbytes: int, kind: str | None = None) -> _Alloc | None:
        for base, alloc in self.allocations.items():
            if base <= ptr and ptr + nbytes <= base + alloc.nbytes and (kind is None or alloc.kind == kind):
                return alloc
        return None

    def device_array(self, ptr: int, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        if self.find(ptr, nbytes, "device") is None:
            raise ProtocolViolation(f"{nbytes} bytes at {ptr:#x} are not inside one device allocation.")
        raw = (ctypes.c_uint8 * nbytes).from_address(ptr)
        return np.frombuffer(raw, dtype=np.uint8).view(dtype).reshape(shape)

    def enqueue(self, handle: int, op: Callable[[], None]) -> None:
        if handle not in self.streams:
            raise ProtocolViolation(f"stream handle {handle:#x} was not created by cudaStreamCreate.")
        self.streams[handle].append(op)

    def flush(self, handle: int | None = None) -> None:
        for h in ([handle] if handle is not None else list(self.streams)):
            queue = self.streams.get(h, collections.deque())
            while queue:
                queue.popleft()()

    def pending(self) -> int:
        return sum(len(q) for q in self.streams.values())


def build_module(state: FakeCudaState) -> types.ModuleType:
    """The fake ``cuda.bindings.runtime`` module bound to ``state``."""
    rt = types.ModuleType("cuda.bindings.runtime")
    ok = cudaError_t.cudaSuccess
    rt.cudaError_t, rt.cudaMemcpyKind, rt.cudaStream_t = cudaError_t, cudaMemcpyKind, cudaStream_t

    def count(name: str) -> None:
        state.calls[name] += 1

    def unusable():  # noqa: ANN202
        """The error every device call returns on this machine, None when the GPU is usable."""
        if state.driver_version // 1000 < state.runtime_version // 1000:
            return cudaError_t.cudaErrorInsufficientDriver
        return None if state.devices else cudaError_t.cudaErrorNoDevice

    def cudaGetDeviceCount():  # noqa: N802
        count("cudaGetDeviceCount")
        if (bad := unusable()) is not None:
            return (bad, None if bad == cudaError_t.cudaErrorInsufficientDriver else 0)
        return (ok, len(state.devices))

    def cudaGetDeviceProperties(device: int):  # noqa: N802
        count("cudaGetDeviceProperties")
        if (bad := unusable()) is not None:
            return (bad, None)
        if not 0 <= device < len(state.devices):
            return (cudaError_t.cudaErrorInvalidValue, None)
        return (ok, state.devices[device])

    def cudaSetDevice(device: int):  # noqa: N802
        count("cudaSetDevice")
        if (bad := unusable()) is not None:
            return (bad,)
        if not 0 <= int(device) < len(state.devices):
            return (cudaError_t.cudaErrorInvalidDevice,)
        state._local.device = int(device)
        return (ok,)

    def cudaGetDevice():  # noqa: N802
        if (bad := unusable()) is not None:
            return (bad, None)
        return (ok, state.current_device)

    def cudaDriverGetVersion():  # noqa: N802
        return (ok, state.driver_version)

    def cudaRuntimeGetVersion():  # noqa: N802
        return (ok, state.runtime_version)

    def cudaGetErrorName(err):  # noqa: N802
        return (ok, cudaError_t(err).name.encode())

    def cudaGetErrorString(err):  # noqa: N802
        return (ok, _DESCRIPTIONS.get(cudaError_t(err), cudaError_t(err).name).encode())

    def _alloc(kind: str, nbytes: int):
        if (bad := unusable()) is not None:
            return (bad, None)
        if nbytes <= 0:
            return (cudaError_t.cudaErrorInvalidValue, 0)
        if kind == "device" and nbytes > state.free_bytes(state.current_device):
            return (cudaError_t.cudaErrorMemoryAllocation, None)
        mapped = mmap.mmap(-1, int(nbytes))  # zero pages, backed only once touched
        head = ctypes.c_char.from_buffer(mapped)
        ptr = ctypes.addressof(head)
        if kind == "device":
            ctypes.memset(ptr, 0xFF, min(int(nbytes), POISON_BYTES))
        state.allocations[ptr] = _Alloc(kind, (mapped, head), int(nbytes), state.current_device)
        return (ok, ptr)

    def cudaMalloc(nbytes: int):  # noqa: N802
        count("cudaMalloc")
        return _alloc("device", nbytes)

    def cudaMallocHost(nbytes: int):  # noqa: N802
        count("cudaMallocHost")
        return _alloc("host", nbytes)

    def _free(ptr: int, kind: str):
        state.flush()  # cudaFree/cudaFreeHost synchronise the device
        alloc = state.allocations.get(int(ptr))
        if alloc is None or alloc.kind != kind:
            return (cudaError_t.cudaErrorInvalidValue,)
        del state.allocations[int(ptr)]
        return (ok,)

    def cudaFree(ptr: int):  # noqa: N802
        count("cudaFree")
        return _free(ptr, "device")

    def cudaFreeHost(ptr: int):  # noqa: N802
        count("cudaFreeHost")
        return _free(ptr, "host")

    def cudaStreamCreate():  # noqa: N802
        count("cudaStreamCreate")
        if (bad := unusable()) is not None:
            return (bad, None)
        handle = next(state._ids)
        state.streams[handle] = collections.deque()
        state.stream_device[handle] = state.current_device
        return (ok, cudaStream_t(handle))

    def _stream(stream) -> int | None:
        handle = int(stream)
        return handle if handle in state.streams else None

    def cudaStreamSynchronize(stream):  # noqa: N802
        count("cudaStreamSynchronize")
        handle = _stream(stream)
        if handle is None:
            return (cudaError_t.cudaErrorInvalidResourceHandle,)
        state.flush(handle)
        return (ok,)

    def cudaStreamDestroy(stream):  # noqa: N802
        count("cudaStreamDestroy")
        handle = _stream(stream)
        if handle is None:
            return (cudaError_t.cudaErrorInvalidResourceHandle,)
        state.flush(handle)  # queued work still completes
        del state.streams[handle]
        return (ok,)

    def cudaMemcpyAsync(dst: int, src: int, nbytes: int, kind, stream):  # noqa: N802
        count("cudaMemcpyAsync")
        handle = _stream(stream)
        if handle is None:
            return (cudaError_t.cudaErrorInvalidResourceHandle,)
        want = {
            cudaMemcpyKind.cudaMemcpyHostToDevice: ("host", "device"),
            cudaMemcpyKind.cudaMemcpyDeviceToHost: ("device", "host"),
            cudaMemcpyKind.cudaMemcpyDeviceToDevice: ("device", "device"),
        }.get(cudaMemcpyKind(kind))
        if want is None or not isinstance(dst, int) or not isinstance(src, int):
            return (cudaError_t.cudaErrorInvalidValue,)
        if state.find(src, nbytes, want[0]) is None or state.find(dst, nbytes, want[1]) is None:
            return (cudaError_t.cudaErrorInvalidValue,)
        state.enqueue(handle, lambda: ctypes.memmove(dst, src, nbytes))
        return (ok,)

    for fn in (cudaGetDeviceCount, cudaGetDeviceProperties, cudaSetDevice, cudaGetDevice,
               cudaDriverGetVersion, cudaRuntimeGetVersion, cudaGetErrorName, cudaGetErrorString,
               cudaMalloc, cudaMallocHost, cudaFree, cudaFreeHost, cudaStreamCreate,
               cudaStreamSynchronize, cudaStreamDestroy, cudaMemcpyAsync):
        setattr(rt, fn.__name__, fn)
    rt.STATE = state
    return rt


def install(monkeypatch, state: FakeCudaState) -> types.ModuleType:  # noqa: ANN001
    """Put the fake under ``cuda.bindings.runtime`` (and the legacy ``cuda.cudart``)."""
    rt = build_module(state)
    cuda = types.ModuleType("cuda")
    cuda.__path__ = []  # a package, so "cuda.bindings" imports resolve through sys.modules
    bindings = types.ModuleType("cuda.bindings")
    bindings.__path__ = []
    bindings.runtime = rt
    cuda.bindings = bindings
    cuda.cudart = rt
    for name, module in (("cuda", cuda), ("cuda.bindings", bindings),
                         ("cuda.bindings.runtime", rt), ("cuda.cudart", rt)):
        module.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=name != "cuda.bindings.runtime")
        if monkeypatch is None:
            sys.modules[name] = module
        else:
            monkeypatch.setitem(sys.modules, name, module)
    return rt
