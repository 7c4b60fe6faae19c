"""Huge image files for ``cp3rt run``: which inputs go through blocks, and running them.

An input is huge when it is a zarr / OME-Zarr folder, or a TIFF with a side above
``defaults.HUGE_IMAGE_SIDE`` (or any TIFF when blocks are forced); in a volume run (do_3D /
stitching) a volume over ``HUGE_VOLUME_VOXELS`` too, which goes to ``volume_files`` (3-D
blocks). Outputs:
* OME-Zarr input -> ``labels/cp3rt`` inside it (NGFF 0.4), marked complete when done, so a
  re-run skips it; a half-written group from a killed run is redone.
* TIFF or plain zarr array -> ``<stem>_cp_masks.tif`` as BigTIFF, written under a temporary
  name and renamed when complete (same resume rule as small images).
Only masks are written for such images (no overlay/_seg.npy/flows: they would be as big as
the image and the point is bounded memory). The diameter must be known (a size-model
estimate needs the whole image): ``run.diameter`` or else the model's own diameter.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from cp3rt import defaults as D
from cp3rt._fs import atomic_path
from cp3rt.errors import ConfigError, Cp3rtError
from cp3rt.runtime.batch import BatchEvent, BatchSummary, ImageOutcome, OutputOptions, remove_stale_partials
from cp3rt.runtime.blocks.lazy import open_plane, tiff_axes
from cp3rt.runtime.blocks.run import BlockSummary, segment_blocks
from cp3rt.runtime.run_config import RunConfig

if TYPE_CHECKING:  # pragma: no cover
    from cp3rt.runtime.pipeline import Pipeline

_EXTRA_OUTPUTS = ("save_flows", "save_restored", "save_seg", "overlay")


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


def is_ome_zarr(path: Path) -> bool:
    from cp3rt.runtime.io.zarr_io import _zarr

    node = _zarr().open(str(path), mode="r")
    return not hasattr(node, "shape") and bool(node.attrs.get("multiscales"))


class BlockRunner(Protocol):
    """Runs the blocks of one huge file: in this process (``local_runner``) or as Dask tasks
    (``cp3rt.distributed``, which needs the file's path and a scratch folder the workers see)."""

    def __call__(self, path: Path, image: Any, out: Any, *, scratch_parent: Path, diameter: float,
                 run: RunConfig, block_size: int, progress: Callable[[int, int], None] | None,
                 ) -> BlockSummary: ...


def local_runner(pipeline: Pipeline) -> BlockRunner:
    def runner(path, image, out, *, scratch_parent, **kw):
        return segment_blocks(pipeline, image, out, **kw)

    return runner


def block_diameter(pipeline: Pipeline, run: RunConfig) -> float:
    return float(run.diameter) if run.diameter else float(pipeline.segment_net.diam_mean)


def refuse_extra_outputs(path: Path, outputs: OutputOptions, what: str) -> None:
    extra = [f"--{k.replace('_', '-').removeprefix('save-')}" for k in _EXTRA_OUTPUTS if getattr(outputs, k)]
    if extra:
        raise ConfigError(f"{path}: {', '.join(extra)} are not written for {what} processed in blocks; "
                          "only the masks are.")


def write_block_labels(
    path: Path, outputs: OutputOptions, shape: tuple[int, ...],
    segment: Callable[[Any, Path], Any], marker: Callable[[Any, Any], dict[str, Any]],
) -> tuple[tuple[Path, ...], Any]:
    """Create the labels of a huge input, fill them with ``segment(out, scratch_parent)`` and
    mark them complete: an OME-Zarr input gets ``labels/cp3rt`` (``marker`` gives the attributes
    written last), anything else an atomically renamed BigTIFF. (outputs, None) when already done
    and not ``outputs.overwrite``."""
    from cp3rt.runtime.io import zarr_io

    if path.is_dir() and is_ome_zarr(path):
        label_path = path / "labels" / D.LABELS_NAME
        if zarr_io.is_complete(path) and not outputs.overwrite:
            return (label_path,), None
        out = zarr_io.create_ngff_labels(path, shape, overwrite=True)
        summary = segment(out, path.parent)
        zarr_io.mark_complete(out, **marker(out, summary))
        return (label_path,), summary
    final = outputs.paths_for(path)["masks"]
    remove_stale_partials(final)
    if final.is_file() and not outputs.overwrite:
        return (final,), None
    with atomic_path(final) as tmp:
        out = zarr_io.create_bigtiff_labels(tmp, shape)
        summary = segment(out, final.parent)
        out.flush()
        del out  # close the memmap before the rename
    return (final,), summary


def outcome_of(path: Path, written: tuple[Path, ...], summary: Any, seconds: float) -> ImageOutcome:
    """``summary``: a plane or volume block summary (its ``n_objects``), None when skipped."""
    if summary is None:
        return ImageOutcome(path, "skipped", outputs=written)
    return ImageOutcome(path, "done", summary.n_objects, {"segment": seconds}, written)


def failed_outcome(path: Path, err: BaseException) -> ImageOutcome:
    text = str(err).strip().replace("\n", " ") or type(err).__name__
    return ImageOutcome(path, "failed", error=text if str(path) in text else f"{path}: {text}")


def segment_file(
    pipeline: Pipeline,
    path: Path,
    run: RunConfig,
    outputs: OutputOptions,
    *,
    block_size: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    runner: BlockRunner | None = None,
) -> ImageOutcome:
    """Segment one huge file in blocks and write its labels (see the module docstring); the
    blocks run in this process unless ``runner`` says otherwise. With a volume run config
    (do_3D / stitching) a volume file goes to ``volume_files.segment_volume_file`` (3-D
    blocks, always in this process); ``block_size`` None takes the default of the kind."""
    from cp3rt.runtime.blocks.volume_files import is_volume_input, segment_volume_file

    try:
        if run.is_volume and is_volume_input(path):
            return segment_volume_file(pipeline, path, run, outputs, block_size=block_size, progress=progress)
        block_size = block_size or D.BLOCK_SIZE
        refuse_extra_outputs(path, outputs, "huge images")
        t0 = time.perf_counter()
        image = open_plane(path)
        diameter = block_diameter(pipeline, run)
        run_blocks = runner or local_runner(pipeline)
        written, summary = write_block_labels(
            path, outputs, tuple(image.shape[-2:]),
            lambda out, scratch: run_blocks(path, image, out, scratch_parent=scratch, diameter=diameter, run=run,
                                            block_size=block_size, progress=progress),
            lambda out, s: dict(n_objects=s.n_objects, blocks=s.n_blocks, diameter=diameter, halo=s.halo,
                                foreground_px=_foreground(out, block_size)))
        return outcome_of(path, written, summary, time.perf_counter() - t0)
    except (Cp3rtError, OSError) as err:
        return failed_outcome(path, err)


def _foreground(labels, rows: int) -> int:
    """Labelled pixels, read back a band of rows at a time (bounded memory; per-well areas)."""
    return sum(int(np.count_nonzero(labels[y : y + rows])) for y in range(0, labels.shape[0], rows))


def run_huge(
    pipeline: Pipeline,
    images: Sequence[Path],
    run: RunConfig | None = None,
    outputs: OutputOptions | None = None,
    *,
    block_size: int | None = None,
    on_event: Callable[[BatchEvent], None] | None = None,
    runner: BlockRunner | None = None,
) -> BatchSummary:
    """``run_batch`` for huge files: one after another, each in blocks (blocks run in parallel,
    in this process or as Dask tasks with ``runner``)."""
    run = run or RunConfig()
    outputs = outputs or OutputOptions()
    emit = on_event or (lambda _event: None)
    t0 = time.perf_counter()
    results = []
    for i, image in enumerate(images):
        image = Path(image)
        emit(BatchEvent("start", i, len(images), image))
        outcome = segment_file(pipeline, image, run, outputs, block_size=block_size, runner=runner,
                               progress=lambda d, n, i=i, image=image: emit(
                                   BatchEvent("tiles", i, len(images), image, d, n)))
        results.append(outcome)
        emit(BatchEvent("end", i, len(images), image, outcome=outcome))
    return BatchSummary(tuple(results), time.perf_counter() - t0)


def merge_summaries(*parts: BatchSummary) -> BatchSummary:
    return BatchSummary(tuple(o for p in parts for o in p.outcomes), sum(p.seconds for p in parts))


def split_inputs(
    inputs: Sequence[str | os.PathLike[str]], *, force_blocks: bool = False, side: int = D.HUGE_IMAGE_SIDE,
    volumes: bool = False, volume_voxels: int = D.HUGE_VOLUME_VOXELS,
) -> tuple[list[Path], list[Path]]:
    """(huge inputs, regular image files) of ``cp3rt run``'s INPUT arguments: zarr folders
    and big TIFFs (every TIFF with ``force_blocks``) are huge, and with ``volumes`` (a do_3D /
    stitching run) so are volume TIFFs over ``volume_voxels`` or ``side``; the rest is expanded by
    ``collect_inputs`` as usual."""
    from cp3rt.errors import InputError
    from cp3rt.runtime.batch import collect_inputs
    from cp3rt.runtime.blocks.volume_files import is_huge_volume

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
