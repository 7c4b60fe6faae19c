"""Blocks of a huge image as tasks.

The client lays out the blocks and fixes the image-wide normalisation (``plan_job``); each
block is one task: the worker opens the file itself (only its extended block is read), runs
its Pipeline, and writes the block's core (local labels) into a scratch zarr array whose
chunks are the block cores (so no two tasks ever write one chunk) and its label frame into a
shared folder. Both writes replace what a killed or retried attempt left. When all blocks
are in, the client mends the seams and writes the global labels into the real output — the
same steps and arithmetic as ``segment_blocks`` in one process, so the labels are the same.
The scratch folder sits next to the output (workers on other machines must see it there).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from cp3rt import defaults as D
from cp3rt.distributed._cluster import map_ordered, pipeline_for
from cp3rt.runtime.batch.blocks.image import (BlockJob, BlockSummary, Steps, check_out, count_objects, keep_block,
                                              plan_job, relabel_cores, segment_block)
from cp3rt.runtime.batch.blocks.image_files import BlockRunner
from cp3rt.runtime.batch.blocks.merge import FrameStore, global_tables
from cp3rt.runtime.batch.blocks.plan import Block
from cp3rt.runtime.config import PipelineConfig, RunConfig

_LOCAL = "local.zarr"
_FRAMES = "frames"


def _block_task(config: PipelineConfig, run: RunConfig, image_path: str, job: BlockJob, block: Block,
                scratch: str) -> tuple[int, np.ndarray]:
    from cp3rt.runtime.batch.blocks.lazy import open_plane
    from cp3rt.runtime.io.zarr_io import zarr_module

    labels = segment_block(pipeline_for(config, run), open_plane(image_path), job, block)
    local = zarr_module().open_array(str(Path(scratch) / _LOCAL), mode="r+")
    return keep_block(block, labels, FrameStore(Path(scratch) / _FRAMES, job.grid.halo), local)


def segment_blocks_on_cluster(
    client,
    config: PipelineConfig,
    image_path: str | Path,
    image: Any,
    out: Any,
    *,
    nchan: int,
    diameter: float,
    run: RunConfig,
    scratch_parent: str | Path,
    pipeline_run: RunConfig | None = None,
    block_size: int = D.BLOCK_SIZE,
    halo_diameters: float = D.BLOCK_HALO_DIAMETERS,
    merge_iou: float = D.BLOCK_MERGE_IOU,
    retries: int = D.CLUSTER_RETRIES,
    progress: Callable[[int, int], None] | None = None,
) -> BlockSummary:
    """``segment_blocks`` with one Dask task per block (see the module docstring)."""
    from cp3rt.runtime.io.zarr_io import zarr_module

    job = plan_job(image, nchan=nchan, diameter=diameter, run=run, block_size=block_size,
                   halo_diameters=halo_diameters)
    check_out(image, out, merge_iou)
    grid = job.grid
    steps = Steps(2 * len(grid.blocks), progress)
    with tempfile.TemporaryDirectory(prefix=".cp3rt_blocks_", dir=scratch_parent) as scratch:
        (Path(scratch) / _FRAMES).mkdir()
        local = zarr_module().open_array(str(Path(scratch) / _LOCAL), mode="w", shape=grid.shape,
                                   chunks=grid.sizes, dtype="uint32", fill_value=0)
        results = map_ordered(
            client, _block_task,
            [(config, pipeline_run or run, str(image_path), job, b, scratch) for b in grid.blocks],
            [f"cp3rt-block-{Path(image_path).name}-{b.index}" for b in grid.blocks],
            retries=retries, on_result=lambda _i, _r: steps())
        counts = [c for c, _ in results]
        present = [p for _, p in results]
        tables = global_tables(grid, counts, present, FrameStore(Path(scratch) / _FRAMES, grid.halo), merge_iou)
        relabel_cores(grid, tables, local, out, steps)
    return BlockSummary(grid.shape, len(grid.blocks), count_objects(tables), grid.halo, job.lowhigh)


def cluster_block_runner(client, config: PipelineConfig, pipeline_run: RunConfig, *, nchan: int,
                         retries: int = D.CLUSTER_RETRIES) -> BlockRunner:
    """A ``BlockRunner`` for ``segment_file``/``run_huge`` whose blocks are tasks on ``client``."""

    def runner(path, image, out, *, scratch_parent, diameter, run, block_size, progress):
        return segment_blocks_on_cluster(
            client, config, path, image, out, nchan=nchan, diameter=diameter, run=run,
            scratch_parent=scratch_parent, pipeline_run=pipeline_run, block_size=block_size,
            retries=retries, progress=progress)

    return runner
