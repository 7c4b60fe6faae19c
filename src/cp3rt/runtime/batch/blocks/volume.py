"""``segment_volume_blocks``: segment a volume of any size block by block (issue 7).

The input is anything sliceable as (Z, Y, X) or (Z, C, Y, X) — a numpy array, a tifffile
memmap, a zarr array, a ``VolumeView`` — and only one extended block is read at a time. The
output is any writable (Z, Y, X) uint32 array of the same size. Same scheme as the 2-D
``segment_blocks``:

1. One (low, high) per channel for the whole volume, from a strided subsample (<= ~16 M
   voxels, planes spread over Z), so blocks agree on the intensity scale. A ``lowhigh`` given
   in ``run.normalize`` is kept, as is no normalisation; tiled normalisation is refused.
   Stitched volumes (``stitch_threshold``) are therefore normalised over the whole volume, as
   ``norm3D=True`` does in one piece.
2. Blocks (cores + halo >= 2 diameters; in Z ``2 * diameter / anisotropy`` planes, objects
   being that many planes tall) go one after another through ``pipeline.run`` with ``do_3D``
   or stitching: the net already batches the planes of a block's three views, so running
   blocks side by side would only multiply the memory. Each core is written with the block's
   local labels; a frame of the block's labels is kept on disk.
3. Seams are mended (``merge``, 26-neighbourhood) and every core is relabelled to 1..N.

With ``sampling_3d="exact"`` (the default here, see ``segment_volume_blocks``) the blocks give
the one-piece masks up to float32 rounding of positions (AP@0.9 >= 0.99 in the tests).

Peak memory: one extended block through the 3-D pipeline, about 60 bytes per voxel at the
net's scale (``rescale**3 * anisotropy`` times the block's voxels), plus the label lookup
tables. ``min_size`` and ``max_size_fraction`` act per block (objects cut by a block's outer
edge never reach its core, so ``min_size`` changes nothing there; ``max_size_fraction`` is a
fraction of the block, not of the volume).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from cp3rt import defaults as D
from cp3rt.errors import ConfigError, InputError
from cp3rt.runtime.batch.blocks.image import (SAMPLE_PIXELS, Steps, check_block_normalization, count_objects,
                                              global_lowhigh, keep_block, relabel_cores)
from cp3rt.runtime.batch.blocks.merge import FrameStore, global_tables
from cp3rt.runtime.batch.blocks.plan import BlockGrid
from cp3rt.runtime.config import RunConfig

if TYPE_CHECKING:  # pragma: no cover
    from cp3rt.runtime.pipeline import Pipeline

MIN_SAMPLE_PLANES = 16  # the subsample spreads over at least this many planes (when Z has them)


@dataclasses.dataclass(frozen=True)
class VolumeBlockSummary:
    shape: tuple[int, int, int]
    n_blocks: int
    n_objects: int
    halo: tuple[int, ...]        # Z, Y, X halo in voxels (a 3-D BlockGrid's halos)
    block_size: tuple[int, ...]  # Z, Y, X core size in voxels (its sizes)
    lowhigh: Any  # the (low, high) pair(s) the blocks were normalised with; None: not normalised


def volume_lowhigh(volume: Any, percentiles: tuple[float, float] = D.PERCENTILES, *,
                   channels: tuple[int, int] | None = None, nchan: int | None = None,
                   ) -> tuple[tuple[float, float], ...]:
    """Per-channel (low, high) of a strided subsample of a (Z, Y, X) / (Z, C, Y, X) volume,
    on the channels the net will see; same rules as ``global_lowhigh`` for flat channels."""
    lz, ly, lx = (int(s) for s in (volume.shape[0], *volume.shape[-2:]))
    ratio = lz * ly * lx / SAMPLE_PIXELS
    sz = max(1, min(math.ceil(ratio ** (1 / 3)), lz // min(lz, MIN_SAMPLE_PLANES)))
    nz = len(range(0, lz, sz))
    syx = max(1, math.ceil(math.sqrt(nz * ly * lx / SAMPLE_PIXELS)))
    sample = np.asarray(volume[::sz, ..., ::syx, ::syx])
    # planes side by side along Y: a (C, nz * Y', X') image with the same voxels
    if sample.ndim == 4:
        sample = sample.transpose(1, 0, 2, 3).reshape(sample.shape[1], -1, sample.shape[-1])
    else:
        sample = sample.reshape(-1, sample.shape[-1])
    return global_lowhigh(sample, percentiles, channels=channels, nchan=nchan)


def _check(volume: Any, out: Any, run: RunConfig, merge_iou: float) -> tuple[int, int, int]:
    if len(volume.shape) not in (3, 4):
        raise InputError(f"volume blocks take (Z, Y, X) or (Z, C, Y, X) arrays, got shape {tuple(volume.shape)}.")
    shape = (int(volume.shape[0]), int(volume.shape[-2]), int(volume.shape[-1]))
    if shape[0] < 2:
        raise InputError(f"the volume has {shape[0]} plane; a single plane is a 2-D image (use segment_blocks).")
    if tuple(out.shape) != shape:
        raise InputError(f"the output has shape {tuple(out.shape)} but the volume is {shape} (Z, Y, X).")
    if not run.is_volume:
        raise ConfigError("volume blocks need run.do_3D=True or run.stitch_threshold > 0; planes "
                          "segmented one by one are 2-D images (use segment_blocks per plane).")
    if not 0 < merge_iou <= 1:
        raise ConfigError(f"merge_iou={merge_iou!r} is not allowed; allowed: 0 < value <= 1.")
    return shape


def segment_volume_blocks(
    pipeline: Pipeline,
    volume: Any,
    out: Any,
    *,
    diameter: float,
    run: RunConfig | None = None,
    block_size: int = D.BLOCK_SIZE_3D,
    block_size_z: int | None = None,
    halo_diameters: float = D.BLOCK_HALO_DIAMETERS,
    merge_iou: float = D.BLOCK_MERGE_IOU,
    sampling_3d: str | None = "exact",
    progress: Callable[[int, int], None] | None = None,
    scratch: str | None = None,
) -> VolumeBlockSummary:
    """Segment ``volume`` ((Z, Y, X) or (Z, C, Y, X)) into ``out`` ((Z, Y, X) uint32) in blocks
    of ``block_size_z`` x ``block_size`` x ``block_size`` voxels (see the module docstring).

    ``sampling_3d`` replaces ``run.sampling_3d`` for do_3D blocks (None keeps it). It is
    ``"exact"`` by default because the reference's ``"grid"`` sampling reads the flow field at
    ``p * L / (L - 1) - 0.5``, an offset that depends on the length ``L`` of the volume: every
    block would misread its field differently and the output would depend on the block layout."""
    run = run or pipeline.run_config
    shape = _check(volume, out, run, merge_iou)
    if sampling_3d is not None:
        run = run.replace(sampling_3d=sampling_3d)
    grid = BlockGrid.for_diameter(shape, diameter, block_size, halo_diameters,
                                  block_size_z=block_size_z, anisotropy=run.anisotropy)
    norm = check_block_normalization(run.normalize)
    if norm is not None and norm.normalizes:
        lowhigh = norm.lowhigh or volume_lowhigh(volume, norm.percentiles, channels=run.channels,
                                                 nchan=pipeline.segment_net.nchan)
        norm = dataclasses.replace(norm, lowhigh=lowhigh)
    block_run = run.replace(diameter=float(diameter), normalize=norm,
                            channel_axis=1 if len(volume.shape) == 4 else None, z_axis=0)
    frames = FrameStore.temporary(grid.seam_halos, scratch)
    n = len(grid.blocks)
    counts = [0] * n
    present: list[np.ndarray] = [np.zeros(0, np.int64)] * n
    steps = Steps(2 * n, progress)
    try:
        for block in grid.blocks:
            z0, z1, y0, y1, x0, x1 = block.ext
            ext = np.asarray(volume[z0:z1, ..., y0:y1, x0:x1])
            labels = pipeline.run(ext, run=block_run).masks.astype(np.uint32, copy=False)
            del ext  # the next block's read should not overlap this one in memory
            counts[block.index], present[block.index] = keep_block(block, labels, frames, out)
            steps()
        tables = global_tables(grid, counts, present, frames, merge_iou)
        relabel_cores(grid, tables, out, out, steps)
    finally:
        frames.close()
    n_objects = count_objects(tables)
    return VolumeBlockSummary(shape, n, n_objects, grid.halos, grid.sizes,
                              norm.lowhigh if norm is not None else None)
