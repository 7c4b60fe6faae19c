"""Tile geometry (spec §3.5 steps 2–3 and 6, Appendix A): padding, tile starts, taper weights.

Pure geometry: nothing here looks at pixel values except ``TileGrid.cut``, which slices them.

* ``pad_yx``: every side gets >= 8 px of zeros and the padded size is a multiple of 16
  (``16 * ceil(L / 16) + 16``), so 100 x 120 -> 128 x 144 and 224 x 224 -> 240 x 240.
* ``TileGrid.plan``: tiles of ``min(bsize, L)`` per axis, ``ceil((1 + 2 * overlap) * L / bsize)``
  of them (1 if ``L <= bsize``), starts ``int(linspace(0, L - tile, n))``, row-major order.
  With ``augment`` tiles are always ``bsize`` square, the canvas is zero-extended at the bottom
  and right to at least ``bsize``, ``n = max(2, ceil(2 * L / bsize))`` and tiles are mirrored
  (see ``cp3rt.runtime.tiles.augment``).
* ``taper_mask``: a logistic fall-off 20 px inside the edges of a ``max(224, h, w)`` square,
  cropped centrally to the tile — the blending weight of each tile.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np

from cp3rt import defaults as D
from cp3rt.errors import ConfigError
from cp3rt.runtime.tiles.augment import flip_tile, tile_flips
from cp3rt.runtime.tiles.options import check_tile_size


def _pad_1d(length: int) -> tuple[int, int]:
    extra = -(-length // D.TILE_MULTIPLE) * D.TILE_MULTIPLE - length
    return D.PAD_EXTRA + extra // 2, D.PAD_EXTRA + extra - extra // 2


def pad_yx(ly: int, lx: int) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) zero padding of an ``ly`` x ``lx`` image before tiling."""
    for field, value in (("ly", ly), ("lx", lx)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ConfigError(f"{field}={value!r} is not allowed; allowed: an integer >= 1.")
    return (*_pad_1d(int(ly)), *_pad_1d(int(lx)))


def taper_mask(ly: int, lx: int, sig: float = D.TAPER_SIGMA) -> np.ndarray:
    """float64 (ly, lx) blending weights: ~1 in the middle, ~0.005 in the corners of 224 tiles."""
    side = max(D.TAPER_MIN_SIZE, ly, lx)
    dist = np.abs(np.arange(side) - (side - 1) / 2)  # distance from the centre line
    edge = 1 / (1 + np.exp((dist - (side / 2 - D.TAPER_EDGE)) / sig))
    full = edge * edge[:, np.newaxis]
    y0, x0 = side // 2 - ly // 2, side // 2 - lx // 2
    return full[y0 : y0 + ly, x0 : x0 + lx]


@dataclasses.dataclass(frozen=True)
class Tile:
    """One tile: the region it reads/writes on the canvas and how it is mirrored for the net."""

    y0: int
    x0: int
    h: int
    w: int
    flip_y: bool = False
    flip_x: bool = False

    @property
    def region(self) -> tuple[slice, slice]:
        return slice(self.y0, self.y0 + self.h), slice(self.x0, self.x0 + self.w)


def _check_overlap(tile_overlap: float) -> float:
    lo, hi = D.TILE_OVERLAP_RANGE
    if isinstance(tile_overlap, bool) or not isinstance(tile_overlap, (int, float, np.floating)):
        raise ConfigError(f"tile_overlap={tile_overlap!r} is not allowed; allowed: {lo}..{hi}.")
    if not lo <= float(tile_overlap) <= hi:
        # The reference clips inside make_tiles but counts tiles unclipped and crashes.
        raise ConfigError(f"tile_overlap={tile_overlap!r} is not allowed; allowed: {lo}..{hi}.")
    return float(tile_overlap)


def _check_bsize(bsize: int) -> int:
    return check_tile_size(bsize, "bsize")


def _starts(length: int, tile: int, count: int) -> tuple[int, ...]:
    return tuple(int(v) for v in np.linspace(0, length - tile, count).astype(int))


@dataclasses.dataclass(frozen=True)
class TileGrid:
    """Tiles covering a padded image; ``canvas_shape`` >= ``image_shape`` (augment extends it)."""

    image_shape: tuple[int, int]
    canvas_shape: tuple[int, int]
    tile_shape: tuple[int, int]
    ystarts: tuple[int, ...]
    xstarts: tuple[int, ...]
    augment: bool = False

    @classmethod
    def plan(
        cls,
        padded_shape: tuple[int, int],
        bsize: int = D.TILE_SIZE,
        tile_overlap: float = D.TILE_OVERLAP,
        augment: bool = False,
    ) -> TileGrid:
        """Tile a padded (Y, X) image as the reference does (``make_tiles``)."""
        overlap = _check_overlap(tile_overlap)
        bsize = _check_bsize(bsize)
        ly, lx = (int(v) for v in padded_shape)
        if ly < 1 or lx < 1:
            raise ConfigError(f"padded_shape={padded_shape!r} is not allowed; allowed: >= 1 x 1.")
        if augment:
            cy, cx = max(ly, bsize), max(lx, bsize)
            ny, nx = max(2, math.ceil(2.0 * cy / bsize)), max(2, math.ceil(2.0 * cx / bsize))
            th, tw = bsize, bsize
        else:
            cy, cx = ly, lx
            th, tw = min(bsize, ly), min(bsize, lx)
            ny = 1 if ly <= bsize else math.ceil((1.0 + 2 * overlap) * ly / bsize)
            nx = 1 if lx <= bsize else math.ceil((1.0 + 2 * overlap) * lx / bsize)
        return cls(
            image_shape=(ly, lx),
            canvas_shape=(cy, cx),
            tile_shape=(th, tw),
            ystarts=_starts(cy, th, ny),
            xstarts=_starts(cx, tw, nx),
            augment=bool(augment),
        )

    @functools.cached_property
    def tiles(self) -> tuple[Tile, ...]:
        """All tiles, row-major (all columns of the first row of tiles first)."""
        th, tw = self.tile_shape
        out = []
        for j, y0 in enumerate(self.ystarts):
            for i, x0 in enumerate(self.xstarts):
                fy, fx = tile_flips(j, i) if self.augment else (False, False)
                out.append(Tile(y0, x0, th, tw, fy, fx))
        return tuple(out)

    def __len__(self) -> int:
        return len(self.ystarts) * len(self.xstarts)

    def cut(self, canvas: np.ndarray, index: int) -> np.ndarray:
        """The (C, h, w) input of tile ``index`` from a (C, *canvas_shape) array, mirrored."""
        tile = self.tiles[index]
        return flip_tile(canvas[(slice(None), *tile.region)], tile.flip_y, tile.flip_x)

    def weights(self) -> np.ndarray:
        """float64 canvas of summed taper masks, accumulated in tile order (read-only: shared by
        every image with the same grid, as a folder of equally sized images has)."""
        return _grid_weights(self)


@functools.lru_cache(maxsize=8)
def _grid_weights(grid: TileGrid) -> np.ndarray:
    total = np.zeros(grid.canvas_shape, dtype=np.float64)
    mask = taper_mask(*grid.tile_shape)
    for tile in grid.tiles:
        total[tile.region] += mask
    total.setflags(write=False)
    return total
