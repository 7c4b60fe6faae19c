"""cp3rt — run Cellpose 3 restoration and segmentation nets fast, outside PyTorch.

Heavy pieces are imported on first use so that ``import cp3rt`` stays cheap and torch-free.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cp3rt._version import __version__
from cp3rt.errors import Cp3rtError

if TYPE_CHECKING:  # pragma: no cover
    from cp3rt.runtime.dynamics import compute_masks
    from cp3rt.runtime.pipeline import Pipeline, Result

__all__ = ["Cp3rtError", "Pipeline", "Result", "__version__", "compute_masks"]

_LAZY = {
    "Pipeline": "cp3rt.runtime.pipeline",
    "Result": "cp3rt.runtime.pipeline",
    "compute_masks": "cp3rt.runtime.dynamics",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'cp3rt' has no attribute {name!r}")
