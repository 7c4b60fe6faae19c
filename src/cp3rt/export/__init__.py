"""Export: a Cellpose v3 weight file -> a single-file ONNX artefact (fp32, or fp16 in the graph)
with its manifest, and back (a weight file recovered from cp3rt's own export). Imports torch.

``models/`` is the net (CPnet, its weight files, BatchNorm folding); ``export/`` turns it into an
artefact: ``to_onnx`` (``export_onnx``: trace, fp16 conversion, ONNX check, verification against
torch, manifest), ``fp16`` (the fp16 graph rewrite), ``from_onnx`` (the inverse, for shipped
artefacts whose weight file is not at hand), ``_trace`` / ``_verify`` (their shared steps).
The public names are reachable here (``cp3rt.export.export_onnx``), loaded on first use.
"""

from __future__ import annotations

from cp3rt._lazy import lazy_getattr

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from cp3rt.export.from_onnx import recover_cpnet, recover_weight_file
    from cp3rt.export.to_onnx import ExportResult, export_onnx

__all__ = ["ExportResult", "export_onnx", "recover_cpnet", "recover_weight_file"]

_LAZY = {
    "ExportResult": "cp3rt.export.to_onnx",
    "export_onnx": "cp3rt.export.to_onnx",
    "recover_cpnet": "cp3rt.export.from_onnx",
    "recover_weight_file": "cp3rt.export.from_onnx",
}


__getattr__ = lazy_getattr('cp3rt.export', _LAZY)
