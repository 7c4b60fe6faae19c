"""Any mix of inputs in one call, ``run_inputs``: what ``cp3rt run`` does, for Python users too.

Routing (``route_inputs``): OME-Zarr HCS plates go to ``batch.plates`` (every field in blocks,
labels into the plate, ``<plate>_wells.csv``); zarr folders and huge TIFFs (``blocks.files.
split_inputs``) go through blocks; the other image files through ``batch.stream.stream_batch``
(several images in flight sharing engine batches) or, for a single file, ``batch.files.
run_batch``. With a :class:`Cluster` (``cp3rt.distributed.open_cluster``) image files and plate
fields are cluster tasks and huge images run here with their blocks as tasks; the runtime only
knows the protocol, so it never imports the cluster package above it.

Before any work: ``--out`` must be a folder, and no two inputs may write one output file
(``batch.out_paths``: mirrored under ``--out`` across folders, refused inside one). Images
another live run holds (``batch.claims``) are waited for at the end and checked again, so when
two runs on one folder have both returned, every output exists. A ``Cancel`` stops the work
between images (``batch.cancel``).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from cp3rt import defaults as D
from cp3rt.runtime.batch.blocks.files import merge_summaries, run_huge, split_inputs
from cp3rt.runtime.batch.blocks.image_files import local_runner
from cp3rt.runtime.batch.cancel import Cancel, is_cancelled
from cp3rt.runtime.batch.claims import wait_released
from cp3rt.runtime.batch.files import BatchEvent, BatchSummary, ImageOutcome, OutputOptions, run_batch
from cp3rt.runtime.batch.out_paths import check_plate_outputs, plan_outputs
from cp3rt.runtime.batch.plates import PlateSummary, plate_fields, run_plate, split_plates
from cp3rt.runtime.batch.provenance import describe_config, describe_nets
from cp3rt.runtime.batch.stream import StreamConfig, stream_batch
from cp3rt.runtime.config import PipelineConfig, RunConfig
from cp3rt.runtime.io.out_dir import check_output_dir
from cp3rt.runtime.pipeline import Pipeline

if TYPE_CHECKING:  # pragma: no cover
    from cp3rt.runtime.batch.blocks.image_files import BlockRunner
    from cp3rt.runtime.batch.run_record import RunRecorder

OnEvent = Callable[[BatchEvent], None]


@dataclasses.dataclass(frozen=True)
class InputRoutes:
    """Where each input goes: HCS plates, huge images (blocks), regular image files."""

    plates: tuple[Path, ...] = ()
    huge: tuple[Path, ...] = ()
    images: tuple[Path, ...] = ()
    n_fields: int = 0  # fields of all plates

    @property
    def total(self) -> int:
        """Items a progress bar counts: image files, huge images and plate fields."""
        return len(self.images) + len(self.huge) + self.n_fields


def route_inputs(
    inputs: Sequence[str | os.PathLike[str]], run: RunConfig | None = None, *, force_blocks: bool = False
) -> InputRoutes:
    """Sort INPUT arguments (files, folders, globs, zarr folders, plates) into their routes.
    ``force_blocks`` sends every TIFF through blocks; with a volume ``run`` (do_3D / stitching)
    big volumes go through 3-D blocks. A missing input or a plate without metadata raises."""
    run = run or RunConfig()
    plates, rest = split_plates(inputs)
    huge, images = split_inputs(rest, force_blocks=force_blocks, volumes=run.is_volume) if rest else ([], [])
    n_fields = sum(len(plate_fields(p)) for p in plates)
    return InputRoutes(tuple(plates), tuple(huge), tuple(images), n_fields)


class Cluster(Protocol):
    """Runs work as cluster tasks (``cp3rt.distributed.DaskCluster``): every image file, every
    plate field, every block of a huge image is a task on workers that open their own nets."""

    def run_files(self, config: PipelineConfig, images: Sequence[Path], run: RunConfig,
                  outputs: OutputOptions, *, on_event: OnEvent | None) -> BatchSummary: ...

    def run_plate(self, config: PipelineConfig, root: Path, run: RunConfig, outputs: OutputOptions, *,
                  block_size: int, on_event: OnEvent | None) -> PlateSummary: ...

    def block_runner(self, config: PipelineConfig, run: RunConfig, *, nchan: int) -> BlockRunner: ...


def run_inputs(
    inputs: Sequence[str | os.PathLike[str]] | InputRoutes,
    config: PipelineConfig | None = None,
    run: RunConfig | None = None,
    outputs: OutputOptions | None = None,
    *,
    block_size: int | None = None,
    cluster: Cluster | None = None,
    on_event: OnEvent | None = None,
    cancel: Cancel | None = None,
    record: RunRecorder | None = None,
    stream: StreamConfig | None = None,
) -> BatchSummary:
    """Segment every input (see the module docstring for the routes) and write its outputs;
    one outcome per image file, huge image and plate field. ``inputs`` are INPUT arguments or
    the routes ``route_inputs`` made of them (to size a progress bar first). ``block_size``
    None takes each kind's default. Nets open here once, only when work runs in this process.
    ``cancel`` (set from another thread or a signal handler) stops it early: the summary then
    counts the images ``not_started``. ``record`` (``batch.run_record.start_run_record``) gets
    the nets as they open, every image as it ends and the summary (``finish``). ``stream``: the
    streaming engine's workers and threads for the work done in this process (image files and
    the blocks of huge images); None: its defaults, and a single image file runs on this thread
    with all cores. A cluster's tasks do not use it."""
    routes = inputs if isinstance(inputs, InputRoutes) else route_inputs(inputs, run)
    config = config or PipelineConfig()
    run = run or RunConfig()
    outputs = outputs or OutputOptions()
    if outputs.out_dir is not None:
        check_output_dir(outputs.out_dir)
    outputs = plan_outputs([*routes.images, *routes.huge], outputs)
    check_plate_outputs(routes.plates, outputs)
    if record is not None:
        on_event = record.listen(on_event)

    def go(todo: InputRoutes) -> BatchSummary:
        return _run_routes(todo, config, run, outputs, block_size=block_size, cluster=cluster,
                           on_event=on_event, cancel=cancel, record=record, stream=stream)

    summary = _settle_claimed(go(routes), routes, go, cancel)
    if record is not None:
        record.finish(summary, stopped_by=cancel.reason if is_cancelled(cancel) else None)
    return summary


