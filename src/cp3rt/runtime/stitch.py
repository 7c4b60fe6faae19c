"""Blend per-tile net outputs into one image with the taper weights (spec §3.5 step 6).

The result at each pixel is ``sum(y_t * m_t) / sum(m_t)`` over the tiles covering it, with the
reference's precision: each product ``y * m`` in float64 (float32 output times float64 mask)
added into a float32 accumulator, the weights summed in float64, the ratio rounded to float32.
A grid with a single tile returns that tile unchanged (the weights cancel). Float32
accumulation is order dependent: tiles added in grid order (as ``run_tiled`` does) give results
bit-identical to the reference; any other order differs by a few ulps.
"""

from __future__ import annotations

import numpy as np

from cp3rt.runtime.tile_grid import TileGrid, taper_mask


class Stitcher:
    """Accumulates the (nout, h, w) outputs of every tile of one ``TileGrid``."""

    def __init__(self, grid: TileGrid, nout: int, *, weights: np.ndarray | None = None) -> None:
        self._grid = grid
        self._nout = int(nout)
        self._seen = np.zeros(len(grid), dtype=bool)
        self._single: np.ndarray | None = None
        if len(grid) > 1:
            self._mask = taper_mask(*grid.tile_shape)
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
        region = (slice(None), *self._grid.tiles[index].region)
        self._acc[region] += y.astype(np.float32, copy=False) * self._mask

    def result(self) -> np.ndarray:
        """(nout, *image_shape) float32 blend; every tile must have been added."""
        if not self._seen.all():
            missing = np.flatnonzero(~self._seen).tolist()
            raise ValueError(f"tiles {missing[:8]} were never added")
        ly, lx = self._grid.image_shape
        if self._single is not None:
            return self._single[:, :ly, :lx]
        ratio = (self._acc / self._weights).astype(np.float32)
        return ratio[:, :ly, :lx]
