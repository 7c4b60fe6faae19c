"""Pick and open a backend for an artefact: explicitly, or ``auto`` in a documented order.

``auto`` tries, in this order, and takes the first that loads:

1. ``trt``      — native TensorRT (>= 10, NVIDIA GPU): a ``.plan`` opens as it is, an ``.onnx``
   export is built once into the plan cache (``cp3rt.engines.tensorrt``),
2. ``ort-cuda`` — onnxruntime with the CUDA execution provider,
3. ``ort-cpu``  — onnxruntime on the CPU.

torch is never chosen automatically: it is the reference backend and must be asked for, and so
is ``torch-cuda`` (the fast PyTorch GPU backend, weight files only), and so is ``openvino`` (an
optional CPU backend for exported ``.onnx`` files; its bf16 arithmetic changes results). When
nothing loads, the error lists every backend with the reason it failed. Only "cannot load here"
failures move on to the next backend; a broken file or a bad setting stops at once.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from cp3rt.engines.base import Engine
from cp3rt.errors import BackendUnavailableError, ConfigError

BackendName = Literal["auto", "ort", "torch", "trt", "torch-cuda", "openvino"]
BACKENDS = ("auto", "ort", "torch", "trt", "torch-cuda", "openvino")
AUTO_ORDER = ("trt", "ort-cuda", "ort-cpu")
ONNX_SUFFIX = ".onnx"
PLAN_SUFFIXES = (".plan", ".engine")


def open_engine(
    artefact_or_weights: str | os.PathLike[str],
    backend: str = "auto",
    *,
    providers: tuple[str, ...] | str | None = None,
    device: str = "cpu",
    precision: str | None = None,
    compile: bool = False,
    cache_dir: str | os.PathLike[str] | None = None,
    **ort_options: Any,
) -> Engine:
    """Open ``artefact_or_weights`` with ``backend``.

    ``ort``/``auto`` open an exported ``.onnx`` (``providers`` and ``ort_options`` go to
    :class:`~cp3rt.engines.ort.OrtEngine`); ``torch`` opens a weight file or zoo name on
    ``device``; ``openvino`` opens an ``.onnx`` on the CPU with OpenVINO at ``precision``
    (fp32, or bf16 arithmetic); the ``threads`` option also sizes OpenVINO's and torch-on-CPU's
    thread pools; ``trt`` opens a TensorRT ``.plan`` or builds one from an ``.onnx`` export (plan
    cache); ``torch-cuda`` runs a weight file on the GPU at ``precision`` (default fp16),
    TorchInductor-compiled with ``compile`` (compiled code cached under ``cache_dir``).
    """
    if compile and backend != "torch-cuda":
        raise ConfigError(f"compile=True needs backend 'torch-cuda'; backend is {backend!r}.")
    if backend not in BACKENDS:
        raise ConfigError(f"backend is {backend!r}; allowed: {', '.join(BACKENDS)}.")
    source = os.fspath(artefact_or_weights)
    if backend in ("torch", "torch-cuda"):
        return _open_torch(backend, source, device=device, precision=precision, compile=compile,
                           cache_dir=cache_dir, threads=ort_options.get("threads"))
    if backend == "trt" or (backend == "auto" and Path(source).suffix.lower() in PLAN_SUFFIXES):
        return _open_trt(source, device)
    if Path(source).suffix.lower() != ONNX_SUFFIX:
        raise ConfigError(
            f"backend {backend!r} runs exported .onnx files and {source!r} is not one; export it "
            f"with `cp3rt export {source}` or ask for backend 'torch'."
        )
    from cp3rt.engines.ort import OrtEngine

    if backend == "ort":
        return OrtEngine(source, providers=providers or ("cpu",), **ort_options)
    if backend == "openvino":
        from cp3rt.engines.openvino import OpenVinoEngine

        return OpenVinoEngine(source, precision=precision or "fp32", threads=ort_options.get("threads"))
    if providers is not None:
        raise ConfigError("providers is set, which needs backend 'ort'; 'auto' chooses them itself.")
    return _open_auto(source, device, ort_options)


def _open_torch(backend: str, source: str, *, device: str, precision: str | None, compile: bool,
                cache_dir: str | os.PathLike[str] | None, threads: int | None = None) -> Engine:
    """A weight file or zoo name on torch (``device``) or torch-cuda (``precision``, ``compile``)."""
    if Path(source).suffix.lower() == ONNX_SUFFIX:
        raise ConfigError(
            f"backend {backend!r} runs weight files or zoo names, not the ONNX file {source}."
        )
    if backend == "torch":
        from cp3rt.engines.torch_engine import TorchEngine

        return TorchEngine(source, device=device, threads=threads)
    from cp3rt.engines.torch_cuda import TorchCudaEngine

    return TorchCudaEngine(source, precision=precision or "fp16",
                           device=device if device.startswith("cuda") else "cuda",
                           compile=compile, cache_dir=cache_dir)


def _open_auto(source: str, device: str, ort_options: dict[str, Any]) -> Engine:
    """The first backend of ``AUTO_ORDER`` that opens ``source``, or why none did."""
    from cp3rt.engines.ort import OrtEngine

    reasons: list[str] = []
    for name in AUTO_ORDER:
        try:
            if name == "trt":
                return _open_trt(source, device)
            return OrtEngine(source, providers=(name.removeprefix("ort-"),), **ort_options)
        except BackendUnavailableError as exc:
            reasons.append(f"{name}: {exc}")
    raise BackendUnavailableError(
        f"no backend can run {Path(source).name} here ({'; '.join(reasons)})."
    )


def gpu_index(device: str) -> int:
    """The GPU index in a torch-style device string: ``"cuda:1"`` -> 1; ``"cpu"``/``"cuda"`` -> 0."""
    text = str(device)
    if text.startswith("cuda:"):
        index = text.removeprefix("cuda:")
        if index.isdigit():
            return int(index)
        raise ConfigError(f"device={device!r} is not allowed; allowed: 'cuda', 'cuda:N' or 'cpu'.")
    return 0


def _open_trt(source: str, device: str = "cpu") -> Engine:
    """A TensorRT engine for a ``.plan``, or for an ``.onnx`` export via the plan cache, on the
    GPU of ``device`` (``cuda:N``; GPU 0 otherwise).

    TensorRT and the GPU are checked first, so on a machine without them the answer is
    BackendUnavailableError (``auto`` moves on) before any file is looked at.
    """
    from cp3rt.engines.tensorrt._trt import current_environment

    gpu = gpu_index(device)
    environment = current_environment(gpu)
    from cp3rt.engines.tensorrt import BuildConfig, PlanCache, TrtEngine
    from cp3rt.engines.tensorrt.builder import read_onnx_manifest

    path = Path(source)
    if path.suffix.lower() in PLAN_SUFFIXES:
        return TrtEngine(path, device=gpu)
    if path.suffix.lower() != ONNX_SUFFIX:
        raise ConfigError(
            f"backend 'trt' runs TensorRT plans or exported .onnx files and {source!r} is neither; "
            f"build a plan with `cp3rt build {source}`."
        )
    manifest, _ = read_onnx_manifest(path)
    if manifest.precision == "int8":
        # Not built or tested here yet: TensorRT plans come from fp32/fp16 graphs (auto moves on).
        raise BackendUnavailableError(
            f"{path.name} is an int8 graph, which cp3rt does not build into TensorRT plans yet; "
            "it runs on onnxruntime (backend 'ort')."
        )
    entry = PlanCache().get(path, BuildConfig(precision=manifest.precision, device=gpu), environment=environment)
    return TrtEngine(entry.plan_path, device=gpu)
