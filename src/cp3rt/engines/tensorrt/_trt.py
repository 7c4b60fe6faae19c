"""Import TensorRT (>= 10 only), a logger that keeps its errors, and the facts a plan depends on.

TensorRT 10 and 11 share one code path in cp3rt: networks are created strongly typed, so the
precision comes from the ONNX graph (the fp16 export), never from builder precision flags.
Checked against the TensorRT Python API docs: ``Builder.create_network(flags)`` with
``1 << int(NetworkDefinitionCreationFlag.STRONGLY_TYPED)`` (10.x; in 11.0 the flag is deprecated and
ignored because strong typing is always on), ``BuilderFlag.FP16`` and the other weak-typing
flags removed in 11.x (10.x -> 11.x migration guide), ``trt.ILogger`` subclasses calling
``trt.ILogger.__init__(self)`` and overriding ``log(severity, msg)`` with
``ILogger.Severity.{INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE}``.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from types import ModuleType
from typing import Any

from cp3rt.errors import BackendUnavailableError

MIN_TENSORRT_MAJOR = 10
_INSTALL_HINT = ("pip install 'cp3rt[trt-cu12]' (or 'cp3rt[trt-cu13]' with an R580+ driver) on a machine "
                 "with an NVIDIA GPU")
_CUDA_MAJORS = (11, 12, 13, 14)  # tensorrt-cu<N> wheels cp3rt can recognise

MessageFn = Callable[[str, str], None]  # (severity name, message)


def load_tensorrt() -> ModuleType:
    """The ``tensorrt`` module, or BackendUnavailableError in one sentence (missing or < 10)."""
    try:
        trt = importlib.import_module("tensorrt")
    except (ImportError, OSError) as exc:  # a half-installed wheel fails on a missing .so
        raise BackendUnavailableError(
            "the native TensorRT backend needs TensorRT >= 10 and an NVIDIA GPU, and the Python package "
            f"'tensorrt' cannot be imported here ({exc}); {_INSTALL_HINT}."
        ) from exc
    version = str(getattr(trt, "__version__", "0"))
    if tensorrt_major(version) < MIN_TENSORRT_MAJOR:
        raise BackendUnavailableError(
            f"TensorRT {version} is installed but cp3rt needs TensorRT >= {MIN_TENSORRT_MAJOR} "
            "(strongly typed networks and the named-tensor API); upgrade with "
            "pip install 'tensorrt>=10'."
        )
    return trt


def tensorrt_cuda_major() -> int | None:
    """The CUDA major the installed TensorRT wheel is built for, from its distribution name
    (``tensorrt-cu12``, ``tensorrt-cu13``, their ``-bindings``); None when unknown (a source or
    tarball install, or wheels of two majors at once)."""
    from importlib import metadata

    found = set()
    for major in _CUDA_MAJORS:
        for name in (f"tensorrt-cu{major}", f"tensorrt-cu{major}-bindings"):
            try:
                metadata.version(name)
            except metadata.PackageNotFoundError:
                continue
            found.add(major)
    return found.pop() if len(found) == 1 else None


def check_cuda_pairing(trt: ModuleType) -> None:
    """Refuse, in one sentence with the exact install command, a TensorRT wheel and CUDA bindings
    built for different CUDA majors (TensorRT's constructors would fail with a bare TypeError)."""
    from cp3rt.engines.tensorrt import _cuda

    trt_major = tensorrt_cuda_major()
    bindings_major = _cuda.bindings_version() // 1000
    if trt_major is None or not bindings_major or trt_major == bindings_major:
        return
    driver = _cuda.driver_version()
    raise BackendUnavailableError(
        f"TensorRT {trt.__version__} is built for CUDA {trt_major} (tensorrt-cu{trt_major}) but the "
        f"CUDA bindings are for CUDA {bindings_major}, and the two must match; install a matched pair "
        f"for this driver (CUDA {_cuda.version_text(driver) if driver else 'none'}): "
        f"{_cuda.install_command(driver or 12000, trt_major)}."
    )


def construct(trt: ModuleType, cls: str, logger: Any) -> Any:
    """``trt.Builder(logger)`` / ``trt.Runtime(logger)``; a failure to start (pybind11 reports a
    failed CUDA initialisation as TypeError) is BackendUnavailableError, so ``auto`` moves on."""
    try:
        return getattr(trt, cls)(logger)
    except (TypeError, RuntimeError) as exc:
        from cp3rt.engines.tensorrt import _cuda

        driver = _cuda.driver_version()
        detail = logger.error_text(str(exc).strip().replace("\n", " "))
        raise BackendUnavailableError(
            f"TensorRT could not initialise CUDA (trt.{cls} raised {type(exc).__name__}: {detail}); "
            f"TensorRT {trt.__version__}, the CUDA bindings (CUDA "
            f"{_cuda.version_text(_cuda.bindings_version())}) and the driver (CUDA "
            f"{_cuda.version_text(driver) if driver else 'none'}) must agree on the CUDA major: "
            f"{_cuda.install_command(driver or 12000, tensorrt_cuda_major())}."
        ) from exc


def tensorrt_major(version: str) -> int:
    try:
        return int(str(version).split(".", 1)[0])
    except ValueError:
        return 0


def strongly_typed_flags(trt: ModuleType) -> int:
    """``create_network`` flags for a strongly typed network on TensorRT 10 and 11.

    11.x networks are always strongly typed and keep the flag only for compatibility; a later
    release may drop the enum member, which then needs no flag at all.
    """
    member = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    if member is None:
        if tensorrt_major(trt.__version__) >= 11:
            return 0
        raise BackendUnavailableError(
            f"TensorRT {trt.__version__} has no strongly typed networks, which cp3rt needs; "
            "upgrade with pip install 'tensorrt>=10'."
        )
    return 1 << int(member)


def make_logger(trt: ModuleType, on_message: MessageFn | None = None) -> Any:
    """A ``trt.ILogger`` that records errors/warnings (for exception messages) and forwards
    every message to ``on_message`` (the library itself never prints)."""
    severity = trt.ILogger.Severity

    class _Logger(trt.ILogger):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []
            self.warnings: list[str] = []

        def log(self, sev: Any, msg: str) -> None:
            if sev in (severity.INTERNAL_ERROR, severity.ERROR):
                self.errors.append(msg)
            elif sev == severity.WARNING:
                self.warnings.append(msg)
            if on_message is not None:
                on_message(getattr(sev, "name", str(sev)), msg)

        def error_text(self, default: str) -> str:
            """The logged errors on one line (TensorRT reports failures through the logger); the
            list is cleared at the start of every call that reports it (``errors.clear()``)."""
            return "; ".join(m.strip().replace("\n", " ") for m in self.errors) or default

    return _Logger()


@dataclasses.dataclass(frozen=True)
class TrtEnvironment:
    """What a plan is tied to: TensorRT version and the GPU (name, compute capability)."""

    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    driver_version: str
    total_memory: int
    device: int = 0   # the GPU index all of it describes (``--device``)


def current_environment(device: int = 0) -> tuple[ModuleType, TrtEnvironment]:
    """Load TensorRT, describe GPU ``device`` and make it the calling thread's current device
    (TensorRT builds and runs on the current device); one-sentence errors when either is missing."""
    from cp3rt.engines.tensorrt._cuda import device_info, set_device

    trt = load_tensorrt()
    check_cuda_pairing(trt)
    info = device_info(device)
    set_device(device)
    return trt, TrtEnvironment(
        tensorrt_version=str(trt.__version__),
        gpu_name=info.name,
        compute_capability=info.compute_capability,
        driver_version=info.driver_version,
        total_memory=info.total_memory,
        device=device,
    )
