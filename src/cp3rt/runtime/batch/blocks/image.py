"""``segment_blocks``: segment an image of any size block by block into a label array.

The input is anything sliceable as (Y, X) or (C, Y, X) — a numpy array, a tifffile memmap of
a BigTIFF, a zarr array — and only one extended block per worker is read at a time. The
output is any writable (Y, X) uint32 array of the same size (zarr, BigTIFF memmap, numpy).

1. Intensities are normalised with one (low, high) pair per channel for the whole image,
   taken from a strided subsample (<= ~16 M pixels), so blocks agree on the scale; per-block
   percentiles would put seams into the intensities. A run that does not normalise, or gives
   its own ``lowhigh``, keeps that; tiled normalisation is refused (it is per neighbourhood).
2. Blocks (cores + halo >= 2 diameters, ``plan``) run through the streaming engine: a few
   blocks in flight, their tiles sharing engine batches. Each core is written with the
   block's local labels; a frame of the block's labels is kept on disk.
3. Seams are mended (``merge``) and every core is relabelled to global labels 1..N.
Peak memory: ``workers`` extended blocks and their flows, plus the label lookup tables.

The steps (``plan_job``, ``segment_block``, ``keep_block``, ``relabel_cores``) are public so
that ``cp3rt.distributed`` runs step 2 as one Dask task per block with the same arithmetic.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from cp3rt import defaults as D
from cp3rt.errors import ConfigError, InputError
from cp3rt.runtime.batch.blocks.merge import FrameStore, global_tables
from cp3rt.runtime.batch.blocks.plan import Block, BlockGrid, box_slices
from cp3rt.runtime.batch.stream import StreamConfig, stream_map
from cp3rt.runtime.config import RunConfig
from cp3rt.runtime.prep.normalize import NormalizeConfig

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
    lowhigh: Any  # the (low, high) pair(s) the blocks were normalised with; None: not normalised


def global_lowhigh(image: Any, percentiles: tuple[float, float] = D.PERCENTILES, *,
                   channels: tuple[int, int] | None = None, nchan: int | None = None,
                   ) -> tuple[tuple[float, float], ...]:
    """Per-channel (low, high) percentiles of a strided subsample of a (Y, X)/(C, Y, X) array,
    taken on the channels the net will see (after ``channels``/``nchan`` selection)."""
    from cp3rt.runtime.prep.axes import to_cyx

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


@dataclasses.dataclass(frozen=True)
class BlockJob:
    """What every block of one image shares: the geometry and the run config that carries the
    image-wide normalisation. Picklable, so Dask block tasks get it as it is."""

    grid: BlockGrid
    run: RunConfig
    lowhigh: Any  # None: the run does not normalise


def plan_job(image: Any, *, nchan: int, diameter: float, run: RunConfig, block_size: int = D.BLOCK_SIZE,
             halo_diameters: float = D.BLOCK_HALO_DIAMETERS) -> BlockJob:
    """Check ``image`` ((Y, X) or (C, Y, X)), lay out its blocks and fix its normalisation:
    the run's own where it is image-independent (none, or a given ``lowhigh``), else the
    whole image's percentiles, so that every block sees one intensity scale."""
    if len(image.shape) not in (2, 3):
        raise InputError(f"block processing takes (Y, X) or (C, Y, X) images, got shape {tuple(image.shape)}.")
    shape = tuple(int(s) for s in image.shape[-2:])
    grid = BlockGrid.for_diameter(shape, diameter, block_size, halo_diameters)
    norm = check_block_normalization(run.normalize)
    if norm is not None and norm.normalizes and norm.lowhigh is None:
        norm = dataclasses.replace(norm, lowhigh=global_lowhigh(image, norm.percentiles, channels=run.channels,
                                                                nchan=nchan))
    block_run = run.replace(diameter=float(diameter), normalize=norm,
                            channel_axis=0 if len(image.shape) == 3 else None, z_axis=None)
    return BlockJob(grid, block_run, norm.lowhigh if norm is not None and norm.normalizes else None)


