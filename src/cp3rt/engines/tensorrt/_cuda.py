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
``cudaDriverGetVersion() -> (err, version)`` (0 without a driver), ``cudaRuntimeGetVersion()``
(the CUDA version the bindings are built for), ``cudaGetErrorName(err) -> (err, bytes)``.
Without a driver (or with one older than the bindings' CUDA major) every device call returns
``cudaErrorInsufficientDriver`` (cuda-bindings 12.9 and 13.5, run without a driver).

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
        "the native TensorRT backend needs the CUDA runtime bindings (cuda-bindings), which cannot be "
        f"imported here ({'; '.join(errors)}); {install_command(None)}."
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
    """``cudaErrorInsufficientDriver (CUDA driver version is insufficient ...)``: the name first,
    because it is what a user searches for."""
    def text(fn: str) -> str:
        try:
            value = getattr(rt, fn)(err)[1]
            return value.decode() if isinstance(value, bytes) else str(value)
        except Exception:  # noqa: BLE001 - the original error matters more than its description
            return ""

    name, description = text("cudaGetErrorName"), text("cudaGetErrorString")
    if name and description and description != name:
        return f"{name} ({description})"
    return name or description or str(err)


# ---- which CUDA major: driver, bindings, the install command that matches ----------------------
NEWEST_CUDA_MAJOR = 13  # the newest major cp3rt has an extra for (trt-cu13)
OLDEST_CUDA_MAJOR = 12


def version_text(version: int) -> str:
    """12040 -> "12.4" (the encoding of cudaDriverGetVersion/cudaRuntimeGetVersion)."""
    return f"{version // 1000}.{(version % 1000) // 10}"


def driver_version() -> int:
    """The newest CUDA the installed driver supports (12040 = 12.4); 0 when no driver is installed."""
    rt = cudart()
    err, version = rt.cudaDriverGetVersion()
    return int(version or 0) if err == rt.cudaError_t.cudaSuccess else 0


def bindings_version() -> int:
    """The CUDA version the installed CUDA bindings are built for (13050 = 13.5)."""
    rt = cudart()
    err, version = rt.cudaRuntimeGetVersion()
    return int(version or 0) if err == rt.cudaError_t.cudaSuccess else 0


def matching_major(driver: int) -> int:
    """The CUDA major to install for a driver (its newest, within the majors cp3rt has extras for)."""
    return min(max(driver // 1000, OLDEST_CUDA_MAJOR), NEWEST_CUDA_MAJOR)


def install_command(driver: int | None, remove_major: int | None = None) -> str:
    """The exact command that installs a TensorRT + bindings pair this driver runs (``driver`` None:
    not known), first removing TensorRT wheels of ``remove_major`` (two TensorRT wheels of
    different CUDA majors both provide ``tensorrt``)."""
    if driver is None:
        return (f"pip install 'cp3rt[trt-cu{OLDEST_CUDA_MAJOR}]' (or 'cp3rt[trt-cu{NEWEST_CUDA_MAJOR}]' "
                "with an R580+ driver) on a machine with an NVIDIA GPU")
    major = matching_major(driver)
    remove = ""
    if remove_major is not None and remove_major != major:
        names = " ".join(f"tensorrt-cu{remove_major}{part}" for part in ("", "-bindings", "-libs"))
        remove = f"pip uninstall -y tensorrt {names} && "
    return f"{remove}pip install 'cp3rt[trt-cu{major}]'"


def _unusable(rt: ModuleType, err: Any, trt_major: int | None = None) -> BackendUnavailableError:
    """Why CUDA cannot run here, in one sentence that names the CUDA error and the fix."""
    what = _error_text(rt, err)
    if err == rt.cudaError_t.cudaErrorInsufficientDriver:
        driver, bindings = driver_version(), bindings_version()
        if driver == 0:
            return BackendUnavailableError(
                f"CUDA reports {what}: no NVIDIA driver is installed here, and TensorRT engines run "
                f"only on an NVIDIA GPU with its driver (R525 or newer); then {install_command(12000)}."
            )
        return BackendUnavailableError(
            f"CUDA reports {what}: the NVIDIA driver supports CUDA up to {version_text(driver)} but the "
            f"CUDA bindings are for CUDA {version_text(bindings)}; take the pair for this driver: "
            f"{install_command(driver, trt_major or bindings // 1000)}."
        )
    return BackendUnavailableError(f"CUDA cannot be used here: {what}.")


@dataclasses.dataclass(frozen=True)
class DeviceInfo:
    """What a built plan depends on: the GPU model and its compute capability."""

    index: int
    name: str
    compute_capability: str   # "9.0"
    total_memory: int         # bytes
    driver_version: str       # "12.4"


def device_count() -> int:
    """Number of CUDA devices (0 when the driver sees none); BackendUnavailableError naming the
    CUDA error when CUDA itself cannot start (no driver, a driver too old for the bindings)."""
    rt = cudart()
    err, count = rt.cudaGetDeviceCount()
    if err == rt.cudaError_t.cudaSuccess:
        return int(count)
    if err == rt.cudaError_t.cudaErrorNoDevice:
        return 0
    raise _unusable(rt, err)


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
