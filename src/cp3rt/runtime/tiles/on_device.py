"""Tiles on a torch device: pad, cut a canvas into one batch, run a net, blend the outputs (§3.5).

The device counterpart of ``tiles.infer.run_tiled`` (no augment). The geometry is the host's
(``tiles.grid``: padding, ``TileGrid``, taper mask); only the pixels stay on the device. The blend repeats the host's arithmetic operation for operation —
``acc = float32(float64(acc) + float64(y) * mask)`` tile after tile in grid order, then
``float32(float64(acc) / weights)`` — so it is bit-identical to ``tiles.blend.Stitcher``.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from cp3rt.runtime.tiles.grid import TileGrid, pad_yx, taper_mask
from cp3rt.runtime.tiles.infer import image_style
from cp3rt.runtime.tiles.options import TileOptions


def pad_canvas(image: Any, grid_bsize: int, tile_overlap: float) -> tuple[Any, TileGrid, tuple[int, int, int, int]]:
    """Zero-pad a (C, Y, X) tensor as the host does; (canvas, grid, (top, bottom, left, right))."""
    torch = _torch()
    _, ly, lx = image.shape
    top, bottom, left, right = pad_yx(ly, lx)
    grid = TileGrid.plan((ly + top + bottom, lx + left + right), grid_bsize, tile_overlap, False)
    canvas = torch.nn.functional.pad(image, (left, right, top, bottom))
    return canvas, grid, (top, bottom, left, right)


def cut_tiles(canvas: Any, grid: TileGrid) -> Any:
    """(N, C, h, w): every tile of ``grid`` in grid order (no augment: no flips)."""
    return _torch().stack([canvas[(slice(None), *tile.region)] for tile in grid.tiles])


def blend_tiles(outputs: Any, grid: TileGrid, box: tuple[int, int, int, int]) -> Any:
    """(nout, y1 - y0, x1 - x0) float32 blend of (N, nout, h, w) tile outputs, cropped to box."""
    y0, y1, x0, x1 = box
    if len(grid) == 1:  # the weights cancel: the host returns the single tile unchanged
        return outputs[0, :, y0:y1, x0:x1].float().clone()
    torch = _torch()
    mask, weights = _masks_on(grid, outputs.device)
    acc = torch.zeros((outputs.shape[1], *grid.canvas_shape), dtype=torch.float32, device=outputs.device)
    for k, tile in enumerate(grid.tiles):
        region = acc[(slice(None), *tile.region)]
        region.copy_((region.double() + outputs[k].double() * mask).float())
    return (acc[:, y0:y1, x0:x1].double() / weights[y0:y1, x0:x1]).float()


def net_over_tiles(x: Any, engine: Any, out_name: str, tiles: TileOptions) -> tuple[Any, np.ndarray | None]:
    """(C, Y, X) tensor -> ((nout, Y, X) blended tensor, style or None); ``tiles.augment`` must
    be off (the device path refuses it before it gets here).

    Tiles go to ``engine.infer_device`` in the host path's chunks of ``tiles.batch_size``: an
    engine whose arithmetic depends on the batch (torch on a CPU) then gives the host path's
    bits, and a huge image never becomes one huge batch.
    """
    torch = _torch()
    _, ly, lx = x.shape
    canvas, grid, (top, _, left, _) = pad_canvas(x, tiles.tile_size, tiles.tile_overlap)
    cut = cut_tiles(canvas, grid)
    bs = tiles.batch_size
    parts = [engine.infer_device(cut[i:i + bs].contiguous()) for i in range(0, len(cut), bs)]
    out = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
    y = blend_tiles(out[out_name], grid, (top, top + ly, left, left + lx))
    style = None
    if "style" in out:  # the host's image style of the tile styles
        style = image_style(out["style"].cpu().numpy().astype(np.float32))
    return y, style


def _masks_on(grid: TileGrid, device: Any) -> tuple[Any, Any]:
    return _cached_masks(grid, str(device))


@functools.lru_cache(maxsize=16)
def _cached_masks(grid: TileGrid, device: str) -> tuple[Any, Any]:
    """The float64 taper mask and weight canvas of a grid, uploaded once per grid and device."""
    torch = _torch()
    mask = torch.from_numpy(np.ascontiguousarray(taper_mask(*grid.tile_shape))).to(device)
    weights = torch.from_numpy(np.array(grid.weights())).to(device)
    return mask, weights


def _torch() -> Any:
    import torch

    return torch
