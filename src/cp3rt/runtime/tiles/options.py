"""``TileOptions``: how a net runs over tiles — tile side, overlap, tiles per engine call,
test-time flips.

One frozen value instead of three parameters handed down every stage signature; a
``RunConfig`` gives its own as ``RunConfig.tiles``.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from cp3rt import defaults as D
from cp3rt.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class TileOptions:
    """``tile_overlap``: fraction of a tile shared with its neighbour (``D.TILE_OVERLAP_RANGE``);
    ``batch_size``: tiles per engine call; ``augment``: flipped, half-overlapping tiles (§3.5);
    ``tile_size``: the largest tile side, the reference's ``bsize`` (a multiple of
    ``D.TILE_MULTIPLE``, >= ``D.MIN_TILE``). Fewer, larger tiles overlap less; each tile has its
    own style vector, so the masks change a little with it."""

    tile_overlap: float = D.TILE_OVERLAP
    batch_size: int = D.BATCH_SIZE
    augment: bool = False
    tile_size: int = D.TILE_SIZE

    def __post_init__(self) -> None:
        check_tile_size(self.tile_size)
        lo, hi = D.TILE_OVERLAP_RANGE
        ov = self.tile_overlap
        if isinstance(ov, bool) or not isinstance(ov, (int, float, np.floating)) or not lo <= float(ov) <= hi:
            # The reference clips inside make_tiles but counts tiles unclipped and crashes.
            raise ConfigError(f"tile_overlap={ov!r} is not allowed; allowed: {lo}..{hi}.")
        bs = self.batch_size
        if isinstance(bs, bool) or not isinstance(bs, (int, np.integer)) or bs < 1:
            raise ConfigError(f"batch_size={bs!r} is not allowed; allowed: an integer >= 1.")
        if not isinstance(self.augment, (bool, np.bool_)):
            raise ConfigError(f"augment={self.augment!r} is not allowed; allowed: True or False.")


def check_tile_size(value: object, field: str = "tile_size") -> int:
    """``value`` as a tile side, or ConfigError naming ``field``, the value and what is allowed:
    a multiple of ``D.TILE_MULTIPLE`` (padded images are, and CPnet's three poolings need 8)
    and at least ``D.MIN_TILE``."""
    if (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < D.MIN_TILE
            or value % D.TILE_MULTIPLE):
        raise ConfigError(
            f"{field}={value!r} is not allowed; allowed: a multiple of {D.TILE_MULTIPLE} >= {D.MIN_TILE}"
            f" (default {D.TILE_SIZE})."
        )
    return int(value)
