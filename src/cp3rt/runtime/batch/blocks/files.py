"""Huge image files for ``cp3rt run``: which inputs go through blocks, and the route of each.

An input is huge when it is a zarr / OME-Zarr folder, or a TIFF with a side above
``defaults.HUGE_IMAGE_SIDE`` (or any TIFF when blocks are forced); in a volume run (do_3D /
stitching) a volume over ``HUGE_VOLUME_VOXELS`` too, which goes to ``volume_files`` (3-D
blocks); the rest go to ``image_files`` (2-D blocks). Where their labels go: ``file_outputs``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from cp3rt import defaults as D
from cp3rt.errors import Cp3rtError, InputError
from cp3rt.runtime.batch.blocks.file_outputs import failed_outcome, is_ome_zarr
from cp3rt.runtime.batch.blocks.image_files import BlockRunner, segment_image_file
from cp3rt.runtime.batch.blocks.lazy import tiff_axes
from cp3rt.runtime.batch.blocks.volume_files import is_huge_volume, is_volume_input, segment_volume_file
from cp3rt.runtime.batch.cancel import Cancel, Cancelled, is_cancelled
from cp3rt.runtime.batch.claims import clear_stale_lock, try_claim
from cp3rt.runtime.batch.files import (BatchEvent, BatchSummary, ImageOutcome, OutputOptions, claimed_outcome,
                                       collect_inputs, unexpected_outcome)
from cp3rt.runtime.config import RunConfig

if TYPE_CHECKING:  # pragma: no cover
    from cp3rt.runtime.pipeline import Pipeline


def is_zarr_input(path: str | os.PathLike[str]) -> bool:
    from cp3rt.runtime.io.zarr_io import is_zarr

    return is_zarr(path)


def is_huge_tiff(path: Path, *, side: int = D.HUGE_IMAGE_SIDE) -> bool:
    if path.suffix.lower() not in (".tif", ".tiff"):
        return False
    shape, axes = tiff_axes(path)
    axes = axes.upper()
    if "Y" in axes and "X" in axes:
        return max(shape[axes.index("Y")], shape[axes.index("X")]) > side
    return max(shape[-2:]) > side


def segment_file(
    pipeline: Pipeline,
    path: Path,
    run: RunConfig,
    outputs: OutputOptions,
    *,
    block_size: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    runner: BlockRunner | None = None,
    cancel: Cancel | None = None,
    labels_root: Path | None = None,
) -> ImageOutcome:
    """Segment one huge file in blocks and write its labels: with a volume run config (do_3D /
    stitching) a volume file goes to ``volume_files.segment_volume_file`` (3-D blocks, always
    in this process), anything else to ``image_files.segment_image_file`` (2-D blocks, in this
    process unless ``runner`` says otherwise); ``block_size`` None takes the default of the kind.
    The file's pixel data must be there before any block runs; the work happens under the
    output's claim (``batch.claims``); ``cancel`` abandons it between blocks (raises Cancelled).
    ``labels_root``: the group that gets an OME-Zarr input's ``labels/`` (default: the input)."""
    try:
        check_pixel_data(path)
        volume = run.is_volume and is_volume_input(path)
        labels_root = labels_root or image_output_store(path, outputs)
        key, final, done = _claim_key(path, outputs, labels_root)
    except (Cp3rtError, OSError) as err:  # an unreadable file is one failed image, as in both runs
        return failed_outcome(path, err)
    if done:
        clear_stale_lock(key)
        return ImageOutcome(path, "skipped", outputs=(final,))
    try:
        claim = try_claim(key)
    except Cp3rtError as err:
        return failed_outcome(path, err)
    if claim is None:
        return claimed_outcome(path, key)

    def step(done: int, total: int) -> None:
        if cancel is not None:
            cancel.check()
        if progress is not None:
            progress(done, total)

    kw = dict(block_size=block_size, progress=step, labels_root=labels_root)
    with claim:
        try:
            if volume:
                return segment_volume_file(pipeline, path, run, outputs, **kw)
            return segment_image_file(pipeline, path, run, outputs, runner=runner, **kw)
        except Cancelled:
            raise
        except Exception as err:  # noqa: BLE001 - unexpected in one image: its failure, not the batch's end
            return unexpected_outcome(path, err)


