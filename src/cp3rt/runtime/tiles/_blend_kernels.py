"""numba kernels of the tile blend (spec §3.5 step 6), with the reference's exact arithmetic.

numpy's ``acc[region] += y * mask`` builds two full-tile temporaries (the float64 product and
the upcast accumulator) per tile; these kernels do the same operations element by element,
in the same order and precision, without them, and release the GIL so that the streaming
engine's threads stitch in parallel. The numpy expressions they replace are the reference
versions in tests/runtime/test_tiling_stitch.py, compared bit for bit.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def blend_add(acc, y, mask, y0, x0):  # pragma: no cover - compiled
    """acc[:, y0:y0+h, x0:x0+w] = float32(float64(acc) + float64(y) * mask), element by element."""
    nout, th, tw = y.shape
    for c in range(nout):
        for i in range(th):
            row = acc[c, y0 + i]
            for j in range(tw):
                row[x0 + j] = np.float32(np.float64(row[x0 + j]) + np.float64(y[c, i, j]) * mask[i, j])


@numba.njit(cache=True, nogil=True)
def blend_ratio(acc, weights, y0, y1, x0, x1):  # pragma: no cover - compiled
    """float32(float64(acc) / weights) over rows y0:y1 and columns x0:x1 only (the image's crop)."""
    nout = acc.shape[0]
    out = np.empty((nout, y1 - y0, x1 - x0), dtype=np.float32)
    for c in range(nout):
        for i in range(y1 - y0):
            for j in range(x1 - x0):
                out[c, i, j] = np.float32(np.float64(acc[c, y0 + i, x0 + j]) / weights[y0 + i, x0 + j])
    return out
