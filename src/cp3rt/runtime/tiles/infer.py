"""Run a net over an image tile by tile (spec §3.5): pad -> tile -> batch -> infer -> stitch -> crop.

``run_tiled`` takes one normalised (and already resized) float32 (C, Y, X) image and any
``infer`` function with the engines' calling convention::

    infer(batch: float32 (B, C, h, w)) -> (y: (B, nout, h, w), style: (B, 256) or None)

and returns the blended (nout, Y, X) float32 output plus the image's style vector (the sum of
the tile styles divided by its L2 norm, float32, no epsilon — as the reference).

``run_tiled_stack`` does the same for a (Z, C, Y, X) stack of equally sized planes and batches
like the reference's ``run_net``: ``max(1, batch_size // ntiles)`` planes at a time, their tiles
concatenated and sent in chunks of ``batch_size``. Batch composition never changes results
(BatchNorm runs in inference mode); it only matters for throughput.

The geometry (``pad_yx``, ``Tile``, ``TileGrid``, ``taper_mask``) lives in ``tiles.grid``, the
blending (``Stitcher``) in ``tiles.blend``.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterator

import numpy as np

from cp3rt import defaults as D
from cp3rt.errors import ConfigError, EngineError, InputError
from cp3rt.runtime.tiles.augment import unflip_output
from cp3rt.runtime.tiles.blend import Stitcher
from cp3rt.runtime.tiles.grid import TileGrid, pad_yx

__all__ = ["InferFn", "ProgressFn", "run_tiled", "run_tiled_stack"]

# An InferFn may carry ``many(batches) -> results`` (same order) for engines that keep a batch
# in flight while the next is staged (TensorRT, torch-CUDA); plain calls are used otherwise.
InferFn = Callable[[np.ndarray], tuple[np.ndarray, "np.ndarray | None"]]
ProgressFn = Callable[[int, int], None]  # (tiles done, tiles in total)


def run_tiled(
    image_cyx: np.ndarray,
    infer: InferFn,
    *,
    nout: int,
    bsize: int = D.TILE_SIZE,
    tile_overlap: float = D.TILE_OVERLAP,
    augment: bool = False,
    batch_size: int = D.BATCH_SIZE,
    progress: ProgressFn | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """One (C, Y, X) image -> ((nout, Y, X) float32, (S,) float32 style or None).

    S is the net's style width (256 for every Cellpose zoo net; nbase[-1] in general).
    """
    image = np.asarray(image_cyx)
    if image.ndim != 3:
        raise InputError(f"run_tiled expects a (C, Y, X) image, got shape {image.shape}.")
    out, styles = run_tiled_stack(
        image[np.newaxis], infer, nout=nout, bsize=bsize, tile_overlap=tile_overlap,
        augment=augment, batch_size=batch_size, progress=progress,
    )
    return out[0], (None if styles is None else styles[0])


def run_tiled_stack(
    stack: np.ndarray,
    infer: InferFn,
    *,
    nout: int,
    bsize: int = D.TILE_SIZE,
    tile_overlap: float = D.TILE_OVERLAP,
    augment: bool = False,
    batch_size: int = D.BATCH_SIZE,
    progress: ProgressFn | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """(Z, C, Y, X) planes -> ((Z, nout, Y, X) float32, (Z, S) float32 styles or None)."""
    stack = np.asarray(stack, dtype=np.float32)
    if stack.ndim != 4 or 0 in stack.shape:
        raise InputError(f"run_tiled_stack expects a (Z, C, Y, X) stack, got shape {stack.shape}.")
    for field, value in (("nout", nout), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ConfigError(f"{field}={value!r} is not allowed; allowed: an integer >= 1.")
    nz, _, ly, lx = stack.shape
    top, bottom, left, right = pad_yx(ly, lx)
    grid = TileGrid.plan((ly + top + bottom, lx + left + right), bsize, tile_overlap, augment)
    # Zeros for the padding plus, with augment, the extension of the canvas to >= bsize.
    pads = (
        (0, 0),
        (top, bottom + grid.canvas_shape[0] - grid.image_shape[0]),
        (left, right + grid.canvas_shape[1] - grid.image_shape[1]),
    )
    ntiles = len(grid)
    weights = grid.weights() if ntiles > 1 else None
    out = np.empty((nz, nout, ly, lx), dtype=np.float32)
    # Style width comes from the engine (nbase[-1]): cp3rt's compact starter nets are narrower.
    styles: np.ndarray | None = None
    has_style: bool | None = None
    per_group = max(1, batch_size // ntiles)
    pending: collections.deque[list[tuple[int, int]]] = collections.deque()

    def batches() -> Iterator[np.ndarray]:
        # Cut lazily: an engine that pipelines (``infer.many``) asks for the next batch while
        # the previous one runs, so ``pending`` may hold a batch or two ahead of the results.
        for g0 in range(0, nz, per_group):
            planes = range(g0, min(nz, g0 + per_group))
            canvases = {z: np.pad(stack[z], pads) for z in planes}
            jobs = [(z, k) for z in planes for k in range(ntiles)]
            for b0 in range(0, len(jobs), batch_size):
                chunk = jobs[b0 : b0 + batch_size]
                pending.append(chunk)
                yield np.stack([grid.cut(canvases[z], k) for z, k in chunk])

    stitchers: dict[int, Stitcher] = {}
    tile_styles: dict[int, np.ndarray] = {}
    added: dict[int, int] = {}
    done, total = 0, nz * ntiles
    many = getattr(infer, "many", None) or (lambda bs: map(infer, bs))
    for result in many(batches()):
        chunk = pending.popleft()
        y, style = _checked(result, len(chunk), nout, grid.tile_shape)
        if has_style is None:
            has_style = style is not None
        elif has_style != (style is not None):
            raise EngineError("infer returned a style vector for some batches but not others.")
        if style is not None:
            if styles is None:
                styles = np.empty((nz, style.shape[1]), dtype=np.float32)
            elif style.shape[1] != styles.shape[1]:
                raise EngineError(f"infer returned styles of width {style.shape[1]} after {styles.shape[1]}.")
        for n, (z, k) in enumerate(chunk):
            tile = grid.tiles[k]
            yk = unflip_output(y[n], tile.flip_y, tile.flip_x) if augment else y[n]
            if z not in stitchers:
                stitchers[z] = Stitcher(grid, nout, weights=weights)
            stitchers[z].add(k, yk)
            if style is not None:
                if z not in tile_styles:
                    tile_styles[z] = np.zeros((ntiles, style.shape[1]), dtype=np.float32)
                tile_styles[z][k] = style[n]
            added[z] = added.get(z, 0) + 1
            if added[z] == ntiles:  # plane complete: crop it out and free its accumulators
                out[z] = stitchers.pop(z).result((top, top + ly, left, left + lx))
                if style is not None and styles is not None:
                    styles[z] = _image_style(tile_styles.pop(z))
        done += len(chunk)
        if progress is not None:
            progress(done, total)
    return out, (styles if has_style else None)


def _image_style(tile_styles: np.ndarray) -> np.ndarray:
    """Sum of the tile styles over its L2 norm, float32, no epsilon (reference §3.5 step 8)."""
    total = tile_styles.sum(axis=0)
    total /= (total**2).sum() ** 0.5
    return total


def _checked(result, batch: int, nout: int, tile_shape: tuple[int, int]):
    """Validate what ``infer`` returned; a wrong shape is an engine/adapter bug worth naming."""
    try:
        y, style = result
    except (TypeError, ValueError):
        raise EngineError("infer must return a pair (y, style); style may be None.") from None
    y = np.asarray(y, dtype=np.float32)
    want = (batch, nout, *tile_shape)
    if y.shape != want:
        raise EngineError(f"infer returned outputs of shape {y.shape}; expected {want}.")
    if style is not None:
        style = np.asarray(style, dtype=np.float32)
        if style.ndim != 2 or style.shape[0] != batch or style.shape[1] < 1:
            raise EngineError(
                f"infer returned styles of shape {style.shape}; expected ({batch}, style width)."
            )
    return y, style
