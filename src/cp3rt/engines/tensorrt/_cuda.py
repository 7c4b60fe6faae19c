"""Thin layer over the CUDA runtime bindings of cuda-python: memory, streams, events, device facts.

API used, as documented for cuda-python (``cuda.bindings.runtime``; ``cuda.cudart`` before 12.6,
still the name used by TensorRT's ``samples/python/common_runtime.py``): every call returns a tuple
whose first element is a ``cudaError_t`` and the rest the results, e.g.
``cudaMalloc(nbytes) -> (err, ptr)``, ``cudaMallocHost(nbytes) -> (err, ptr)``,
``cudaMemcpyAsync(dst, src, nbytes, kind, stream) -> (err,)``, ``cudaStreamCreate() -> (err, stream)``,
``cudaStreamSynchronize(stream) -> (err,)``, ``cudaEventCreate() -> (err, event)``,
``cudaEventRecord(event, stream)``, ``cudaEventSynchronize(event)``,
``cudaGetDeviceCount() -> (err, n)``, ``cudaSetDevice(dev) -> (err,)`` (the calling host thread's
current device: TensorRT builds, deserialises and runs on it), ``cudaGetDeviceProperties(dev) -> (err, prop)`` with
``prop.name`` (bytes), ``prop.major``, ``prop.minor``, ``prop.totalGlobalMem``,
``cudaDriverGetVersion() -> (err, version)``.

Nothing here imports torch; the bindings are imported when first needed.
"""

from __future__ import annotations

import ctypes
import dataclasses
import importlib
from types import ModuleType
from typing import Any

import numpy as np

from cp3rt.errors import BackendUnavailableError, EngineError

_MODULES = ("cuda.bindings.runtime", "cuda.cudart")  # new name first (cuda-python >= 12.6)


def cudart() -> ModuleType:
    """The CUDA runtime bindings, or a one-line error naming what is missing."""
    errors = []
    for name in _MODULES:
        try:
            return importlib.import_module(name)
        except ImportError as exc:
            errors.append(f"{name}: {exc}")
    raise BackendUnavailableError(
        "the native TensorRT backend needs the CUDA runtime bindings of cuda-python, which cannot be "
        f"imported here ({'; '.join(errors)}) (pip install 'cp3rt[trt]')."
    )


def check(result: Any, what: str) -> Any:
    """Unpack a cuda-python result tuple; raise EngineError naming the call on a CUDA error."""
    rt = cudart()
    parts = result if isinstance(result, tuple) else (result,)
    err, rest = parts[0], parts[1:]
    if err != rt.cudaError_t.cudaSuccess:
        raise EngineError(f"CUDA call {what} failed: {_error_text(rt, err)}.")
    if not rest:
        return None
    return rest[0] if len(rest) == 1 else rest


def _error_text(rt: ModuleType, err: Any) -> str:
    try:
        code, text = rt.cudaGetErrorString(err)
        return text.decode() if isinstance(text, bytes) else str(text)
    except Exception:  # noqa: BLE001 - the original error matters more than its description
        return str(err)


@dataclasses.dataclass(frozen=True)
class DeviceInfo:
    """What a built plan depends on: the GPU model and its compute capability."""

    index: int
    name: str
    compute_capability: str   # "9.0"
    total_memory: int         # bytes
    driver_version: str       # "12.4"


def device_count() -> int:
    """Number of CUDA devices (0 when the driver reports none or is absent)."""
    rt = cudart()
    err, count = rt.cudaGetDeviceCount()
    return int(count) if err == rt.cudaError_t.cudaSuccess else 0


