"""Fields of an HCS plate as tasks: each field is one task (its blocks run inside the worker,
as in one process); the client writes the per-well CSV once every field has been tried.

A field task writes its labels into the field's ``labels/cp3rt`` group and marks them
complete last, so a retried task redoes a half-written field and a re-run skips done ones.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from cp3rt import defaults as D
from cp3rt.distributed._cluster import map_ordered, pipeline_for
from cp3rt.runtime.batch.files import BatchEvent, ImageOutcome, OutputOptions
from cp3rt.runtime.batch.plate_objects import field_outputs
from cp3rt.runtime.batch.plates import PlateSummary, finish_plate, labels_root, plate_fields, prepare_output
from cp3rt.runtime.config import PipelineConfig, RunConfig


def _field_task(config: PipelineConfig, run: RunConfig, outputs: OutputOptions, field: str,
                block_size: int, labels_root: str) -> ImageOutcome:
    from cp3rt.runtime.batch.blocks.files import segment_file

    return segment_file(pipeline_for(config, run), Path(field), run, outputs, block_size=block_size,
                        labels_root=Path(labels_root))


def run_plate_on_cluster(
    client,
    config: PipelineConfig,
    root: str | os.PathLike[str],
    run: RunConfig | None = None,
    outputs: OutputOptions | None = None,
    *,
    block_size: int = D.BLOCK_SIZE,
    retries: int = D.CLUSTER_RETRIES,
    on_event: Callable[[BatchEvent], None] | None = None,
) -> PlateSummary:
    """``run_plate`` with one Dask task per field; the same labels and CSV."""
    root = Path(root)
    run = run or RunConfig()
    outputs = outputs or OutputOptions()
    emit = on_event or (lambda _event: None)
    fields = plate_fields(root)
    out_plate = prepare_output(root, outputs)  # an output plate store with --out (see batch.plates)
    t0 = time.perf_counter()
    outcomes = map_ordered(
        client, _field_task,
        [(config, run, field_outputs(outputs), str(f.path), block_size, str(labels_root(f, root, out_plate)))
         for f in fields],
        [f"cp3rt-field-{root.name}-{f.well.replace('/', '')}-{f.path.name}" for f in fields], retries=retries,
        on_result=lambda i, o: emit(BatchEvent("end", i, len(fields), fields[i].path, outcome=o)))
    return finish_plate(root, fields, outcomes, outputs, time.perf_counter() - t0)
