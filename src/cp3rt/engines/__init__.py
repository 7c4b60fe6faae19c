"""Inference engines: the Engine protocol and its backends (each imports its library lazily).

``open_engine`` is the entry point; ``OrtEngine`` and ``TorchEngine`` can be built directly.
Nothing heavy is imported here: onnxruntime loads when an ORT engine opens, torch only inside
``TorchEngine``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from cp3rt.engines.base import BaseEngine, Engine, TensorSpec
from cp3rt.manifest import EngineManifest, ShapeRange
from cp3rt.engines.select import AUTO_ORDER, BACKENDS, open_engine

if TYPE_CHECKING:  # pragma: no cover
    from cp3rt.engines.ort import OrtEngine
    from cp3rt.engines.torch_engine import TorchEngine

__all__ = [
    "AUTO_ORDER",
    "BACKENDS",
    "BaseEngine",
    "Engine",
    "EngineManifest",
    "OrtEngine",
    "ShapeRange",
    "TensorSpec",
    "TorchEngine",
    "open_engine",
]

_LAZY = {"OrtEngine": "cp3rt.engines.ort", "TorchEngine": "cp3rt.engines.torch_engine"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'cp3rt.engines' has no attribute {name!r}")
