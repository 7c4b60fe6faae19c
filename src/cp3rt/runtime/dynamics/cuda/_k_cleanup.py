"""Device kernels of the final clean-up (§4.6-4.7): resize, per-label counts and first pixels,
label maps, and hole filling, the twins of ``resize.py``, ``_fill.py`` and ``_labels.py``.

Hole filling on the CPU is sequential by label because one label's fill may swallow another
label. ``fill_holes`` fills every label at once from the same image, which gives the same
result exactly when no label's holes contain another label's pixels (then the holes are
background only, no two labels' holes meet, and no fill changes what another label sees); it
raises a flag otherwise, and the caller redoes the clean-up the sequential way.
"""

from __future__ import annotations

from numba import cuda, int32

from cp3rt.runtime.dynamics.cuda._env import simulator_enabled

# Threads per label block; the flood fill converges to the same set for any count.
FILL_THREADS = 4 if simulator_enabled() else 128


@cuda.jit
def gather(lab, sy, sx, out):  # pragma: no cover - device code
    """out[i, j] = lab[sy[i], sx[j]] (nearest resize with precomputed source indices)."""
    ly, lx = out.shape
    for i in range(cuda.grid(1), ly * lx, cuda.gridsize(1)):
        y = i // lx
        x = i - y * lx
        out[y, x] = lab[sy[y], sx[x]]


@cuda.jit
def count_and_first(lab, counts, first):  # pragma: no cover - device code
    """Pixels per label (label 0 not counted: the host takes it from the total) and the raster
    index of each label's first pixel (``first`` starts at the pixel count)."""
    ly, lx = lab.shape
    for i in range(cuda.grid(1), ly * lx, cuda.gridsize(1)):
        v = lab[i // lx, i % lx]
        if v > 0:
            cuda.atomic.add(counts, v, 1)
            cuda.atomic.min(first, v, i)


@cuda.jit
def apply_map(lab, remap, out):  # pragma: no cover - device code
    ly, lx = lab.shape
    for i in range(cuda.grid(1), ly * lx, cuda.gridsize(1)):
        y = i // lx
        x = i - y * lx
        out[y, x] = remap[lab[y, x]]


@cuda.jit
def fill_holes(lab, boxes, offsets, reached, filled, conflict):  # pragma: no cover - device code
    """Block k-1 paints the holes of label k inside its box into ``filled`` (a copy of ``lab``).

    A hole is a pixel of the box that is not k and cannot reach the box border through
    4-connected non-k pixels (the CPU's ``_fill_label``). ``reached`` is scratch, one byte per
    box pixel at ``offsets[k-1]``. Sets ``conflict[0]`` when a hole holds another label.
    """
    k = cuda.blockIdx.x + 1
    tid = cuda.threadIdx.x
    nthreads = cuda.blockDim.x
    if boxes[k, 4] == 0:
        return
    y0 = boxes[k, 0]
    x0 = boxes[k, 2]
    h = boxes[k, 1] - y0
    w = boxes[k, 3] - x0
    base = offsets[k - 1]
    for p in range(tid, h * w, nthreads):
        y = p // w
        x = p - y * w
        edge = y == 0 or x == 0 or y == h - 1 or x == w - 1
        reached[base + p] = 1 if edge and lab[y0 + y, x0 + x] != k else 0
    changed = cuda.shared.array(1, int32)
    while True:
        # Grow the reached set by one or more 4-steps per sweep until it stops changing: the
        # fixed point is the set of non-k pixels connected to the border, whatever the order.
        if tid == 0:
            changed[0] = 0
        cuda.syncthreads()
        for p in range(tid, h * w, nthreads):
            if reached[base + p] == 0:
                y = p // w
                x = p - y * w
                if lab[y0 + y, x0 + x] != k and (
                        (y > 0 and reached[base + p - w] != 0)
                        or (y < h - 1 and reached[base + p + w] != 0)
                        or (x > 0 and reached[base + p - 1] != 0)
                        or (x < w - 1 and reached[base + p + 1] != 0)):
                    reached[base + p] = 1
                    changed[0] = 1
        cuda.syncthreads()
        if changed[0] == 0:
            break
        cuda.syncthreads()  # everyone has read the flag before thread 0 clears it
    for p in range(tid, h * w, nthreads):
        if reached[base + p] == 0:
            y = p // w
            x = p - y * w
            v = lab[y0 + y, x0 + x]
            if v != k:
                if v != 0:
                    conflict[0] = 1
                filled[y0 + y, x0 + x] = k
