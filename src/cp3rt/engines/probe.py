"""What this machine can run: library versions and, per backend, whether it loads and why not.

Used by ``cp3rt info`` and the benchmark fingerprints. It never imports torch or tensorrt
(versions come from package metadata); GPU execution providers are proven by opening a tiny
in-memory ONNX model with them, because listing a provider does not mean it works.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import importlib.util
import platform
import sys
from pathlib import Path
from typing import Any

from cp3rt._version import __version__

_PACKAGES = ("numpy", "numba", "scipy", "onnxruntime", "onnxruntime-gpu", "openvino", "onnx", "torch", "tensorrt")


@dataclasses.dataclass(frozen=True)
class BackendStatus:
    """One backend: ``available`` and a one-line ``detail`` (version or the reason it does not load)."""

    name: str
    available: bool
    detail: str


def package_version(dist: str) -> str | None:
    """Installed version of a distribution from its metadata (nothing is imported), or None."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def versions() -> dict[str, str | None]:
    """cp3rt, Python, platform and the versions of the libraries that matter for speed/results."""
    info: dict[str, str | None] = {
        "cp3rt": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
    }
    info.update({name: package_version(name) for name in _PACKAGES})
    return info


def cpu_model() -> str:
    """CPU model name (from /proc/cpuinfo on Linux) — benchmark numbers depend on it."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def onnxruntime_providers() -> list[str]:
    """Execution providers this onnxruntime build lists (not proof that they work)."""
    if importlib.util.find_spec("onnxruntime") is None:
        return []
    import onnxruntime as ort

    return list(ort.get_available_providers())


def backend_report() -> tuple[BackendStatus, ...]:
    """Status of every backend ``open_engine`` knows, in its ``auto`` order, then torch and openvino."""
    ort_statuses = _onnxruntime_statuses()
    return (
        _tensorrt_status(),
        ort_statuses["tensorrt"],
        ort_statuses["cuda"],
        ort_statuses["cpu"],
        _torch_status(),
        _openvino_status(),
    )


def _tensorrt_status() -> BackendStatus:
    """TensorRT >= 10 installed (metadata) and an NVIDIA GPU visible; tensorrt itself is not
    imported here (``cp3rt info`` stays light), so a broken install shows when a plan is built."""
    from cp3rt.engines.tensorrt._trt import MIN_TENSORRT_MAJOR, tensorrt_major
    from cp3rt.errors import Cp3rtError

    # The per-CUDA-major wheels (cp3rt[trt-cu12]/[trt-cu13]) install no distribution named 'tensorrt'.
    names = ("tensorrt", "tensorrt-cu12", "tensorrt-cu13", "tensorrt-cu12-bindings", "tensorrt-cu13-bindings")
    version = next((v for v in map(package_version, names) if v is not None), None)
    if version is None:
        return BackendStatus("trt", False, "tensorrt is not installed (pip install 'cp3rt[trt-cu12]', or "
                                           "'cp3rt[trt-cu13]' with an R580+ driver, on an NVIDIA GPU machine).")
    if tensorrt_major(version) < MIN_TENSORRT_MAJOR:
        return BackendStatus("trt", False, f"tensorrt {version} is installed but cp3rt needs >= {MIN_TENSORRT_MAJOR}.")
    try:
        from cp3rt.engines.tensorrt._cuda import device_info

        gpu = device_info(0)
    except Cp3rtError as exc:
        return BackendStatus("trt", False, f"tensorrt {version} is installed but {str(exc).rstrip('.')}.")
    return BackendStatus(
        "trt", True, f"tensorrt {version} (not imported by this report) on {gpu.name}, compute capability {gpu.compute_capability}."
    )


def _onnxruntime_statuses() -> dict[str, BackendStatus]:
    from cp3rt.engines.ort import PROVIDERS

    if importlib.util.find_spec("onnxruntime") is None:
        reason = "onnxruntime is not installed (pip install onnxruntime)."
        return {key: BackendStatus(f"ort-{key}", False, reason) for key in PROVIDERS}
    import onnxruntime as ort

    available = ort.get_available_providers()
    out = {}
    for key, provider in PROVIDERS.items():
        name = f"ort-{key}"
        if provider not in available:
            out[key] = BackendStatus(
                name, False, f"onnxruntime {ort.__version__} here has no {provider} (it offers {available})."
            )
            continue
        ok, detail = _try_provider(ort, provider)
        out[key] = BackendStatus(name, ok, detail)
    return out


def _try_provider(ort: Any, provider: str) -> tuple[bool, str]:
    options = ort.SessionOptions()
    options.log_severity_level = 4  # a failing GPU provider logs loudly; this is a probe
    try:
        session = ort.InferenceSession(identity_model_bytes(), sess_options=options, providers=[provider])
    except Exception as exc:  # any failure means: not usable here
        return False, f"{provider} failed to start: {str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}."
    if provider not in session.get_providers():
        return False, (
            f"{provider} is listed but a session came up on {session.get_providers()} "
            "(GPU, driver or CUDA/cuDNN/TensorRT libraries not usable)."
        )
    return True, f"onnxruntime {ort.__version__} with {provider}."


def _torch_status() -> BackendStatus:
    version = package_version("torch")
    if version is None or importlib.util.find_spec("torch") is None:
        return BackendStatus("torch", False, "torch is not installed (pip install 'cp3rt[export]').")
    # A file check, not find_spec: that would import the cp3rt.models package from engines.
    if not (Path(__file__).resolve().parents[1] / "models" / "cpnet.py").is_file():
        return BackendStatus("torch", False, "cp3rt.models.cpnet is missing from this cp3rt install.")
    return BackendStatus("torch", True, f"torch {version} (reference backend; only when asked for; not imported here).")


# ---- a one-node ONNX model, encoded by hand so the probe needs no `onnx` package ---------------

def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _int_field(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


def _bytes_field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _value_info(name: str) -> bytes:
    dim = _bytes_field(1, _int_field(1, 1))                 # Dimension.dim_value = 1
    tensor = _int_field(1, 1) + _bytes_field(2, dim)        # elem_type FLOAT, shape [1]
    return _bytes_field(1, name.encode()) + _bytes_field(2, _bytes_field(1, tensor))


def identity_model_bytes() -> bytes:
    """ModelProto of ``y = Identity(x)``, x/y float32[1], opset 13, IR version 8."""
    node = _bytes_field(1, b"x") + _bytes_field(2, b"y") + _bytes_field(4, b"Identity")
    graph = (
        _bytes_field(1, node)
        + _bytes_field(2, b"cp3rt_probe")
        + _bytes_field(11, _value_info("x"))
        + _bytes_field(12, _value_info("y"))
    )
    opset = _bytes_field(1, b"") + _int_field(2, 13)
    return _int_field(1, 8) + _bytes_field(7, graph) + _bytes_field(8, opset)


def _openvino_status() -> BackendStatus:
    """OpenVINO installed (metadata; not imported here) and whether this CPU does bf16 in
    hardware (AMX or AVX512-BF16: ``--precision bf16`` is fast only there)."""
    version = package_version("openvino")
    if version is None:
        return BackendStatus("openvino", False, "openvino is not installed (pip install 'cp3rt[openvino]').")
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        flags = set()
    bf16 = "yes" if flags & {"amx_bf16", "avx512_bf16"} else "no" if flags else "unknown"
    return BackendStatus("openvino", True, f"openvino {version} (CPU; only when asked for; not imported here); "
                                           f"bf16 in hardware: {bf16}.")


if __name__ == "__main__":  # pragma: no cover - debugging aid
    for status in backend_report():
        sys.stdout.write(f"{status.name}: {status.available} {status.detail}\n")

