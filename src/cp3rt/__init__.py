"""cp3rt — run Cellpose 3 restoration and segmentation nets fast, outside PyTorch.

Heavy pieces are imported on first use so that ``import cp3rt`` stays cheap and torch-free.
"""

from __future__ import annotations

from cp3rt._lazy import lazy_getattr

from typing import TYPE_CHECKING

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


__getattr__ = lazy_getattr('cp3rt', _LAZY)
