"""``segment_blocks``: segment an image of any size block by block into a label array.

The input is anything sliceable as (Y, X) or (C, Y, X) — a numpy array, a tifffile memmap of
a BigTIFF, a zarr array — and only one extended block per worker is read at a time. The
output is any writable (Y, X) uint32 array of the same size (zarr, BigTIFF memmap, numpy).

1. Intensities are normalised with one (low, high) pair per channel for the whole image,
   taken from a strided subsample (<= ~16 M pixels), so blocks agree on the scale; per-block
   percentiles would put seams into the intensities.
2. Blocks (cores + halo >= 2 diameters, ``plan``) run through the streaming engine: a few
   blocks in flight, their tiles sharing engine batches. Each core is written with the
   block's local labels; a frame of the block's labels is kept on disk.
3. Seams are mended (``merge``) and every core is relabelled to global labels 1..N.
Peak memory: ``workers`` extended blocks and their flows, plus the label lookup tables.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from cp3rt import defaults as D
from cp3rt.errors import ConfigError, InputError
from cp3rt.runtime.blocks.merge import FrameStore, global_tables
from cp3rt.runtime.blocks.plan import BlockGrid
from cp3rt.runtime.normalize import NormalizeConfig
from cp3rt.runtime.run_config import RunConfig
from cp3rt.runtime.stream import StreamConfig, stream_map

if TYPE_CHECKING:  # pragma: no cover
    from cp3rt.runtime.pipeline import Pipeline

SAMPLE_PIXELS = 16_000_000
FLAT_RANGE = 1e-3  # percentile range at or below which a channel counts as flat (spec 3.3)


@dataclasses.dataclass(frozen=True)
class BlockSummary:
    shape: tuple[int, int]
    n_blocks: int
    n_objects: int
    halo: int
    lowhigh: tuple[tuple[float, float], ...]


def global_lowhigh(image: Any, percentiles: tuple[float, float] = D.PERCENTILES, *,
                   channels: tuple[int, int] | None = None, nchan: int | None = None,
                   ) -> tuple[tuple[float, float], ...]:
    """Per-channel (low, high) percentiles of a strided subsample of a (Y, X)/(C, Y, X) array,
    taken on the channels the net will see (after ``channels``/``nchan`` selection)."""
    from cp3rt.runtime.axes import to_cyx

    ly, lx = image.shape[-2:]
    step = max(1, int(np.ceil(np.sqrt(ly * lx / SAMPLE_PIXELS))))
    sample = np.asarray(image[..., ::step, ::step], dtype=np.float32)
    sample = to_cyx(sample, channels=channels, channel_axis=0 if sample.ndim == 3 else None, nchan=nchan)
    pairs = []
    for c in sample:
        lo, hi = float(np.percentile(c, percentiles[0])), float(np.percentile(c, percentiles[1]))
        if hi - lo > FLAT_RANGE:
            pairs.append((lo, hi))
        elif np.ptp(c) == 0:
            # a constant channel (the zero 2nd channel of a gray image fed to a 2-channel net)
            # is left as it is by whole-image normalisation (spec 3.3): (0, 1) is the identity
            pairs.append((0.0, 1.0))
        else:  # near-flat: whole-image normalisation zeros it; a huge span maps it to ~0
            pairs.append((lo, lo + 1e30))
    return tuple(pairs)


def segment_blocks(
    pipeline: Pipeline,
    image: Any,
    out: Any,
    *,
    diameter: float,
    run: RunConfig | None = None,
    block_size: int = D.BLOCK_SIZE,
    halo_diameters: float = D.BLOCK_HALO_DIAMETERS,
    merge_iou: float = D.BLOCK_MERGE_IOU,
    stream: StreamConfig | None = None,
    progress: Callable[[int, int], None] | None = None,
    scratch: str | None = None,
) -> BlockSummary:
    """Segment ``image`` ((Y, X) or channels-first (C, Y, X)) into ``out`` ((Y, X) uint32)."""
    if len(image.shape) not in (2, 3):
        raise InputError(f"block processing takes (Y, X) or (C, Y, X) images, got shape {tuple(image.shape)}.")
    shape = tuple(int(s) for s in image.shape[-2:])
    if tuple(out.shape) != shape:
        raise InputError(f"the output has shape {tuple(out.shape)} but the image is {shape}.")
    if not 0 < merge_iou <= 1:
        raise ConfigError(f"merge_iou={merge_iou!r} is not allowed; allowed: 0 < value <= 1.")
    grid = BlockGrid.for_diameter(shape, diameter, block_size, halo_diameters)
    run = run or pipeline.run_config
    lowhigh = global_lowhigh(image, run.normalize.percentiles if run.normalize else D.PERCENTILES,
                             channels=run.channels, nchan=pipeline.segment_net.nchan)
    norm = dataclasses.replace(run.normalize or NormalizeConfig(), lowhigh=lowhigh, tile_norm_blocksize=0)
    block_run = run.replace(diameter=float(diameter), normalize=norm,
                            channel_axis=0 if len(image.shape) == 3 else None, z_axis=None)
    frames = FrameStore.temporary(grid.halo, scratch)
    counts = [0] * len(grid.blocks)
    present: list[np.ndarray] = [np.zeros(0, np.int64)] * len(grid.blocks)
    write_lock = threading.Lock()  # cores may share output chunks

    def work(view, block):
        y0, y1, x0, x1 = block.ext
        tile = np.asarray(image[..., y0:y1, x0:x1])
        labels = view.run(tile, run=block_run).masks.astype(np.uint32, copy=False)
        frames.put(block, labels)
        core = labels[block.core_in_ext]
        with write_lock:
            cy0, cy1, cx0, cx1 = block.core
            out[cy0:cy1, cx0:cx1] = core
        return int(labels.max()), np.unique(core[core > 0]).astype(np.int64)

    try:
        done = 0
        for block, value, error in stream_map(pipeline, grid.blocks, work, stream):
            if error is not None:
                raise error
            counts[block.index], present[block.index] = value
            done += 1
            if progress is not None:
                progress(done, 2 * len(grid.blocks))
        tables = global_tables(grid, counts, present, frames, merge_iou)
        n_objects = int(max((int(t.max()) for t in tables), default=0))
        for block, table in zip(grid.blocks, tables):
            y0, y1, x0, x1 = block.core
            out[y0:y1, x0:x1] = table[np.asarray(out[y0:y1, x0:x1])]
            done += 1
            if progress is not None:
                progress(done, 2 * len(grid.blocks))
    finally:
        frames.close()
    return BlockSummary(shape, len(grid.blocks), n_objects, grid.halo, lowhigh)