def check_block_normalization(norm: NormalizeConfig | None) -> NormalizeConfig | None:
    """``norm`` if blocks can keep it; tiled normalisation is refused: each block would see its
    own neighbourhood's field, and the masks would depend on the block layout."""
    if norm is not None and norm.tile_norm_blocksize > 0:
        raise ConfigError(
            f"tile_norm_blocksize={norm.tile_norm_blocksize} (tiled normalisation) cannot run in blocks: every "
            "block would be normalised by its own neighbourhood and the masks would depend on the block layout; "
            "use tile_norm_blocksize=0 (the whole image's percentiles) or a fixed lowhigh.")
    return norm


def segment_block(runner: Any, image: Any, job: BlockJob, block: Block) -> np.ndarray:
    """Local labels of ``block``'s extended region (``runner`` is a Pipeline or a stream view)."""
    y0, y1, x0, x1 = block.ext
    tile = np.asarray(image[..., y0:y1, x0:x1])
    return runner.run(tile, run=job.run).masks.astype(np.uint32, copy=False)


def keep_block(block: Block, labels: np.ndarray, frames: FrameStore, local: Any,
               lock: threading.Lock | None = None) -> tuple[int, np.ndarray]:
    """Keep the block's frame for the seam merge and write its core's local labels into
    ``local`` (2-D or 3-D); returns (highest local label, local labels present in the core)."""
    frames.put(block, labels)
    core = labels[block.core_in_ext]
    with lock or contextlib.nullcontext():  # cores may share output chunks
        local[box_slices(block.core)] = core
    return (int(labels.max()) if labels.size else 0), np.unique(core[core > 0]).astype(np.int64)


def relabel_cores(grid: BlockGrid, tables: list[np.ndarray], local: Any, out: Any,
                  progress: Callable[[], None] | None = None) -> None:
    """Write every core of ``local`` (local labels) into ``out`` through its block's table;
    ``local`` may be ``out`` itself (relabel in place)."""
    for block, table in zip(grid.blocks, tables):
        where = box_slices(block.core)
        out[where] = table[np.asarray(local[where])]
        if progress is not None:
            progress()


def check_out(image: Any, out: Any, merge_iou: float) -> None:
    shape = tuple(int(s) for s in image.shape[-2:])
    if tuple(out.shape) != shape:
        raise InputError(f"the output has shape {tuple(out.shape)} but the image is {shape}.")
    if not 0 < merge_iou <= 1:
        raise ConfigError(f"merge_iou={merge_iou!r} is not allowed; allowed: 0 < value <= 1.")


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
    job = plan_job(image, nchan=pipeline.segment_net.nchan, diameter=diameter, run=run or pipeline.run_config,
                   block_size=block_size, halo_diameters=halo_diameters)
    check_out(image, out, merge_iou)
    grid = job.grid
    frames = FrameStore.temporary(grid.halo, scratch)
    counts = [0] * len(grid.blocks)
    present: list[np.ndarray] = [np.zeros(0, np.int64)] * len(grid.blocks)
    write_lock = threading.Lock()
    steps = Steps(2 * len(grid.blocks), progress)

    def work(view, block):
        return keep_block(block, segment_block(view, image, job, block), frames, out, write_lock)

    try:
        steps.report()  # the plan is made: the bar knows its length (and a cancel is heard) before block 1
        for block, value, error in stream_map(pipeline, grid.blocks, work, stream):
            if error is not None:
                raise error
            counts[block.index], present[block.index] = value
            steps()
        tables = global_tables(grid, counts, present, frames, merge_iou)
        relabel_cores(grid, tables, out, out, steps)
    finally:
        frames.close()
    return BlockSummary(grid.shape, len(grid.blocks), count_objects(tables), grid.halo, job.lowhigh)


def count_objects(tables: list[np.ndarray]) -> int:
    return int(max((int(t.max()) for t in tables), default=0))


class Steps:
    """Progress over the two passes (segment, relabel): ``progress(done, total)`` per step."""

    def __init__(self, total: int, progress: Callable[[int, int], None] | None) -> None:
        self.total, self.done, self._progress = total, 0, progress

    def __call__(self) -> None:
        self.done += 1
        self.report()

    def report(self) -> None:
        if self._progress is not None:
            self._progress(self.done, self.total)
