"""Reference backend: the weight file run by cp3rt's own torch CPnet (eval, no grad).

torch and the export-side model code are imported inside the constructor only, so importing
``cp3rt.engines`` never pulls torch in. Use it to check other backends, never as a silent
fallback (``open_engine(backend="auto")`` does not pick it).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from cp3rt import defaults as D
from cp3rt._lazy import require
from cp3rt.engines.base import BaseEngine, TensorSpec
from cp3rt.errors import BackendUnavailableError, ConfigError, EngineError
from cp3rt.manifest import EngineManifest, ShapeRange

OUTPUTS_BY_ROLE = {"segment": ("flows", "style"), "restore": ("restored",)}
TORCH_OPSET = 0  # the manifest field means "ONNX opset"; 0 marks "not an ONNX artefact"


class TorchEngine(BaseEngine):
    """Run a Cellpose v3 weight file (zoo name or path) with torch on ``device``."""

    device_resident = True

    def __init__(self, weights: str | os.PathLike[str], *, device: str = "cpu", threads: int | None = None) -> None:
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise ConfigError(f"threads={threads!r} is not allowed; allowed: None (torch decides) or an int >= 1.")
        torch = require("torch", "the torch reference backend")
        self._torch = torch
        self._device = _device(torch, device)
        if threads is not None and self._device.type == "cpu":
            torch.set_num_threads(threads)  # process-wide: torch has one intra-op pool
        from cp3rt.models.weights import load_cpnet, read_weight_file  # needs torch: only here
        from cp3rt.zoo import resolve_weights, runtime_diameters

        path = resolve_weights(weights)
        wf = read_weight_file(path)
        role = {3: "segment", 1: "restore"}.get(wf.nout)
        if role is None:
            raise EngineError(f"{path} has {wf.nout} outputs; cp3rt runs 3 (segment) or 1 (restore).")
        diam_mean, diam_labels = runtime_diameters(weights, wf.diam_mean, wf.diam_labels, role=role)
        manifest = EngineManifest(
            role=role, source_model=os.fspath(weights), source_sha256=wf.sha256, nchan=wf.nchan,
            nout=wf.nout, diam_mean=diam_mean, diam_labels=diam_labels, precision="fp32",
            opset=TORCH_OPSET, shapes=ShapeRange(max_hw=(D.MAX_TILE_SIZE, D.MAX_TILE_SIZE)),  # torch: any tile
        )
        self._net = load_cpnet(wf).to(self._device)
        image = TensorSpec("image", "float32", (None, wf.nchan, None, None))
        if role == "segment":
            outputs = (
                TensorSpec("flows", "float32", (None, wf.nout, None, None)),
                TensorSpec("style", "float32", (None, int(wf.nbase[-1]))),
            )
        else:
            outputs = (TensorSpec("restored", "float32", (None, wf.nout, None, None)),)
        super().__init__((image,), outputs, manifest, label=path.name)
        self.backend = f"torch-{self._device.type}"
        self.path = path

    @property
    def device(self) -> Any:
        """The torch device the net runs on (the GPU-resident path keeps its tensors there)."""
        return self._device

    def infer_device(self, x: Any) -> dict[str, Any]:
        """Outputs for a (N, C, h, w) float32 tensor; they stay torch tensors on ``device``."""
        torch = self._torch
        with self._backend_errors(), torch.inference_mode():
            y, style, _ = self._net(x.to(self._device))
        out = {self._outputs[0].name: y.float()}
        if len(self._outputs) > 1:
            out["style"] = style.float()
        return out

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = self._torch.from_numpy(np.ascontiguousarray(feeds["image"]))
        return {k: v.cpu().numpy() for k, v in self.infer_device(x).items()}

    def _release(self) -> None:
        del self._net


def _device(torch: Any, device: str) -> Any:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"device is {device!r}; allowed: 'cpu', 'cuda' or 'cuda:N'.") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise BackendUnavailableError(
            f"device {device!r} was requested but torch {torch.__version__} sees no CUDA GPU here."
        )
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"device is {device!r}; allowed: 'cpu', 'cuda' or 'cuda:N'.")
    return dev
