"""cp3rt's CUDA layer (engines/tensorrt/_cuda.py) run against the REAL cuda-bindings, on a machine
without an NVIDIA driver (CI): every call it makes must be accepted by the bindings (names and
argument forms), and each error path must end in cp3rt's one-sentence error naming the CUDA
error. Also checks that the fake CUDA uses the real error codes and descriptions.

Run by test_cuda_real_bindings.py in a subprocess, once with the cuda-bindings of the test venv
(13.x, constraints/test.txt) and once with 12.x put first on PYTHONPATH. Standalone:

    PYTHONPATH=src:tests/fakes python tests/engines/tensorrt/real_cuda_checks.py

Prints one JSON line: {"bindings": version, "passed": [...], "failed": {name: reason}, "skipped": why}.
"""

from __future__ import annotations

import ast
import json
import sys
import traceback
import types
from pathlib import Path

import cuda.bindings
import cuda.bindings.runtime as real

from cp3rt.engines.tensorrt import _cuda
from cp3rt.errors import BackendUnavailableError, EngineError

NO_DRIVER = "cudaErrorInsufficientDriver (CUDA driver version is insufficient for CUDA runtime version)"
CHECKS = []


def check(fn):  # noqa: ANN001, ANN201
    CHECKS.append(fn)
    return fn


def _raises(kind: type, call, *needles: str) -> str:  # noqa: ANN001
    try:
        call()
    except kind as exc:
        text = str(exc)
        missing = [n for n in needles if n not in text]
        assert not missing, f"{text!r} lacks {missing}"
        assert "\n" not in text, text
        return text
    raise AssertionError(f"no {kind.__name__} raised")


@check
def every_runtime_name_the_layer_uses_exists() -> None:
    source = Path(_cuda.__file__).read_text()
    used = {node.attr for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Attribute) and ast.unparse(node.value) in ("rt", "self._rt")}
    assert used, "the scan found no rt.X"
    missing = sorted(name for name in used if not hasattr(real, name))
    assert not missing, missing
    for enum_name, member in (("cudaError_t", "cudaSuccess"), ("cudaError_t", "cudaErrorNoDevice"),
                              ("cudaError_t", "cudaErrorInsufficientDriver"),
                              ("cudaMemcpyKind", "cudaMemcpyHostToDevice"),
                              ("cudaMemcpyKind", "cudaMemcpyDeviceToHost")):
        assert hasattr(getattr(real, enum_name), member), f"{enum_name}.{member}"


@check
def versions_without_a_driver() -> None:
    major = int(cuda.bindings.__version__.split(".")[0])
    assert _cuda.bindings_version() // 1000 == major, (_cuda.bindings_version(), major)
    assert _cuda.driver_version() == 0


@check
def device_count_names_the_error_and_the_fix() -> None:
    _raises(BackendUnavailableError, _cuda.device_count, NO_DRIVER, "no NVIDIA driver is installed here",
            "pip install 'cp3rt[trt-cu12]'")
    _raises(BackendUnavailableError, lambda: _cuda.device_info(0), NO_DRIVER)


@check
def set_device_names_the_error() -> None:
    _raises(EngineError, lambda: _cuda.set_device(1), "cudaSetDevice(1) failed", NO_DRIVER)


@check
def streams_and_memory_name_the_call_and_the_error() -> None:
    _raises(EngineError, _cuda.Stream, "cudaStreamCreate failed", NO_DRIVER)
    _raises(EngineError, lambda: _cuda.DeviceBuffer(256), "cudaMalloc failed", NO_DRIVER)
    _raises(EngineError, lambda: _cuda.PinnedBuffer(256), "cudaMallocHost failed", NO_DRIVER)


@check
def copies_and_stream_calls_take_cp3rts_argument_forms() -> None:
    """A wrong argument form would be a TypeError from the bindings; a CUDA error means accepted."""
    buf = types.SimpleNamespace(ptr=0x1000)
    stream = types.SimpleNamespace(raw=real.cudaStream_t(0))
    _raises(EngineError, lambda: _cuda.copy_to_device(buf, buf, 64, stream), "cudaMemcpyAsync(H2D) failed", NO_DRIVER)
    _raises(EngineError, lambda: _cuda.copy_to_host(buf, buf, 64, stream), "cudaMemcpyAsync(D2H) failed", NO_DRIVER)
    s = _cuda.Stream.__new__(_cuda.Stream)
    s._rt, s.raw = real, real.cudaStream_t(0)
    assert s.handle == 0
    _raises(EngineError, s.synchronize, "cudaStreamSynchronize failed")
    _raises(EngineError, s.close, "cudaStreamDestroy failed")
    dev = _cuda.DeviceBuffer.__new__(_cuda.DeviceBuffer)
    dev._rt, dev.ptr, dev.nbytes = real, 0x1000, 64
    _raises(EngineError, dev.close, "cudaFree failed")


@check
def the_fake_uses_the_real_codes_and_descriptions() -> None:
    import fake_cuda

    for member in fake_cuda.cudaError_t:
        assert int(getattr(real.cudaError_t, member.name)) == int(member), member.name
        err, text = real.cudaGetErrorString(getattr(real.cudaError_t, member.name))
        assert text.decode() == fake_cuda._DESCRIPTIONS.get(member, text.decode()), (member.name, text)
    for member in fake_cuda.cudaMemcpyKind:
        assert int(getattr(real.cudaMemcpyKind, member.name)) == int(member), member.name


def main() -> int:
    report = {"bindings": cuda.bindings.__version__, "passed": [], "failed": {}, "skipped": ""}
    err, driver = real.cudaDriverGetVersion()
    if driver:
        report["skipped"] = f"this machine has an NVIDIA driver (CUDA {driver}); these checks need none"
    else:
        for fn in CHECKS:
            try:
                fn()
                report["passed"].append(fn.__name__)
            except Exception:  # noqa: BLE001 - report every check
                report["failed"][fn.__name__] = traceback.format_exc(limit=3)
    print(json.dumps(report))
    return 1 if report["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
