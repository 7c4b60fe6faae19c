"""Run a net over an image tile by tile (spec §3.5): pad -> tile -> batch -> infer -> stitch -> crop.

``run_tiled`` takes one normalised (and already resized) float32 (C, Y, X) image and any
``infer`` function with the engines' calling convention::

    infer(batch: float32 (B, C, h, w)) -> (y: (B, nout, h, w), style: (B, 256) or None)

and returns the blended (nout, Y, X) float32 output plus the image's style vector (the sum of
the tile styles divided by its L2 norm, float32, no epsilon — as the reference).

``run_tiled_stack`` does the same for a (Z, C, Y, X) stack of equally sized planes and batches
like the reference's ``run_net``: ``max(1, batch_size // ntiles)`` planes at a time, their tiles
concatenated and sent in chunks of ``batch_size``. Overlap, batch size and augmentation come as
one ``TileOptions`` value (``tiles.options``). Batch composition never changes results
(BatchNorm runs in inference mode); it only matters for throughput.

The geometry (``pad_yx``, ``Tile``, ``TileGrid``, ``taper_mask``) lives in ``tiles.grid``, the
blending (``Stitcher``) in ``tiles.blend``.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterator

import numpy as np

from cp3rt.errors import ConfigError, EngineError, InputError
from cp3rt.runtime.tiles.augment import unflip_output
from cp3rt.runtime.tiles.blend import Stitcher
from cp3rt.runtime.tiles.grid import TileGrid, pad_yx
from cp3rt.runtime.tiles.options import TileOptions

__all__ = ["DEFAULT_TILES", "InferFn", "ProgressFn", "TileOptions", "image_style", "run_tiled", "run_tiled_stack"]

# An InferFn may carry ``many(batches) -> results`` (same order) for engines that keep a batch
# in flight while the next is staged (TensorRT, torch-CUDA); plain calls are used otherwise.
InferFn = Callable[[np.ndarray], tuple[np.ndarray, "np.ndarray | None"]]
ProgressFn = Callable[[int, int], None]  # (tiles done, tiles in total)
DEFAULT_TILES = TileOptions()


def run_tiled(
    image_cyx: np.ndarray,
    infer: InferFn,
    *,
    nout: int,
    bsize: int | None = None,
    tiles: TileOptions = DEFAULT_TILES,
    progress: ProgressFn | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """One (C, Y, X) image -> ((nout, Y, X) float32, (S,) float32 style or None).

    S is the net's style width (256 for every Cellpose zoo net; nbase[-1] in general).
    """
    image = np.asarray(image_cyx)
    if image.ndim != 3:
        raise InputError(f"run_tiled expects a (C, Y, X) image, got shape {image.shape}.")
    out, styles = run_tiled_stack(image[np.newaxis], infer, nout=nout, bsize=bsize, tiles=tiles, progress=progress)
    return out[0], (None if styles is None else styles[0])


def run_tiled_stack(
    stack: np.ndarray,
    infer: InferFn,
    *,
    nout: int,
    bsize: int | None = None,
    tiles: TileOptions = DEFAULT_TILES,
    progress: ProgressFn | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """(Z, C, Y, X) planes -> ((Z, nout, Y, X) float32, (Z, S) float32 styles or None).

    ``bsize`` (the tile side) overrides ``tiles.tile_size`` when given."""
    stack = np.asarray(stack, dtype=np.float32)
    if stack.ndim != 4 or 0 in stack.shape:
        raise InputError(f"run_tiled_stack expects a (Z, C, Y, X) stack, got shape {stack.shape}.")
    if isinstance(nout, bool) or not isinstance(nout, (int, np.integer)) or nout < 1:
        raise ConfigError(f"nout={nout!r} is not allowed; allowed: an integer >= 1.")
    nz, _, ly, lx = stack.shape
    top, bottom, left, right = pad_yx(ly, lx)
    side = tiles.tile_size if bsize is None else bsize
    grid = TileGrid.plan((ly + top + bottom, lx + left + right), side, tiles.tile_overlap, tiles.augment)
    # Zeros for the padding plus, with augment, the extension of the canvas to >= bsize.
    pads = (
        (0, 0),
        (top, bottom + grid.canvas_shape[0] - grid.image_shape[0]),
        (left, right + grid.canvas_shape[1] - grid.image_shape[1]),
    )
    planes = _Planes(nz, nout, grid, (top, top + ly, left, left + lx), tiles.augment)
    pending: collections.deque[list[tuple[int, int]]] = collections.deque()
    done, total = 0, nz * len(grid)
    many = getattr(infer, "many", None) or (lambda bs: map(infer, bs))
    for result in many(_batches(stack, grid, pads, tiles.batch_size, pending)):
        chunk = pending.popleft()
        y, style = _checked(result, len(chunk), nout, grid.tile_shape)
        planes.add(chunk, y, style)
        done += len(chunk)
        if progress is not None:
            progress(done, total)
    return planes.result()


def _batches(stack: np.ndarray, grid: TileGrid, pads: tuple[tuple[int, int], ...], batch_size: int,
             pending: collections.deque[list[tuple[int, int]]]) -> Iterator[np.ndarray]:
    """Tile batches of ``batch_size`` (the last may be short), ``max(1, batch_size // ntiles)``
    planes at a time as the reference's ``run_net``; each batch's (plane, tile) list goes to
    ``pending``. Cut lazily: an engine that pipelines (``infer.many``) asks for the next batch
    while the previous one runs, so ``pending`` may hold a batch or two ahead of the results."""
    nz, ntiles = len(stack), len(grid)
    per_group = max(1, batch_size // ntiles)
    for g0 in range(0, nz, per_group):
        group = range(g0, min(nz, g0 + per_group))
        canvases = {z: np.pad(stack[z], pads) for z in group}
        jobs = [(z, k) for z in group for k in range(ntiles)]
        for b0 in range(0, len(jobs), batch_size):
            chunk = jobs[b0 : b0 + batch_size]
            pending.append(chunk)
            yield np.stack([grid.cut(canvases[z], k) for z, k in chunk])


class _Planes:
    """The planes' outputs, blended as tile results arrive; a plane is cropped to ``box`` (and
    its accumulators freed) when its last tile is in. The style width comes from the engine
    (nbase[-1]): cp3rt's compact starter nets are narrower than 256."""

    def __init__(self, nz: int, nout: int, grid: TileGrid, box: tuple[int, int, int, int], augment: bool) -> None:
        self.grid, self.nout, self.box, self.augment = grid, nout, box, augment
        self.weights = grid.weights() if len(grid) > 1 else None
        self.out = np.empty((nz, nout, box[1] - box[0], box[3] - box[2]), dtype=np.float32)
        self.styles: np.ndarray | None = None
        self.has_style: bool | None = None
        self._stitchers: dict[int, Stitcher] = {}
        self._tile_styles: dict[int, np.ndarray] = {}
        self._added: dict[int, int] = {}

    def add(self, chunk: list[tuple[int, int]], y: np.ndarray, style: np.ndarray | None) -> None:
        self._check_style(style)
        for n, (z, k) in enumerate(chunk):
            self._add_tile(z, k, y[n], None if style is None else style[n])

    def result(self) -> tuple[np.ndarray, np.ndarray | None]:
        return self.out, (self.styles if self.has_style else None)

    def _check_style(self, style: np.ndarray | None) -> None:
        if self.has_style is None:
            self.has_style = style is not None
        elif self.has_style != (style is not None):
            raise EngineError("infer returned a style vector for some batches but not others.")
        if style is not None:
            if self.styles is None:
                self.styles = np.empty((len(self.out), style.shape[1]), dtype=np.float32)
            elif style.shape[1] != self.styles.shape[1]:
                raise EngineError(f"infer returned styles of width {style.shape[1]} after {self.styles.shape[1]}.")

    def _add_tile(self, z: int, k: int, yk: np.ndarray, style_k: np.ndarray | None) -> None:
        ntiles = len(self.grid)
        if self.augment:
            tile = self.grid.tiles[k]
            yk = unflip_output(yk, tile.flip_y, tile.flip_x)
        if z not in self._stitchers:
            self._stitchers[z] = Stitcher(self.grid, self.nout, weights=self.weights)
        self._stitchers[z].add(k, yk)
        if style_k is not None:
            if z not in self._tile_styles:
                self._tile_styles[z] = np.zeros((ntiles, len(style_k)), dtype=np.float32)
            self._tile_styles[z][k] = style_k
        self._added[z] = self._added.get(z, 0) + 1
        if self._added[z] == ntiles:  # plane complete: crop it out and free its accumulators
            self.out[z] = self._stitchers.pop(z).result(self.box)
            if style_k is not None and self.styles is not None:
                self.styles[z] = image_style(self._tile_styles.pop(z))


def image_style(tile_styles: np.ndarray) -> np.ndarray:
    """(ntiles, S) float32 tile styles -> the image's (S,) style: their sum over its L2 norm,
    float32, no epsilon (reference §3.5 step 8). ``tiles.on_device`` uses it too."""
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
