"""Test-time augmentation by tile flips (spec §3.5, "Test-time augmentation").

With ``augment=True`` the tiles overlap by about half and alternate their orientation, so
every overlapping region is seen by the net in several mirror images. Tile (row j, column i)
of the grid is flipped before the net and flipped back afterwards:

* even j, odd i  -> upside down (rows reversed);
* odd j, even i  -> left-right (columns reversed);
* odd j, odd i   -> both.

Flipping a flow field also flips the sign of the flow component along the flipped axis, so on
the way back the Y-flow (output 0) is negated for upside-down tiles and the X-flow (output 1)
for left-right tiles. The reference hard-codes this to 3-output (segmentation) nets and fails
for others; cp3rt un-flips any output and negates flows only for ``nout == 3``.
"""

from __future__ import annotations

import numpy as np

FLOW_OUTPUTS = 3  # segmentation heads: (Y-flow, X-flow, cellprob)


def tile_flips(row: int, col: int) -> tuple[bool, bool]:
    """(flip_y, flip_x) for the tile in grid row ``row`` and column ``col``."""
    return bool(col % 2), bool(row % 2)


def flip_tile(tile: np.ndarray, flip_y: bool, flip_x: bool) -> np.ndarray:
    """Mirror a (..., h, w) tile; a view, no copy."""
    if flip_y:
        tile = tile[..., ::-1, :]
    if flip_x:
        tile = tile[..., ::-1]
    return tile


def unflip_output(y: np.ndarray, flip_y: bool, flip_x: bool) -> np.ndarray:
    """Undo ``flip_tile`` on a (nout, h, w) net output, negating flows for 3-output nets."""
    out = np.array(flip_tile(y, flip_y, flip_x), dtype=np.float32, copy=True)
    if y.shape[0] == FLOW_OUTPUTS:
        if flip_y:
            out[0] *= -1
        if flip_x:
            out[1] *= -1
    return out
