"""``stream_map``: run whole-image work items on a few threads whose engine calls share batches."""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from cp3rt.runtime.batch.stream.batcher import StreamConfig, StreamingView, StreamStats, TileBatcher, streaming_view

if TYPE_CHECKING:  # pragma: no cover
    from cp3rt.runtime.pipeline import Pipeline

_END = object()


def stream_map(
    pipeline: Pipeline,
    items: Iterable[Any],
    work: Callable[[StreamingView, Any], Any],
    config: StreamConfig | None = None,
    *,
    stats: StreamStats | None = None,
) -> Iterator[tuple[Any, Any, BaseException | None]]:
    """Run ``work(view, item)`` for every item on ``config.workers`` threads; yield
    ``(item, value, error)`` in completion order. ``work`` runs a whole image (read ->
    pipeline -> write) through ``view``, whose engines share batches with the other workers.
    Only ``workers`` items are in flight at any time, so memory stays bounded; ``stats``
    (optional) receives the batcher's counters."""
    config = config or StreamConfig()
    batcher = TileBatcher(config.max_batch, stats=stats)
    view = streaming_view(pipeline, batcher)
    source = iter(items)
    source_lock = threading.Lock()
    done: collections.deque = collections.deque()
    cond = threading.Condition()
    alive = [config.workers]
    stop = threading.Event()

    def worker() -> None:
        try:
            while not stop.is_set():
                with source_lock:
                    item = next(source, _END)
                if item is _END:
                    return
                try:
                    value, error = work(view, item), None
                except BaseException as exc:  # noqa: BLE001 - reported per item
                    value, error = None, exc
                with cond:
                    done.append((item, value, error))
                    cond.notify()
        finally:
            with cond:
                alive[0] -= 1
                cond.notify()

    threads = [threading.Thread(target=worker, name=f"cp3rt-stream-{i}", daemon=True)
               for i in range(config.workers)]
    for t in threads:
        t.start()
    try:
        while True:
            with cond:
                while not done and alive[0] > 0:
                    cond.wait()
                if not done:
                    break
                entry = done.popleft()
            yield entry
    finally:
        stop.set()
        for t in threads:
            t.join()
        batcher.close()


