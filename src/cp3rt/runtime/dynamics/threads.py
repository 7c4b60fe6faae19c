"""The dynamics' parallel kernels, callable from many threads at once without holding the GIL.

Why: the streaming engine, block runs, Dask workers and acquisition code call the dynamics from
several threads. A ``parallel=True`` kernel compiled without ``nogil`` keeps the GIL for its
whole run, so every other thread's Python (reading and writing files, the next image's
normalisation, feeding the GPU) stops while one image's seeds are found: on a 16-core host the
pipeline runs one stage at a time.

numba's thread pools differ in what they allow (numba's "Threading Layers" docs): ``tbb`` and
``omp`` take kernel launches from several threads at once; ``workqueue``, numba's fallback when
neither library loads (a pip install without libgomp or TBB), aborts the whole process on a
concurrent launch. So every parallel kernel is compiled ``nogil`` and launched through
:func:`parallel_kernel`, which serialises launches behind one process-wide lock until a launch
has shown that the layer in use is thread-safe, and for good when it is not.

Each launch spreads over the calling thread's numba thread count, which is per thread:
:func:`kernel_threads` sets it for a worker thread so that several workers share the cores
instead of each starting a pool as large as the machine.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable
from typing import Any

import numba

THREADSAFE_LAYERS = frozenset({"tbb", "omp"})

_LAUNCH_LOCK = threading.Lock()
_layer_threadsafe = False  # set once a launch has told which layer numba loaded


def _learn_layer() -> None:
    global _layer_threadsafe
    try:
        layer = numba.threading_layer()
    except ValueError:  # no parallel launch yet (or NUMBA_DISABLE_JIT: never one)
        return
    _layer_threadsafe = layer in THREADSAFE_LAYERS


def layer_is_threadsafe() -> bool:
    """True once a parallel kernel has run on a thread-safe layer (launches then run unlocked)."""
    return _layer_threadsafe


def parallel_kernel(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``numba.njit(parallel=True, nogil=True, cache=True)`` of ``fn``, launched safely from any
    thread. The compiled dispatcher stays reachable as ``.dispatcher`` (the kernel cache reads it)."""
    dispatcher = numba.njit(parallel=True, nogil=True, cache=True)(fn)

    @functools.wraps(fn)
    def launch(*args: Any) -> Any:
        if _layer_threadsafe:
            return dispatcher(*args)
        with _LAUNCH_LOCK:  # the first launch loads the layer; workqueue launches stay one at a time
            out = dispatcher(*args)
            _learn_layer()
            return out

    launch.dispatcher = dispatcher  # type: ignore[attr-defined]
    return launch


def use_kernel_threads(n: int) -> None:
    """Launch this thread's parallel kernels on ``n`` numba threads (numba keeps it per thread)."""
    numba.set_num_threads(max(1, min(n, numba.config.NUMBA_NUM_THREADS)))
    _learn_layer()  # set_num_threads has loaded the layer: no lock needed from here if it is safe


def cap_kernel_threads(cap: int | None) -> None:
    """Lower this thread's numba threads to ``cap`` where they are more (None: leave them):
    ``PipelineConfig.cpu_threads`` applied wherever an image starts."""
    if cap is not None and numba.get_num_threads() > cap:
        use_kernel_threads(cap)


def kernel_threads(workers: int, cores: int | None = None) -> int:
    """numba threads for each of ``workers`` threads sharing ``cores`` (default: the usable cores):
    an equal share, but at least 2 where there are 2 cores, since a worker often has the dynamics
    to itself while the others wait on the engine (2 cores, 3 workers: 1 thread each was slower
    than 2 in both rounds, 52.2 s vs 50.3 s, benchmarks/results/cores.md)."""
    cores = cores if cores is not None else usable_cores()
    share = max(min(2, cores), cores // max(1, workers))
    return max(1, min(numba.config.NUMBA_NUM_THREADS, share))


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS says, else all)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1
