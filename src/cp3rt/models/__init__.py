"""Torch side: CPnet (reads Cellpose v3 weight files unchanged), BatchNorm folding. Imports torch.

The export to ONNX is :mod:`cp3rt.export`, one floor up. The public names are also reachable
here (``cp3rt.models.load_cpnet``), loaded on first use.
"""

from __future__ import annotations

from cp3rt._lazy import lazy_getattr

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from cp3rt.models.cpnet import CPnet
    from cp3rt.models.weights import WeightFile, load_cpnet, read_weight_file

__all__ = ["CPnet", "WeightFile", "load_cpnet", "read_weight_file"]

_LAZY = {
    "CPnet": "cp3rt.models.cpnet",
    "WeightFile": "cp3rt.models.weights",
    "load_cpnet": "cp3rt.models.weights",
    "read_weight_file": "cp3rt.models.weights",
}


__getattr__ = lazy_getattr('cp3rt.models', _LAZY)
