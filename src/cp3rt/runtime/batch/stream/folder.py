"""``stream_batch``: the streaming engine behind ``cp3rt run`` for many files.

Same contract as :func:`cp3rt.runtime.batch.files.run_batch` (skip/resume, atomic outputs, one line
per failed file, the same outputs) — each image goes through ``batch.files.process_file`` unchanged — but
several images are in flight and their tiles share engine batches. Events are emitted from the
calling thread only, so a progress renderer needs no locking; 'start' events come when an
image is picked up, 'end' events in completion order (their ``index`` names the image).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from cp3rt.runtime.batch.cancel import Cancel, is_cancelled
from cp3rt.runtime.batch.files import BatchEvent, BatchSummary, ImageOutcome, OutputOptions, process_file
from cp3rt.runtime.batch.stream.batcher import StreamConfig, StreamingView, StreamStats
from cp3rt.runtime.batch.stream.map import stream_map
from cp3rt.runtime.config import RunConfig

if TYPE_CHECKING:  # pragma: no cover
    from cp3rt.runtime.pipeline import Pipeline


def stream_batch(
    pipeline: Pipeline,
    images: Sequence[Path],
    run: RunConfig | None = None,
    outputs: OutputOptions | None = None,
    *,
    on_event: Callable[[BatchEvent], None] | None = None,
    stream: StreamConfig | None = None,
    stats: StreamStats | None = None,
    cancel: Cancel | None = None,
) -> BatchSummary:
    """Segment every file in ``images`` with shared engine batches; outcomes in input order.
    ``cancel`` stops picking up images; the ones in flight finish."""
    run = run or RunConfig()
    outputs = outputs or OutputOptions()
    if run.gpu_resident:  # shared host batches would defeat it: one image at a time, all on the device
        from cp3rt.runtime.batch.files import run_batch

        return run_batch(pipeline, images, run, outputs, on_event=on_event, cancel=cancel)
    emit = on_event or (lambda _event: None)
    t0 = time.perf_counter()
    if not run.diameter and run.estimate_diameter:
        pipeline.size_model()  # fetch it now: a missing size model fails the batch, not each image
    total = len(images)
    # Events raised on worker threads are queued and emitted here, between results.
    events: queue.SimpleQueue[BatchEvent] = queue.SimpleQueue()
    main = threading.get_ident()

    def post(event: BatchEvent) -> None:
        if threading.get_ident() == main:
            emit(event)
        else:
            events.put(event)

    def drain() -> None:
        while True:
            try:
                emit(events.get_nowait())
            except queue.Empty:
                return

    def work(view: StreamingView, item: tuple[int, Path]) -> ImageOutcome:
        i, image = item
        post(BatchEvent("start", i, total, image))
        return process_file(view, image, run, outputs, lambda d, n: post(BatchEvent("tiles", i, total, image, d, n)))

    outcomes: list[ImageOutcome | None] = [None] * total
    items = ((i, Path(p)) for i, p in enumerate(images) if not is_cancelled(cancel))
    for (i, image), outcome, error in stream_map(pipeline, items, work, stream, stats=stats):
        drain()
        if error is not None:  # process_file returns every Exception as an outcome; this is a BaseException
            raise error
        outcomes[i] = outcome
        emit(BatchEvent("end", i, total, image, outcome=outcome))
    drain()
    done = tuple(o for o in outcomes if o is not None)
    return BatchSummary(done, time.perf_counter() - t0, total - len(done))
