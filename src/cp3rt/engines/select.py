"""Pick and open a backend for an artefact: explicitly, or ``auto`` in a documented order.

``auto`` tries, in this order, and takes the first that loads:

1. ``trt``      — native TensorRT (not in this cp3rt version: always reports why),
2. ``ort-cuda`` — onnxruntime with the CUDA execution provider,
3. ``ort-cpu``  — onnxruntime on the CPU.

torch is never chosen automatically: it is the reference backend and must be asked for. When
nothing loads, the error lists every backend with the reason it failed. Only "cannot load here"
failures move on to the next backend; a broken file or a bad setting stops at once.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from cp3rt.engines.base import Engine
from cp3rt.errors import BackendUnavailableError, ConfigError

BackendName = Literal["auto", "ort", "torch", "trt"]
BACKENDS = ("auto", "ort", "torch", "trt")
AUTO_ORDER = ("trt", "ort-cuda", "ort-cpu")
ONNX_SUFFIX = ".onnx"


def open_engine(
    artefact_or_weights: str | os.PathLike[str],
    backend: str = "auto",
    *,
    providers: tuple[str, ...] | str | None = None,
    device: str = "cpu",
    **ort_options: Any,
) -> Engine:
    """Open ``artefact_or_weights`` with ``backend``.

    ``ort``/``auto`` open an exported ``.onnx`` (``providers`` and ``ort_options`` go to
    :class:`~cp3rt.engines.ort.OrtEngine`); ``torch`` opens a weight file or zoo name on
    ``device``; ``trt`` is not available in this version and says so.
    """
    if backend not in BACKENDS:
        raise ConfigError(f"backend is {backend!r}; allowed: {', '.join(BACKENDS)}.")
    source = os.fspath(artefact_or_weights)
    is_onnx = Path(source).suffix.lower() == ONNX_SUFFIX
    if backend == "torch":
        if is_onnx:
            raise ConfigError(
                f"backend 'torch' runs weight files or zoo names, not the ONNX file {source}."
            )
        from cp3rt.engines.torch_engine import TorchEngine

        return TorchEngine(source, device=device)
    if backend == "trt":
        raise BackendUnavailableError(_trt_reason())
    if not is_onnx:
        raise ConfigError(
            f"backend {backend!r} runs exported .onnx files and {source!r} is not one; export it "
            f"with `cp3rt export {source}` or ask for backend 'torch'."
        )
    from cp3rt.engines.ort import OrtEngine

    if backend == "ort":
        return OrtEngine(source, providers=providers or ("cpu",), **ort_options)
    if providers is not None:
        raise ConfigError("providers is set, which needs backend 'ort'; 'auto' chooses them itself.")
    reasons: list[str] = []
    for name in AUTO_ORDER:
        try:
            if name == "trt":
                raise BackendUnavailableError(_trt_reason())
            return OrtEngine(source, providers=(name.removeprefix("ort-"),), **ort_options)
        except BackendUnavailableError as exc:
            reasons.append(f"{name}: {exc}")
    raise BackendUnavailableError(
        f"no backend can run {Path(source).name} here ({'; '.join(reasons)})."
    )


def _trt_reason() -> str:
    return (
        "the native TensorRT backend is not in this cp3rt version; use backend 'ort' with "
        "providers=('tensorrt',) where onnxruntime-gpu has TensorRT"
    )