def device_info(index: int = 0) -> DeviceInfo:
    """Facts about GPU ``index``; BackendUnavailableError (one sentence) when there is none."""
    count = device_count()
    if count <= index:
        raise BackendUnavailableError(
            f"no NVIDIA GPU {index} is visible here (CUDA reports {count} device(s)), and TensorRT "
            "engines run only on an NVIDIA GPU."
        )
    rt = cudart()
    prop = check(rt.cudaGetDeviceProperties(index), "cudaGetDeviceProperties")
    name = prop.name.decode(errors="replace") if isinstance(prop.name, bytes) else str(prop.name)
    driver = int(check(rt.cudaDriverGetVersion(), "cudaDriverGetVersion"))
    return DeviceInfo(
        index=index,
        name=name.split("\x00", 1)[0].strip(),
        compute_capability=f"{int(prop.major)}.{int(prop.minor)}",
        total_memory=int(prop.totalGlobalMem),
        driver_version=f"{driver // 1000}.{(driver % 1000) // 10}",
    )


def set_device(index: int) -> None:
    """Make GPU ``index`` the calling thread's current device (CUDA's current device is per host
    thread, so every entry point that does GPU work calls this first)."""
    rt = cudart()
    check(rt.cudaSetDevice(int(index)), f"cudaSetDevice({int(index)})")


class Stream:
    """A CUDA stream (non-default, so work on two streams can overlap)."""

    def __init__(self) -> None:
        self._rt = cudart()
        self.raw = check(self._rt.cudaStreamCreate(), "cudaStreamCreate")

    @property
    def handle(self) -> int:
        """The integer handle TensorRT's ``execute_async_v3(stream_handle)`` takes."""
        return int(self.raw)

    def synchronize(self) -> None:
        check(self._rt.cudaStreamSynchronize(self.raw), "cudaStreamSynchronize")

    def close(self) -> None:
        if self.raw is not None:
            check(self._rt.cudaStreamDestroy(self.raw), "cudaStreamDestroy")
            self.raw = None


class PinnedBuffer:
    """Page-locked host memory seen as a flat numpy array: the only memory that copies truly
    asynchronously to and from the GPU, so host work can overlap a running batch."""

    def __init__(self, nbytes: int) -> None:
        self._rt = cudart()
        self.nbytes = int(nbytes)
        self.ptr = int(check(self._rt.cudaMallocHost(self.nbytes), "cudaMallocHost"))
        raw = (ctypes.c_uint8 * self.nbytes).from_address(self.ptr)
        self._bytes = np.frombuffer(raw, dtype=np.uint8)

    def view(self, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
        """A C-contiguous array of ``shape`` over the start of the buffer."""
        count = int(np.prod(shape)) * np.dtype(dtype).itemsize
        if count > self.nbytes:
            raise EngineError(f"pinned buffer of {self.nbytes} bytes cannot hold {shape} {dtype}.")
        return self._bytes[:count].view(dtype).reshape(shape)

    def close(self) -> None:
        if self.ptr:
            self._bytes = np.empty(0, np.uint8)
            check(self._rt.cudaFreeHost(self.ptr), "cudaFreeHost")
            self.ptr = 0


class DeviceBuffer:
    """GPU memory of a fixed size (allocated once for the largest batch of the profile)."""

    def __init__(self, nbytes: int) -> None:
        self._rt = cudart()
        self.nbytes = int(nbytes)
        self.ptr = int(check(self._rt.cudaMalloc(self.nbytes), "cudaMalloc"))

    def close(self) -> None:
        if self.ptr:
            check(self._rt.cudaFree(self.ptr), "cudaFree")
            self.ptr = 0


def copy_to_device(dst: DeviceBuffer, src: PinnedBuffer, nbytes: int, stream: Stream) -> None:
    rt = cudart()
    kind = rt.cudaMemcpyKind.cudaMemcpyHostToDevice
    check(rt.cudaMemcpyAsync(dst.ptr, src.ptr, nbytes, kind, stream.raw), "cudaMemcpyAsync(H2D)")


def copy_to_host(dst: PinnedBuffer, src: DeviceBuffer, nbytes: int, stream: Stream) -> None:
    rt = cudart()
    kind = rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
    check(rt.cudaMemcpyAsync(dst.ptr, src.ptr, nbytes, kind, stream.raw), "cudaMemcpyAsync(D2H)")
