"""``TileOptions``: how a net runs over tiles — overlap, tiles per engine call, test-time flips.

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
    ``batch_size``: tiles per engine call; ``augment``: flipped, half-overlapping tiles (§3.5)."""

    tile_overlap: float = D.TILE_OVERLAP
    batch_size: int = D.BATCH_SIZE
    augment: bool = False

    def __post_init__(self) -> None:
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
