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
_INSTALL_HINT = "pip install 'cp3rt[trt]' on a machine with an NVIDIA GPU"

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
            """The logged errors on one line (TensorRT reports failures through the logger)."""
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