def image_output_store(path: Path, outputs: OutputOptions) -> Path | None:
    """Where an OME-Zarr image's ``labels/`` go: with an output folder, a store of the same
    name there (``io.ngff.mirror_image``: labels only, pointing back to the input), so that
    ``--out`` never writes into the input; None (the input itself) without one, or for
    anything that is not an OME-Zarr image."""
    if outputs.out_dir is None or not (path.is_dir() and is_ome_zarr(path)):
        return None
    store = Path(outputs.out_dir) / path.name
    if store.resolve() == path.resolve():
        return None
    from cp3rt.runtime.io.ngff import mirror_image

    mirror_image(path, store)
    return store


def check_pixel_data(path: Path) -> None:
    """A TIFF whose strips or tiles lie outside the file (header-only, truncated) is refused
    before hours of blocks over zeros; zarr stores are chunked and read as they are."""
    if path.suffix.lower() in (".tif", ".tiff", ".flex") and path.is_file():
        from cp3rt.runtime.io.read import check_tiff_data

        check_tiff_data(path)


def _claim_key(path: Path, outputs: OutputOptions, labels_root: Path | None = None) -> tuple[Path, Path, bool]:
    """(the path whose claim guards this huge input's labels, the labels, whether they are done)."""
    if path.is_dir() and is_ome_zarr(path):
        from cp3rt.runtime.io import zarr_io

        root = labels_root or path
        done = zarr_io.is_complete(root) and not outputs.overwrite
        return root / f"{D.LABELS_NAME}_labels", root / "labels" / D.LABELS_NAME, done
    final = outputs.paths_for(path)["masks"]
    return final, final, final.is_file() and not outputs.overwrite


def run_huge(
    pipeline: Pipeline,
    images: Sequence[Path],
    run: RunConfig | None = None,
    outputs: OutputOptions | None = None,
    *,
    block_size: int | None = None,
    on_event: Callable[[BatchEvent], None] | None = None,
    runner: BlockRunner | None = None,
    cancel: Cancel | None = None,
) -> BatchSummary:
    """``run_batch`` for huge files: one after another, each in blocks (blocks run in parallel,
    in this process or as Dask tasks with ``runner``); ``cancel`` abandons the one in flight
    between two blocks (its temporary output removed) and starts no other."""
    run = run or RunConfig()
    outputs = outputs or OutputOptions()
    emit = on_event or (lambda _event: None)
    t0 = time.perf_counter()
    results = []
    for i, image in enumerate(images):
        if is_cancelled(cancel):
            break
        image = Path(image)
        emit(BatchEvent("start", i, len(images), image))
        try:
            outcome = segment_file(pipeline, image, run, outputs, block_size=block_size, runner=runner,
                                   cancel=cancel, progress=lambda d, n, i=i, image=image: emit(
                                       BatchEvent("tiles", i, len(images), image, d, n)))
        except Cancelled:
            break
        results.append(outcome)
        emit(BatchEvent("end", i, len(images), image, outcome=outcome))
    return BatchSummary(tuple(results), time.perf_counter() - t0, len(images) - len(results))


def merge_summaries(*parts: BatchSummary) -> BatchSummary:
    return BatchSummary(tuple(o for p in parts for o in p.outcomes), sum(p.seconds for p in parts),
                        sum(p.not_started for p in parts))


def split_inputs(
    inputs: Sequence[str | os.PathLike[str]], *, force_blocks: bool = False, side: int = D.HUGE_IMAGE_SIDE,
    volumes: bool = False, volume_voxels: int = D.HUGE_VOLUME_VOXELS,
) -> tuple[list[Path], list[Path]]:
    """(huge inputs, regular image files) of ``cp3rt run``'s INPUT arguments: zarr folders
    and big TIFFs (every TIFF with ``force_blocks``) are huge, and with ``volumes`` (a do_3D /
    stitching run) so are volume TIFFs over ``volume_voxels`` or ``side``; the rest is expanded by
    ``collect_inputs`` as usual."""
    zarrs = [Path(p) for p in inputs if is_zarr_input(p)]
    rest = [p for p in inputs if not is_zarr_input(p)]
    images = collect_inputs(rest) if rest else []
    huge = list(zarrs)
    for p in images:
        try:
            tif = p.suffix.lower() in (".tif", ".tiff")
            big_volume = volumes and is_huge_volume(p, side=side, voxels=volume_voxels)
            if (force_blocks and tif) or is_huge_tiff(p, side=side) or big_volume:
                huge.append(p)
        except InputError:
            pass  # an unreadable file: the regular runner reports it as one failed image
    return huge, [p for p in images if p not in huge]
