"""Host side of the device dynamics: allocations, launches, and the few small host steps.

What crosses to the host here (all small): the number of foreground pixels and of seeds
(array sizes), the per-seed point counts and first points (for the raster-order label
numbering, O(seeds)) and the label boxes (for the QC scratch layout, O(labels)). The clean-up
after these stages is in ``_cleanup``.
"""

from __future__ import annotations

import time
from typing import Any, NamedTuple

import numpy as np

from cp3rt.defaults import HIST_PAD
from cp3rt.runtime.dynamics.cuda import _k_compact as kc
from cp3rt.runtime.dynamics.cuda import _k_euler, _k_prepare, _k_qc, _k_seeds



class StageClock:
    """Adds the seconds since the previous mark to ``timings[stage]``; does nothing (and never
    synchronises the stream) when ``timings`` is None."""

    def __init__(self, stream: Any, timings: dict[str, float] | None) -> None:
        self.stream = stream
        self.timings = timings
        if timings is not None:
            stream.synchronize()
        self._last = time.perf_counter()

    def __call__(self, stage: str) -> None:
        if self.timings is None:
            return
        self.stream.synchronize()
        now = time.perf_counter()
        self.timings[stage] = self.timings.get(stage, 0.0) + now - self._last
        self._last = now


def _zeros(cuda: Any, shape: tuple[int, ...], dtype: Any, stream: Any, value: int = 0) -> Any:
    arr = cuda.device_array(shape, dtype, stream=stream)
    if arr.size:
        kernel = kc.fill_1d if arr.ndim == 1 else kc.fill_2d
        kernel[kc.launch(arr.size, stream)](arr, value)
    return arr


def _set_pixels(cuda: Any, mask: Any, stream: Any) -> tuple[Any, Any, int]:
    """(ys, xs, n): the nonzero pixels of a uint8 device mask, int32, in raster order."""
    rows = mask.shape[0]
    counts = cuda.device_array(rows, np.int64, stream=stream)
    offsets = cuda.device_array(rows + 1, np.int64, stream=stream)
    kc.row_counts[kc.launch(rows, stream)](mask, counts)
    kc.exclusive_scan_serial[1, 1, stream](counts, offsets)
    n = int(offsets[rows:].copy_to_host(stream=stream)[0])  # synchronises: sizes are needed here
    ys = cuda.device_array(max(n, 1), np.int32, stream=stream)
    xs = cuda.device_array(max(n, 1), np.int32, stream=stream)
    if n:
        kc.row_fill[kc.launch(rows, stream)](mask, offsets, ys, xs)
    return ys, xs, n


def prepare(cuda: Any, dP: Any, cellprob: Any, threshold: float, stream: Any) -> tuple[Any, ...]:
    """(flow5, field, ys, xs, n) on the device; see ``_k_prepare``."""
    ly, lx = cellprob.shape
    flow5 = cuda.device_array((2, ly, lx), np.float32, stream=stream)
    field = cuda.device_array((2, ly, lx), np.float32, stream=stream)
    foreground = cuda.device_array((ly, lx), np.uint8, stream=stream)
    _k_prepare.prepare[kc.launch(ly * lx, stream)](
        dP, cellprob, np.float32(threshold), flow5, field, foreground)
    ys, xs, n = _set_pixels(cuda, foreground, stream)
    return flow5, field, ys, xs, n


def follow(cuda: Any, field: Any, ys: Any, xs: Any, n: int, steps: int, interp: bool,
           stream: Any) -> Any:
    """End points (2, n) float32 on the device (bit-identical to the CPU kernel's)."""
    ends = cuda.device_array((2, n), np.float32, stream=stream)
    _k_euler.follow[kc.launch(n, stream)](field, ys[:n], xs[:n], steps, interp, ends)
    return ends


class Seeds(NamedTuple):
    """Device arrays of the seed stage (the histogram grid is padded by HIST_PAD)."""

    hist: Any  # end points per bin, int32
    sy: Any  # seed bins in raster order, int32 (first ``count`` entries)
    sx: Any
    count: int
    canvas: Any  # int64 key (count << 32 | seed index) of the seed owning each bin, 0: none
    qy: Any  # each point's bin, int32
    qx: Any