def _run_routes(routes: InputRoutes, config: PipelineConfig, run: RunConfig, outputs: OutputOptions, *,
                block_size: int | None, cluster: Cluster | None, on_event: OnEvent | None,
                cancel: Cancel | None, record: RunRecorder | None = None,
                stream: StreamConfig | None = None) -> BatchSummary:
    parts = []
    if record is not None and not record.record.models and cluster is not None:
        record.set_models(describe_config(config))  # the workers open the nets
    if cluster is not None:
        if routes.images:  # every file one task
            parts.append(cluster.run_files(config, routes.images, run, outputs, on_event=on_event))
        for plate in routes.plates:  # every field one task
            parts.append(cluster.run_plate(config, plate, run, outputs, block_size=block_size or D.BLOCK_SIZE,
                                           on_event=on_event).batch)
    if routes.huge or (cluster is None and (routes.images or routes.plates)):
        with Pipeline.from_config(config, run=run) as pipeline:
            if record is not None and not record.record.models:
                record.set_models(describe_nets(pipeline))
            parts += _in_process(pipeline, routes, config, run, outputs, block_size=block_size,
                                 cluster=cluster, on_event=on_event, cancel=cancel, stream=stream)
    return merge_summaries(*parts)


def _settle_claimed(summary: BatchSummary, routes: InputRoutes, go: Callable[[InputRoutes], BatchSummary],
                    cancel: Cancel | None) -> BatchSummary:
    """Wait for the images another run held and run them again: skipped when that run wrote
    them (noted 'done by another run'), done here when it failed or died. Repeats while a third
    run holds some. A cancel leaves the rest 'claimed'."""
    while not is_cancelled(cancel):
        claimed = {o.path: o for o in summary.outcomes if o.status == "claimed"}
        if not claimed:
            break
        for outcome in claimed.values():
            if not wait_released(outcome.outputs[0], cancel):
                return summary
        again = go(InputRoutes(huge=tuple(p for p in routes.huge if p in claimed),
                               images=tuple(p for p in routes.images if p in claimed)))
        redone = {o.path: _noted(o) for o in again.outcomes}
        summary = BatchSummary(tuple(redone.get(o.path, o) for o in summary.outcomes),
                               summary.seconds + again.seconds, summary.not_started + again.not_started)
    return summary


def _noted(outcome: ImageOutcome) -> ImageOutcome:
    if outcome.status == "skipped" and outcome.note is None:
        return dataclasses.replace(outcome, note="done by another run")
    return outcome


def _in_process(pipeline: Pipeline, routes: InputRoutes, config: PipelineConfig, run: RunConfig,
                outputs: OutputOptions, *, block_size: int | None, cluster: Cluster | None,
                on_event: OnEvent | None, cancel: Cancel | None,
                stream: StreamConfig | None = None) -> list[BatchSummary]:
    """The parts that run with this process's nets: with a cluster only the huge images (their
    blocks are tasks), without one everything."""
    parts = []
    if routes.images and cluster is None:
        # Many files: the streaming engine (images in flight, shared engine batches).
        if len(routes.images) > 1 or stream is not None:  # one file, explicit threads: a worker applies them
            parts.append(stream_batch(pipeline, routes.images, run, outputs, on_event=on_event, cancel=cancel,
                                      stream=stream))
        else:
            parts.append(run_batch(pipeline, routes.images, run, outputs, on_event=on_event, cancel=cancel))
    if routes.huge:  # zarr / OME-Zarr / big TIFF: in blocks, labels to OME-Zarr or BigTIFF
        blocks_on = local_runner(pipeline, stream) if cluster is None else cluster.block_runner(
            config, run, nchan=pipeline.segment_net.nchan)  # every block one task
        parts.append(run_huge(pipeline, routes.huge, run, outputs, block_size=block_size,
                              on_event=on_event, runner=blocks_on, cancel=cancel))
    if cluster is None:
        for plate in routes.plates if not is_cancelled(cancel) else ():  # HCS plate: every field, labels into it, <plate>_wells.csv
            parts.append(run_plate(pipeline, plate, run, outputs, block_size=block_size or D.BLOCK_SIZE,
                                   on_event=on_event, stream=stream).batch)
    return parts
