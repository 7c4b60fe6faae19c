"""Block geometry for huge images and volumes: non-overlapping cores, each read with a halo.

Every output pixel (voxel) belongs to exactly one core and is taken from that block's
segmentation. The halo (>= 2 object diameters) makes an object that crosses a core border lie
whole inside both neighbouring blocks' extended regions, so both see the same object; the
seams are then mended by matching labels where the extended regions overlap (see ``merge``).

Boxes are flat tuples of (start, stop) per axis: ``(y0, y1, x0, x1)`` for images,
``(z0, z1, y0, y1, x0, x1)`` for volumes. Block size and halo are one number for every axis
or one per axis (volumes: Z differs, objects are ``diameter / anisotropy`` planes tall).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math

from cp3rt import defaults as D
from cp3rt.errors import ConfigError


def box_slices(box: tuple[int, ...]) -> tuple[slice, ...]:
    """(a0, a1, b0, b1, ...) -> (slice(a0, a1), slice(b0, b1), ...)."""
    return tuple(slice(box[i], box[i + 1]) for i in range(0, len(box), 2))


@dataclasses.dataclass(frozen=True)
class Block:
    index: int
    core: tuple[int, ...]  # (start, stop) per axis in image pixels
    ext: tuple[int, ...]   # core + halo, clipped to the image

    @property
    def core_in_ext(self) -> tuple[slice, ...]:
        return tuple(slice(self.core[i] - self.ext[i], self.core[i + 1] - self.ext[i])
                     for i in range(0, len(self.core), 2))


def _per_axis(value: int | tuple[int, ...], ndim: int) -> tuple[int, ...]:
    return tuple(value) if isinstance(value, tuple) else (value,) * ndim


@dataclasses.dataclass(frozen=True)
class BlockGrid:
    """Blocks of ``block_size`` (the last along each axis smaller) with ``halo`` pixels around
    each; both an int (every axis) or a tuple with one value per axis of ``shape``."""

    shape: tuple[int, ...]
    block_size: int | tuple[int, ...]
    halo: int | tuple[int, ...]

    def __post_init__(self) -> None:
        n = len(self.shape)
        if n not in (2, 3):
            raise ConfigError(f"blocks are planned for 2-D or 3-D shapes, not {tuple(self.shape)}.")
        for name, value in (("block_size", self.block_size), ("halo", self.halo)):
            if isinstance(value, tuple) and len(value) != n:
                raise ConfigError(f"{name}={value!r} is not allowed; allowed: one int or {n} ints (one per axis).")
        for axis, size, halo in zip("ZYX"[-n:], self.sizes, self.halos):
            low = D.MIN_BLOCK_SIDE if axis in "YX" else 1
            name = "block_size" if axis in "YX" else "block_size_z"
            if isinstance(size, bool) or not isinstance(size, int) or size < low:
                raise ConfigError(f"{name}={size!r} is not allowed; allowed: an integer >= {low} (pixels).")
            if isinstance(halo, bool) or not isinstance(halo, int) or not 0 <= halo <= size:
                raise ConfigError(f"halo={halo!r} along {axis} is not allowed; allowed: 0..{name} ({size}) pixels.")

    @classmethod
    def for_diameter(cls, shape: tuple[int, ...], diameter: float, block_size: int = D.BLOCK_SIZE,
                     halo_diameters: float = D.BLOCK_HALO_DIAMETERS, *, block_size_z: int | None = None,
                     anisotropy: float | None = None) -> BlockGrid:
        """Halo ``ceil(halo_diameters * diameter)`` pixels; for a (Z, Y, X) shape the Z halo is
        ``ceil(halo_diameters * diameter / anisotropy)`` planes and Z blocks are ``block_size_z``
        planes (default ``BLOCK_SIZE_Z``, raised to the Z halo when that is taller)."""
        if not diameter or diameter <= 0 or not math.isfinite(diameter):
            raise ConfigError(
                f"diameter={diameter!r} is not allowed for block processing; allowed: a number > 0 "
                "(the halo around each block is sized from it)."
            )
        if halo_diameters < 2:
            raise ConfigError(f"halo_diameters={halo_diameters!r} is not allowed; allowed: >= 2.")
        shape = tuple(int(s) for s in shape)
        halo = int(math.ceil(halo_diameters * diameter))
        if len(shape) != 3:
            return cls(shape, int(block_size), halo)
        aniso = 1.0 if anisotropy is None else float(anisotropy)
        if not aniso > 0 or not math.isfinite(aniso):
            raise ConfigError(f"anisotropy={anisotropy!r} is not allowed; allowed: a number > 0.")
        halo_z = int(math.ceil(halo_diameters * diameter / aniso))
        if block_size_z is None:
            block_size_z = max(D.BLOCK_SIZE_Z, halo_z)
        elif isinstance(block_size_z, int) and not isinstance(block_size_z, bool) and block_size_z < halo_z:
            raise ConfigError(
                f"block_size_z={block_size_z} is not allowed for diameter {diameter:g} and anisotropy "
                f"{aniso:g}; allowed: >= the Z halo of {halo_z} planes (or leave it unset)."
            )
        return cls(shape, (block_size_z, int(block_size), int(block_size)), (halo_z, halo, halo))

    @property
    def sizes(self) -> tuple[int, ...]:
        return _per_axis(self.block_size, len(self.shape))

    @property
    def halos(self) -> tuple[int, ...]:
        return _per_axis(self.halo, len(self.shape))

    @property
    def seam_halos(self) -> tuple[int, ...]:
        """Halo along axes split into several blocks, 0 along the others (no neighbour there):
        what a ``FrameStore`` must keep."""
        return tuple(h if c > 1 else 0 for h, c in zip(self.halos, self.counts))

    @functools.cached_property
    def counts(self) -> tuple[int, ...]:
        return tuple(-(-s // b) for s, b in zip(self.shape, self.sizes))

    @functools.cached_property
    def blocks(self) -> tuple[Block, ...]:
        out = []
        for idx in itertools.product(*(range(c) for c in self.counts)):  # raster order
            core, ext = [], []
            for i, s, b, h in zip(idx, self.shape, self.sizes, self.halos):
                a0, a1 = i * b, min(s, (i + 1) * b)
                core += [a0, a1]
                ext += [max(0, a0 - h), min(s, a1 + h)]
            out.append(Block(len(out), tuple(core), tuple(ext)))
        return tuple(out)

    def neighbour_pairs(self) -> list[tuple[int, int]]:
        """Index pairs of blocks that touch (8-neighbourhood in 2-D, 26 in 3-D), each pair once."""
        n = len(self.counts)
        # offsets whose first non-zero step is +1: each unordered pair is visited from one side
        steps = [d for d in itertools.product((-1, 0, 1), repeat=n) if any(d) and next(filter(None, d)) > 0]
        pairs = []
        for idx in itertools.product(*(range(c) for c in self.counts)):
            for d in steps:
                other = tuple(i + di for i, di in zip(idx, d))
                if all(0 <= o < c for o, c in zip(other, self.counts)):
                    pairs.append((_ravel(idx, self.counts), _ravel(other, self.counts)))
        return pairs


def _ravel(idx: tuple[int, ...], counts: tuple[int, ...]) -> int:
    flat = 0
    for i, c in zip(idx, counts):
        flat = flat * c + i
    return flat


def intersection(a: Block, b: Block) -> tuple[int, ...] | None:
    """The box where the extended regions of ``a`` and ``b`` overlap, or None."""
    box = []
    for i in range(0, len(a.ext), 2):
        lo, hi = max(a.ext[i], b.ext[i]), min(a.ext[i + 1], b.ext[i + 1])
        if lo >= hi:
            return None
        box += [lo, hi]
    return tuple(box)
