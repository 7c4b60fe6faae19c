"""Block geometry for huge images: non-overlapping cores, each read with a halo around it.

Every output pixel belongs to exactly one core and is taken from that block's segmentation.
The halo (>= 2 object diameters) makes an object that crosses a core border lie whole inside
both neighbouring blocks' extended regions, so both see the same object; the seams are then
mended by matching labels where the extended regions overlap (see ``merge``).
"""

from __future__ import annotations

import dataclasses
import functools
import math

from cp3rt import defaults as D
from cp3rt.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Block:
    index: int
    core: tuple[int, int, int, int]  # y0, y1, x0, x1 in image pixels
    ext: tuple[int, int, int, int]   # core + halo, clipped to the image

    @property
    def core_in_ext(self) -> tuple[slice, slice]:
        y0, y1, x0, x1 = self.core
        return slice(y0 - self.ext[0], y1 - self.ext[0]), slice(x0 - self.ext[2], x1 - self.ext[2])


@dataclasses.dataclass(frozen=True)
class BlockGrid:
    """Blocks of ``block_size`` (last row/column smaller) with ``halo`` pixels around each."""

    shape: tuple[int, int]
    block_size: int
    halo: int

    def __post_init__(self) -> None:
        if isinstance(self.block_size, bool) or not isinstance(self.block_size, int) or self.block_size < 64:
            raise ConfigError(f"block_size={self.block_size!r} is not allowed; allowed: an integer >= 64 (pixels).")
        if isinstance(self.halo, bool) or not isinstance(self.halo, int) or not 0 <= self.halo <= self.block_size:
            raise ConfigError(f"halo={self.halo!r} is not allowed; allowed: 0..block_size ({self.block_size}) pixels.")

    @classmethod
    def for_diameter(cls, shape: tuple[int, int], diameter: float, block_size: int = D.BLOCK_SIZE,
                     halo_diameters: float = D.BLOCK_HALO_DIAMETERS) -> BlockGrid:
        if not diameter or diameter <= 0 or not math.isfinite(diameter):
            raise ConfigError(
                f"diameter={diameter!r} is not allowed for block processing; allowed: a number > 0 "
                "(the halo around each block is sized from it)."
            )
        if halo_diameters < 2:
            raise ConfigError(f"halo_diameters={halo_diameters!r} is not allowed; allowed: >= 2.")
        return cls(tuple(int(s) for s in shape), int(block_size), int(math.ceil(halo_diameters * diameter)))

    @functools.cached_property
    def counts(self) -> tuple[int, int]:
        return tuple(-(-s // self.block_size) for s in self.shape)  # type: ignore[return-value]

    @functools.cached_property
    def blocks(self) -> tuple[Block, ...]:
        ny, nx = self.counts
        out = []
        for j in range(ny):
            for i in range(nx):
                y0, x0 = j * self.block_size, i * self.block_size
                y1, x1 = min(self.shape[0], y0 + self.block_size), min(self.shape[1], x0 + self.block_size)
                ext = (max(0, y0 - self.halo), min(self.shape[0], y1 + self.halo),
                       max(0, x0 - self.halo), min(self.shape[1], x1 + self.halo))
                out.append(Block(len(out), (y0, y1, x0, x1), ext))
        return tuple(out)

    def neighbour_pairs(self) -> list[tuple[int, int]]:
        """Index pairs of blocks that touch (8-neighbourhood), each pair once."""
        ny, nx = self.counts
        pairs = []
        for j in range(ny):
            for i in range(nx):
                for dj, di in ((0, 1), (1, -1), (1, 0), (1, 1)):
                    jj, ii = j + dj, i + di
                    if 0 <= jj < ny and 0 <= ii < nx:
                        pairs.append((j * nx + i, jj * nx + ii))
        return pairs


def intersection(a: Block, b: Block) -> tuple[int, int, int, int] | None:
    y0, y1 = max(a.ext[0], b.ext[0]), min(a.ext[1], b.ext[1])
    x0, x1 = max(a.ext[2], b.ext[2]), min(a.ext[3], b.ext[3])
    return (y0, y1, x0, x1) if y0 < y1 and x0 < x1 else None
