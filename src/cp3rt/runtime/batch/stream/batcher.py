"""The tile batcher: one thread owning the engine calls, merging same-shape requests from
many images into one batch, and the engine/pipeline stand-ins that route through it."""

from __future__ import annotations

import collections
import dataclasses
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

import numpy as np

from cp3rt import defaults as D
from cp3rt.errors import ConfigError, InputError
from cp3rt.runtime.dynamics.threads import cap_kernel_threads, kernel_threads, usable_cores
from cp3rt.runtime.nets import Nets
from cp3rt.runtime.pipeline import run_stages

if TYPE_CHECKING:  # pragma: no cover
    from cp3rt.runtime.config import RunConfig
    from cp3rt.runtime.nets import Net
    from cp3rt.runtime.pipeline import Pipeline
    from cp3rt.runtime.result import Result


def default_workers(cores: int | None = None) -> int:
    """Images in flight by default: 3, plus one per 2 cores on bigger hosts, at most 8."""
    cores = cores if cores is not None else usable_cores()
    return max(D.STREAM_WORKERS, min(D.STREAM_WORKERS_MAX, cores // D.STREAM_CORES_PER_WORKER))


@dataclasses.dataclass(frozen=True)
class StreamConfig:
    """How many images are in flight, how large a shared engine batch may grow, and how many
    numba threads each worker's dynamics use.

    Without ``cpu_threads`` the defaults come from the usable cores (:func:`default_workers`;
    threads: an equal share, at least 2 where there are 2). With it (a cap, as
    ``PipelineConfig.cpu_threads``) at most that many workers, and the cap shared out among
    them, at least 1 each, so that the dynamics of all images in flight stay within it."""

    workers: int | None = None  # None: the default, resolved to an int on construction
    max_batch: int = D.STREAM_MAX_BATCH
    kernel_threads: int | None = None
    gil_switch_s: float | None = D.STREAM_GIL_SWITCH_S  # None: leave the interpreter's interval
    cpu_threads: int | None = None

    def __post_init__(self) -> None:
        checks = [("max_batch", self.max_batch)]
        checks += [(name, value) for name, value in (("workers", self.workers), ("kernel_threads", self.kernel_threads),
                                                     ("cpu_threads", self.cpu_threads)) if value is not None]
        for name, value in checks:
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name}={value!r} is not allowed; allowed: an integer >= 1.")
        if self.gil_switch_s is not None and not 1e-5 <= self.gil_switch_s <= 0.1:
            raise ConfigError(f"gil_switch_s={self.gil_switch_s!r} is not allowed; allowed: None or 1e-5 to 0.1 seconds.")
        if None not in (self.kernel_threads, self.cpu_threads) and self.kernel_threads > self.cpu_threads:
            raise ConfigError(f"kernel_threads={self.kernel_threads} is above cpu_threads={self.cpu_threads}, "
                              "the cap it is taken from; lower it or raise the cap.")
        if self.workers is None:
            cap = self.cpu_threads
            object.__setattr__(self, "workers", default_workers() if cap is None else min(cap, default_workers(cap)))

    def threads_per_worker(self) -> int:
        if self.kernel_threads is not None:
            return self.kernel_threads
        if self.cpu_threads is not None:
            return max(1, self.cpu_threads // self.workers)
        return kernel_threads(self.workers)


@dataclasses.dataclass
class StreamStats:
    """Counters of the batcher: engine calls, tiles and how many calls mixed images."""

    calls: int = 0
    tiles: int = 0
    shared_calls: int = 0  # calls that served more than one request

    @property
    def mean_batch(self) -> float:
        return self.tiles / self.calls if self.calls else 0.0


class TileBatcher:
    """One thread that owns the engine calls and merges same-shape requests into one batch."""

    def __init__(self, max_batch: int = D.STREAM_MAX_BATCH, *, stats: StreamStats | None = None) -> None:
        self.max_batch = max_batch
        self.stats = stats if stats is not None else StreamStats()
        self._cond = threading.Condition()
        # (engine id, tile shape) -> requests in arrival order; dict order = oldest key first
        self._pending: dict[tuple, collections.deque] = {}
        self._engines: dict[int, Any] = {}
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="cp3rt-batcher", daemon=True)
        self._thread.start()

    def submit(self, engine: Any, batch: np.ndarray) -> Future:
        fut: Future = Future()
        key = (id(engine), batch.shape[1:])
        with self._cond:
            if self._closed:
                raise InputError("the streaming engine is closed.")
            self._engines[id(engine)] = engine
            self._pending.setdefault(key, collections.deque()).append((batch, fut))
            self._cond.notify()
        return fut

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join()

    def _take(self) -> tuple[Any, list] | None:
        with self._cond:
            while not self._pending and not self._closed:
                self._cond.wait()
            if not self._pending:
                return None
            key = next(iter(self._pending))
            queue = self._pending[key]
            taken, n = [], 0
            # Always take one request; add more while they fit in max_batch.
            while queue and (not taken or n + len(queue[0][0]) <= self.max_batch):
                item = queue.popleft()
                taken.append(item)
                n += len(item[0])
            if not queue:
                del self._pending[key]
            else:  # move the key to the back: other shapes get their turn
                self._pending[key] = self._pending.pop(key)
            return self._engines[key[0]], taken

    def _loop(self) -> None:
        while True:
            job = self._take()
            if job is None:
                return
            engine, taken = job
            try:
                x = taken[0][0] if len(taken) == 1 else np.concatenate([t[0] for t in taken])
                out = engine.infer(np.ascontiguousarray(x, dtype=np.float32))
            except BaseException as exc:  # noqa: BLE001 - handed to every requester
                for _, fut in taken:
                    fut.set_exception(exc)
                continue
            self.stats.calls += 1
            self.stats.tiles += len(x)
            self.stats.shared_calls += len(taken) > 1
            start = 0
            for batch, fut in taken:
                stop = start + len(batch)
                fut.set_result({k: v[start:stop] for k, v in out.items()})
                start = stop


class _SharedEngine:
    """Looks like the wrapped engine to a Net, but routes ``infer`` through the batcher."""

    def __init__(self, engine: Any, batcher: TileBatcher) -> None:
        self._engine = engine
        self._batcher = batcher
        self.manifest = getattr(engine, "manifest", None)
        self.backend = getattr(engine, "backend", "?")
        self.device_resident = False  # shared host batches: the GPU-resident path never streams

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        return self._batcher.submit(self._engine, np.asarray(batch)).result()

    def infer_many(self, batches: Iterable[np.ndarray]) -> Iterator[dict[str, np.ndarray]]:
        """One batch after another, each shared through the batcher (the Engine protocol)."""
        return (self.infer(b) for b in batches)

    def close(self) -> None:  # the Pipeline owns the real engine
        pass


class StreamingView:
    """A Pipeline as the batch runners use it (``pipeline.ImageRunner``), its nets' engine calls
    routed through a TileBatcher: the same stages on the same nets, engine batches shared."""

    def __init__(self, pipeline: Pipeline, batcher: TileBatcher) -> None:
        self._pipeline = pipeline
        self.config = pipeline.config
        self.run_config = pipeline.run_config
        self.segment_net = _shared(pipeline.segment_net, batcher)
        self.restore_net = _shared(pipeline.restore_net, batcher)
        self.restore_chan2_net = _shared(pipeline.restore_chan2_net, batcher)
        self._size_lock = threading.Lock()
        self._nets = Nets(self.segment_net, self.restore_net, self.restore_chan2_net, self.size_model)

    def size_model(self) -> Any:
        with self._size_lock:  # loaded once, on first use, by whichever worker gets there
            return self._pipeline.size_model()

    def run(self, image: np.ndarray, *, progress: Callable[[int, int], None] | None = None,
            run: RunConfig | None = None) -> Result:
        cap_kernel_threads(self.config.cpu_threads)
        return run_stages(self._nets, image, run or self.run_config, progress=progress)


def _shared(net: Net | None, batcher: TileBatcher) -> Net | None:
    if net is None:
        return None
    return dataclasses.replace(net, engine=_SharedEngine(net.engine, batcher))


def streaming_view(pipeline: Pipeline, batcher: TileBatcher) -> StreamingView:
    """A thread-safe stand-in for ``pipeline`` whose engine calls share batches."""
    return StreamingView(pipeline, batcher)


