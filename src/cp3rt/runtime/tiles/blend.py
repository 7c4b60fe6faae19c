"""Blend per-tile net outputs into one image with the taper weights (spec §3.5 step 6).

The result at each pixel is ``sum(y_t * m_t) / sum(m_t)`` over the tiles covering it, with the
reference's precision: each product ``y * m`` in float64 (float32 output times float64 mask)
added into a float32 accumulator, the weights summed in float64, the ratio rounded to float32.
A grid with a single tile returns that tile unchanged (the weights cancel). Float32
accumulation is order dependent: tiles added in grid order (as ``run_tiled`` does) give results
bit-identical to the reference; any other order differs by a few ulps. The arithmetic runs in
numba kernels (``tiles._blend_kernels``) that skip numpy's full-tile temporaries and release the GIL.
"""

from __future__ import annotations

import numpy as np

from cp3rt.runtime.tiles._blend_kernels import blend_add, blend_ratio
from cp3rt.runtime.tiles.grid import TileGrid, taper_mask


class Stitcher:
    """Accumulates the (nout, h, w) outputs of every tile of one ``TileGrid``."""

    def __init__(self, grid: TileGrid, nout: int, *, weights: np.ndarray | None = None) -> None:
        self._grid = grid
        self._nout = int(nout)
        self._seen = np.zeros(len(grid), dtype=bool)
        self._single: np.ndarray | None = None
        if len(grid) > 1:
            self._mask = np.ascontiguousarray(taper_mask(*grid.tile_shape))
            self._acc = np.zeros((self._nout, *grid.canvas_shape), dtype=np.float32)
            # The weight sum depends only on the grid: callers stitching many planes share it.
            self._weights = grid.weights() if weights is None else weights

    def add(self, index: int, y: np.ndarray) -> None:
        """Add tile ``index``'s output, already in image orientation (un-flipped)."""
        th, tw = self._grid.tile_shape
        if y.shape != (self._nout, th, tw):
            raise ValueError(f"tile output shape {y.shape} != {(self._nout, th, tw)}")
        if self._seen[index]:
            raise ValueError(f"tile {index} was added twice")
        self._seen[index] = True
        if len(self._grid) == 1:
            self._single = np.array(y, dtype=np.float32, copy=True)
            return
        tile = self._grid.tiles[index]
        blend_add(self._acc, np.ascontiguousarray(y, dtype=np.float32), self._mask, tile.y0, tile.x0)

    def result(self, box: tuple[int, int, int, int] | None = None) -> np.ndarray:
        """(nout, *image_shape) float32 blend, or only rows y0:y1 and columns x0:x1 of the image
        for ``box=(y0, y1, x0, x1)``; every tile must have been added."""
        if not self._seen.all():
            missing = np.flatnonzero(~self._seen).tolist()
            raise ValueError(f"tiles {missing[:8]} were never added")
        ly, lx = self._grid.image_shape
        y0, y1, x0, x1 = (0, ly, 0, lx) if box is None else box
        if not (0 <= y0 <= y1 <= ly and 0 <= x0 <= x1 <= lx):
            raise ValueError(f"box {box} is not inside the image {ly}x{lx}")
        if self._single is not None:
            return self._single[:, y0:y1, x0:x1]
        return blend_ratio(self._acc, self._weights, y0, y1, x0, x1)