def seeds(cuda: Any, ends: Any, shape: tuple[int, int], stream: Any) -> Seeds:
    """Histogram of the end points, seeds, and the painted seed regions."""
    ly, lx = shape
    n = ends.shape[1]
    hshape = (ly + 2 * HIST_PAD, lx + 2 * HIST_PAD)
    hist = _zeros(cuda, hshape, np.int32, stream)
    qy = cuda.device_array(n, np.int32, stream=stream)
    qx = cuda.device_array(n, np.int32, stream=stream)
    _k_seeds.histogram[kc.launch(n, stream)](ends, ly, lx, hist, qy, qx)
    flags = cuda.device_array(hshape, np.uint8, stream=stream)
    _k_seeds.seed_flags[kc.launch(hist.size, stream)](hist, flags)
    sy, sx, ns = _set_pixels(cuda, flags, stream)
    canvas = _zeros(cuda, hshape, np.int64, stream)
    if ns:
        _k_seeds.paint_regions[kc.launch(ns, stream)](hist, sy[:ns], sx[:ns], canvas)
    return Seeds(hist, sy, sx, ns, canvas, qy, qx)


def raster_numbering(counts: np.ndarray, first: np.ndarray, max_count: float) -> np.ndarray:
    """Seed -> label map of ``drop_big_and_renumber``: seeds with more than ``max_count``
    points (or none) get 0, the others 1..K in the order of their first point."""
    kept = np.flatnonzero((counts[1:] > 0) & (counts[1:] <= max_count)) + 1
    remap = np.zeros(counts.size, np.int32)
    remap[kept[np.argsort(first[kept], kind="stable")]] = np.arange(1, kept.size + 1, dtype=np.int32)
    return remap


def labels(cuda: Any, seeded: Seeds, ys: Any, xs: Any, shape: tuple[int, int],
           max_size_fraction: float, stream: Any) -> tuple[Any, int]:
    """(int32 label image on the device, number of labels): lookup, large-mask removal, raster
    numbering (host, O(seeds)), scatter."""
    canvas, qy, qx, ns = seeded.canvas, seeded.qy, seeded.qx, seeded.count
    n = qy.shape[0]
    seed_of_point = cuda.device_array(n, np.int32, stream=stream)
    counts = _zeros(cuda, (ns + 1,), np.int64, stream)
    first = _zeros(cuda, (ns + 1,), np.int64, stream, value=n)
    _k_seeds.lookup[kc.launch(n, stream)](canvas, qy, qx, seed_of_point, counts, first)
    counts_h = counts.copy_to_host(stream=stream)
    first_h = first.copy_to_host(stream=stream)
    stream.synchronize()
    remap = raster_numbering(counts_h, first_h, float(shape[0] * shape[1]) * float(max_size_fraction))
    lab = _zeros(cuda, shape, np.int32, stream)
    _k_seeds.scatter[kc.launch(n, stream)](
        ys[:n], xs[:n], seed_of_point, cuda.to_device(remap, stream=stream), lab)
    return lab, int(remap.max())


def flow_errors(cuda: Any, lab: Any, nlab: int, flow5: Any, stream: Any) -> Any:
    """Per-label flow error (float64, entry k-1 is label k, NaN if absent) on the device."""
    ly, lx = lab.shape
    boxes = cuda.device_array((nlab + 1, 5), np.int64, stream=stream)
    _k_qc.box_init[kc.launch(nlab + 1, stream)](boxes, ly, lx)
    _k_qc.label_boxes[kc.launch(ly * lx, stream)](lab, boxes)
    boxes_h = boxes.copy_to_host(stream=stream)
    stream.synchronize()
    b = boxes_h[1:]
    # four float64 buffers per label over its box + 1 px (see _k_qc.flow_errors)
    sizes = np.where(b[:, 4] > 0, 4 * (b[:, 1] - b[:, 0] + 2) * (b[:, 3] - b[:, 2] + 2), 0)
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    scratch = cuda.device_array(max(int(sizes.sum()), 1), np.float64, stream=stream)
    err = cuda.device_array(nlab, np.float64, stream=stream)
    _k_qc.flow_errors[nlab, _k_qc.QC_THREADS, stream](
        lab, boxes, cuda.to_device(offsets, stream=stream), scratch, flow5, err)
    return err


def drop_bad_labels(cuda: Any, lab: Any, err: Any, threshold: float, stream: Any) -> None:
    """Zero, in place, the labels whose flow error exceeds ``threshold`` (no renumbering)."""
    ly, lx = lab.shape
    _k_qc.drop_labels[kc.launch(ly * lx, stream)](lab, err, float(threshold))
