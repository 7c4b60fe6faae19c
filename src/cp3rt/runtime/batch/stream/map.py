"""``stream_map``: run whole-image work items on a few threads whose engine calls share batches."""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from cp3rt.runtime.batch.stream.batcher import StreamConfig, StreamingView, StreamStats, TileBatcher, streaming_view
from cp3rt.runtime.batch.stream.switch import gil_switch_interval
from cp3rt.runtime.dynamics.threads import use_kernel_threads

if TYPE_CHECKING:  # pragma: no cover
    from cp3rt.runtime.pipeline import Pipeline

_END = object()


class _Workers:
    """``n`` threads taking items from one source, each running ``work`` on its share of the
    cores; finished entries queue up in completion order."""

    def __init__(self, n: int, kernel_threads: int, items: Iterable[Any], work: Callable[[Any], Any]) -> None:
        self._source, self._source_lock = iter(items), threading.Lock()
        self._work, self._kernel_threads = work, kernel_threads
        self.done: collections.deque = collections.deque()
        self.cond = threading.Condition()
        self.alive = n
        self.stop = threading.Event()
        self.pool = [threading.Thread(target=self._run, name=f"cp3rt-stream-{i}", daemon=True) for i in range(n)]

    def _run(self) -> None:
        try:
            use_kernel_threads(self._kernel_threads)  # the workers share the cores rather than each taking all
            while not self.stop.is_set():
                with self._source_lock:
                    item = next(self._source, _END)
                if item is _END:
                    return
                try:
                    value, error = self._work(item), None
                except BaseException as exc:  # noqa: BLE001 - reported per item
                    value, error = None, exc
                with self.cond:
                    self.done.append((item, value, error))
                    self.cond.notify()
        finally:
            with self.cond:
                self.alive -= 1
                self.cond.notify()

    def results(self) -> Iterator[tuple[Any, Any, BaseException | None]]:
        while True:
            with self.cond:
                while not self.done and self.alive > 0:
                    self.cond.wait()
                if not self.done:
                    return
                entry = self.done.popleft()
            yield entry


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
    (optional) receives the batcher's counters. Without ``config`` the defaults follow the
    pipeline's ``cpu_threads``."""
    config = config or StreamConfig(cpu_threads=pipeline.config.cpu_threads)
    batcher = TileBatcher(config.max_batch, stats=stats)
    view = streaming_view(pipeline, batcher)
    workers = _Workers(config.workers, config.threads_per_worker(), items, lambda item: work(view, item))
    with gil_switch_interval(config.gil_switch_s if config.workers > 1 else None):
        for t in workers.pool:
            t.start()
        try:
            yield from workers.results()
        finally:
            workers.stop.set()
            for t in workers.pool:
                t.join()
            batcher.close()
