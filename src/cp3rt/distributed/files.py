"""Image files as tasks: each file is segmented by a worker's Pipeline and written by it."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

from cp3rt import defaults as D
from cp3rt.distributed._cluster import map_ordered, pipeline_for
from cp3rt.runtime.batch.files import BatchEvent, BatchSummary, ImageOutcome, OutputOptions
from cp3rt.runtime.config import PipelineConfig, RunConfig


def _process(config: PipelineConfig, run: RunConfig, outputs: OutputOptions, image: str) -> ImageOutcome:
    from cp3rt.runtime.batch.files import process_file

    return process_file(pipeline_for(config, run), Path(image), run, outputs, lambda d, n: None)


def run_distributed(
    client,
    config: PipelineConfig,
    images: Sequence[Path],
    run: RunConfig | None = None,
    outputs: OutputOptions | None = None,
    *,
    retries: int = D.CLUSTER_RETRIES,
    on_event: Callable[[BatchEvent], None] | None = None,
) -> BatchSummary:
    """Process every image as one task on ``client``'s cluster; outcomes in input order."""
    run = run or RunConfig()
    outputs = outputs or OutputOptions()
    emit = on_event or (lambda _e: None)
    t0 = time.perf_counter()
    total = len(images)
    outcomes = map_ordered(
        client, _process, [(config, run, outputs, str(p)) for p in images],
        [f"cp3rt-{i}-{Path(p).name}" for i, p in enumerate(images)], retries=retries,
        on_result=lambda i, o: emit(BatchEvent("end", i, total, Path(images[i]), outcome=o)))
    return BatchSummary(tuple(outcomes), time.perf_counter() - t0)
