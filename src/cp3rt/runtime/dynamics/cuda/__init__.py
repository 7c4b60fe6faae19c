"""2-D flow dynamics on a CUDA GPU with numba's CUDA target (numba-cuda).

Same results as ``cp3rt.runtime.dynamics.compute_masks_with`` (end points bit-identical, same
labels and numbering); see ``api.py`` for what runs on the device and what on the host.
Nothing here imports ``numba.cuda`` until ``compute_masks_cuda`` is called, and nothing in
cp3rt imports this subpackage at import time.
"""

from __future__ import annotations

from cp3rt.runtime.dynamics.cuda.api import compute_masks_cuda, end_points_cuda

__all__ = ["compute_masks_cuda", "end_points_cuda"]
