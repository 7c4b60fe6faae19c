"""One huge 2-D image file segmented in blocks into its labels (``segment_image_file``), with
the blocks run in this process (``local_runner``) or elsewhere (a ``BlockRunner``: Dask tasks).

The diameter must be known (a size-model estimate needs the whole image): ``run.diameter`` or
else the model's own diameter.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from cp3rt import defaults as D
from cp3rt.errors import Cp3rtError
from cp3rt.runtime.batch.blocks.file_outputs import (block_diameter, failed_outcome, outcome_of,
                                                     refuse_extra_outputs, write_block_labels)
from cp3rt.runtime.batch.blocks.image import BlockSummary, segment_blocks
from cp3rt.runtime.batch.blocks.lazy import open_plane
from cp3rt.runtime.batch.files import ImageOutcome, OutputOptions
from cp3rt.runtime.config import RunConfig

if TYPE_CHECKING:  # pragma: no cover
    from cp3rt.runtime.batch.stream import StreamConfig
    from cp3rt.runtime.pipeline import Pipeline


class BlockRunner(Protocol):
    """Runs the blocks of one huge file: in this process (``local_runner``) or as Dask tasks
    (``cp3rt.distributed``, which needs the file's path and a scratch folder the workers see)."""

    def __call__(self, path: Path, image: Any, out: Any, *, scratch_parent: Path, diameter: float,
                 run: RunConfig, block_size: int, progress: Callable[[int, int], None] | None,
                 ) -> BlockSummary: ...


def local_runner(pipeline: Pipeline, stream: StreamConfig | None = None) -> BlockRunner:
    """Blocks in this process, through the streaming engine (``stream``: its workers and threads)."""

    def runner(path, image, out, *, scratch_parent, **kw):
        return segment_blocks(pipeline, image, out, stream=stream, **kw)

    return runner


def segment_image_file(
    pipeline: Pipeline,
    path: Path,
    run: RunConfig,
    outputs: OutputOptions,
    *,
    block_size: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    runner: BlockRunner | None = None,
    labels_root: Path | None = None,
) -> ImageOutcome:
    """Segment one huge 2-D image in blocks of ``block_size`` (default ``D.BLOCK_SIZE``) and
    write its labels (``file_outputs``; ``labels_root`` there); a failure is returned as a failed outcome."""
    try:
        block_size = block_size or D.BLOCK_SIZE
        refuse_extra_outputs(path, outputs, "huge images", allowed=("overlay",))
        t0 = time.perf_counter()
        image = open_plane(path)
        diameter = block_diameter(pipeline, run)
        run_blocks = runner or local_runner(pipeline)
        written, summary = write_block_labels(
            path, outputs, tuple(image.shape[-2:]),
            lambda out, scratch: run_blocks(path, image, out, scratch_parent=scratch, diameter=diameter, run=run,
                                            block_size=block_size, progress=progress),
            lambda out, s: dict(n_objects=s.n_objects, blocks=s.n_blocks, diameter=diameter, halo=s.halo,
                                foreground_px=_foreground(out, block_size)),
            labels_root=labels_root)
        if outputs.overlay and summary is not None:  # drawn with the labels it shows
            written += (_overview(pipeline, path, image, written[0], outputs, summary.n_objects, diameter),)
        return outcome_of(path, written, summary, time.perf_counter() - t0, diameter)
    except (Cp3rtError, OSError) as err:
        return failed_outcome(path, err)


def _overview(pipeline: Pipeline, path: Path, image: Any, labels_path: Path, outputs: OutputOptions,
              n_objects: int, diameter: float) -> Path:
    """``<stem>_overlay.png``: the labels' outlines on the image, every n-th pixel (io.pictures)."""
    from cp3rt.runtime.io.pictures import result_caption, write_overview_picture
    from cp3rt.runtime.io.zarr_io import open_lazy

    final = outputs.paths_for(path)["overlay"]
    caption = result_caption(n_objects, diameter=diameter, model=pipeline.config.segment, name=path.name)
    return write_overview_picture(final, image, open_lazy(labels_path), caption)


def _foreground(labels, rows: int) -> int:
    """Labelled pixels, read back a band of rows at a time (bounded memory; per-well areas)."""
    return sum(int(np.count_nonzero(labels[y : y + rows])) for y in range(0, labels.shape[0], rows))
