"""Device kernels: fill, and the raster-order list of the set pixels of a uint8 mask.

The CPU path numbers labels along pixel lists in raster order, so lists on the device are in
raster order too: one thread counts a row, a serial scan gives each row its offset (a few
thousand rows: microseconds), one thread per row writes its pixels.
"""

from __future__ import annotations

from numba import cuda

from cp3rt.runtime.dynamics.cuda._env import simulator_enabled

# Every element-wise kernel loops with a grid stride, so any launch size is correct. The
# simulator runs each thread as a Python thread: there a few threads with long loops are
# much faster than one thread per element.
THREADS = 8 if simulator_enabled() else 256
_MAX_BLOCKS = 1 if simulator_enabled() else 2**16


def launch(n: int, stream: object) -> tuple[int, int, object]:
    """Launch configuration ``kernel[launch(n, stream)](...)`` of a grid-stride loop over
    ``n`` elements: (blocks, threads per block, stream)."""
    return min(_MAX_BLOCKS, max(1, (n + THREADS - 1) // THREADS)), THREADS, stream


@cuda.jit
def fill_1d(arr, value):  # pragma: no cover - device code
    for i in range(cuda.grid(1), arr.shape[0], cuda.gridsize(1)):
        arr[i] = value


@cuda.jit
def fill_2d(arr, value):  # pragma: no cover - device code
    for i in range(cuda.grid(1), arr.size, cuda.gridsize(1)):
        arr[i // arr.shape[1], i % arr.shape[1]] = value


@cuda.jit
def row_counts(mask, counts):  # pragma: no cover - device code
    for y in range(cuda.grid(1), mask.shape[0], cuda.gridsize(1)):
        c = 0
        for x in range(mask.shape[1]):
            if mask[y, x] != 0:
                c += 1
        counts[y] = c


@cuda.jit
def exclusive_scan_serial(counts, offsets):  # pragma: no cover - device code
    """offsets[i] = sum(counts[:i]) for i in 0..len(counts) (one thread; counts are per row)."""
    if cuda.grid(1) == 0:
        total = 0
        for i in range(counts.shape[0]):
            offsets[i] = total
            total += counts[i]
        offsets[counts.shape[0]] = total


@cuda.jit
def row_fill(mask, offsets, ys, xs):  # pragma: no cover - device code
    for y in range(cuda.grid(1), mask.shape[0], cuda.gridsize(1)):
        j = offsets[y]
        for x in range(mask.shape[1]):
            if mask[y, x] != 0:
                ys[j] = y
                xs[j] = x
                j += 1
