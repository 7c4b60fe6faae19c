"""Dynamic scheduling for ``prange`` loops whose iterations differ in cost.

By default numba splits a parallel loop into one equal slice per thread up front; a slice full
of large cells (or a thread that the OS pauses on a busy machine) then holds everyone up.
With a chunk size, threads take chunks of that many iterations as they become free.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numba


@contextlib.contextmanager
def chunked(size: int) -> Iterator[None]:
    """Run the parallel kernels called inside the block with chunks of ``size`` iterations."""
    previous = numba.set_parallel_chunksize(size)
    try:
        yield
    finally:
        numba.set_parallel_chunksize(previous)
