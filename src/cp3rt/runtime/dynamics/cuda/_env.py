"""Loading numba's CUDA target: the one place that imports ``numba.cuda``, and only when called.

``import cp3rt`` must not pull in the CUDA target (it looks for a driver and costs import time),
so every module of this subpackage that defines kernels is imported from ``load()`` on first use.
"""

from __future__ import annotations

import functools
from types import ModuleType

from cp3rt.errors import BackendUnavailableError

_HOW_TO = ("run the CPU dynamics (compute_masks_with) instead, or set NUMBA_ENABLE_CUDASIM=1 "
           "before the first import of numba.cuda to run the kernels in numba's simulator (slow)")


def simulator_enabled() -> bool:
    """True when numba.cuda runs kernels in its Python simulator (NUMBA_ENABLE_CUDASIM=1)."""
    try:
        from numba.cuda.core import config  # numba-cuda's own config (0.2x and later)
    except ImportError:  # older numba-cuda reads numba's
        from numba.core import config
    return bool(config.ENABLE_CUDASIM)


def _load_array_overloads() -> None:
    """Import numba-cuda's numpy-array overloads with ``np.row_stack`` present.

    numba-cuda (0.30.4 and earlier) registers an overload for ``np.row_stack`` when that module
    is first imported - at the first kernel compile - and numpy releases after 2.4 no longer
    have it (the import then fails with AttributeError). An alias of ``np.vstack`` (what
    row_stack always was) is lent for that one import and taken away again.
    """
    import numpy as np

    if hasattr(np, "row_stack"):
        return
    np.row_stack = np.vstack  # type: ignore[attr-defined]
    try:
        import numba.cuda.np.arrayobj  # noqa: F401
    finally:
        del np.row_stack  # type: ignore[attr-defined]


@functools.lru_cache(maxsize=1)
def load() -> ModuleType:
    """``numba.cuda`` once a device (or the simulator) is usable; BackendUnavailableError otherwise."""
    try:
        from numba import cuda
    except ImportError as err:
        raise BackendUnavailableError(
            f"the CUDA dynamics need numba's CUDA target (pip install numba-cuda): {err}; {_HOW_TO}."
        ) from None
    if simulator_enabled():
        return cuda
    if not cuda.is_available():
        reason = "no CUDA driver or device found"
        try:
            cuda.current_context()
        except Exception as err:  # noqa: BLE001 - the driver's reason is what the user needs
            reason = " ".join(str(err).split()).rstrip(" :.;") or reason
        raise BackendUnavailableError(f"the CUDA dynamics need an NVIDIA GPU: {reason}; {_HOW_TO}.")
    _load_array_overloads()
    return cuda
