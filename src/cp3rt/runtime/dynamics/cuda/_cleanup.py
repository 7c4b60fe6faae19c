"""Host side of the device clean-up (§4.6-4.7): resize, small-mask removal, hole filling.

The label maps (which labels to drop, the raster-order numbering) are built on the host from
per-label tables (O(labels)); every pass over pixels runs on the device. Where the parallel
hole filling cannot reproduce the sequential one (a label enclosing another, see
``_k_cleanup``), ``finish`` returns None and the caller runs the CPU clean-up instead.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cp3rt.runtime.dynamics._labels import label_dtype
from cp3rt.runtime.dynamics.cuda import _k_cleanup, _k_qc
from cp3rt.runtime.dynamics.cuda import _k_compact as kc
from cp3rt.runtime.dynamics.resize import nearest_source_index


def resize(cuda: Any, lab: Any, shape: tuple[int, int], stream: Any) -> Any:
    """Nearest resize on the device with the CPU's source indices (``resize_nearest``)."""
    sy = cuda.to_device(nearest_source_index(shape[0], lab.shape[0]), stream=stream)
    sx = cuda.to_device(nearest_source_index(shape[1], lab.shape[1]), stream=stream)
    out = cuda.device_array(shape, np.int32, stream=stream)
    _k_cleanup.gather[kc.launch(shape[0] * shape[1], stream)](lab, sy, sx, out)
    return out


def labels_to_drop(counts: np.ndarray, min_size: int, reference_bugs: bool) -> np.ndarray:
    """``cleanup.labels_to_drop`` on a count table (``counts[0]``: background pixels).

    A deliberate copy of that function's last lines: it takes the label image, this takes the
    counts the device has already made; the pipeline tests hold both to the same outputs
    (reference_bugs included).
    """
    if not reference_bugs:
        small = np.nonzero(counts < min_size)[0]
        return small[small > 0]
    present = np.nonzero(counts)[0]  # sorted values present, background first if any
    listed = counts[present][1:]  # the first entry is dropped even if it is not background
    return np.nonzero(listed < min_size)[0] + 1


def drop_and_renumber_map(counts: np.ndarray, first: np.ndarray, drop: np.ndarray) -> np.ndarray:
    """Label map of ``cleanup.drop_and_renumber``: ``drop`` -> 0, the other present labels
    1..K in raster order of their first pixel."""
    keep = counts > 0
    keep[0] = False
    keep[drop[drop < counts.size]] = False
    kept = np.flatnonzero(keep)
    remap = np.zeros(counts.size, np.int64)
    remap[kept[np.argsort(first[kept], kind="stable")]] = np.arange(1, kept.size + 1)
    return remap


def _count_and_first(cuda: Any, lab: Any, nlab: int, stream: Any) -> tuple[np.ndarray, np.ndarray]:
    ly, lx = lab.shape
    counts = cuda.device_array(nlab + 1, np.int64, stream=stream)
    first = cuda.device_array(nlab + 1, np.int64, stream=stream)
    kc.fill_1d[kc.launch(nlab + 1, stream)](counts, 0)
    kc.fill_1d[kc.launch(nlab + 1, stream)](first, ly * lx)
    _k_cleanup.count_and_first[kc.launch(ly * lx, stream)](lab, counts, first)
    counts_h = counts.copy_to_host(stream=stream)
    first_h = first.copy_to_host(stream=stream)
    stream.synchronize()
    counts_h[0] = ly * lx - counts_h[1:].sum()  # background, without a hot atomic on label 0
    return counts_h, first_h


def _mapped(cuda: Any, lab: Any, remap: np.ndarray, dtype: Any, stream: Any) -> Any:
    out = cuda.device_array(lab.shape, dtype, stream=stream)
    d_map = cuda.to_device(remap.astype(dtype), stream=stream)
    _k_cleanup.apply_map[kc.launch(lab.size, stream)](lab, d_map, out)
    return out


def _fill_holes(cuda: Any, lab: Any, nlab: int, stream: Any) -> tuple[Any, bool]:
    """(lab with every label's holes painted with the label, True if that was exact)."""
    ly, lx = lab.shape
    boxes = cuda.device_array((nlab + 1, 5), np.int64, stream=stream)
    _k_qc.box_init[kc.launch(nlab + 1, stream)](boxes, ly, lx)
    _k_qc.label_boxes[kc.launch(ly * lx, stream)](lab, boxes)
    b = boxes.copy_to_host(stream=stream)[1:]
    stream.synchronize()
    sizes = np.where(b[:, 4] > 0, (b[:, 1] - b[:, 0]) * (b[:, 3] - b[:, 2]), 0)
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    reached = cuda.device_array(max(int(sizes.sum()), 1), np.uint8, stream=stream)
    filled = cuda.device_array_like(lab, stream=stream)
    filled.copy_to_device(lab, stream=stream)
    conflict = cuda.device_array(1, np.int32, stream=stream)
    kc.fill_1d[1, 1, stream](conflict, 0)
    _k_cleanup.fill_holes[nlab, _k_cleanup.FILL_THREADS, stream](
        lab, boxes, cuda.to_device(offsets, stream=stream), reached, filled, conflict)
    exact = int(conflict.copy_to_host(stream=stream)[0]) == 0
    stream.synchronize()
    return filled, exact


def finish(cuda: Any, lab: Any, nlab: int, min_size: int, reference_bugs: bool,
           stream: Any) -> Any | None:
    """``fill_holes_int32`` on the device: a uint16/uint32 device label image, or None when
    a label encloses another and the sequential CPU clean-up must be used instead.

    ``lab`` (int32, labels <= ``nlab``) is not modified.
    """
    counts, first = _count_and_first(cuda, lab, nlab, stream)
    if min_size > 0:
        step1 = drop_and_renumber_map(counts, first, labels_to_drop(counts, min_size, reference_bugs))
        nlab = int(step1.max())
        lab = _mapped(cuda, lab, step1, np.int32, stream)
        present = np.arange(1, nlab + 1)
    else:
        present = np.flatnonzero(counts[1:] > 0) + 1
    if present.size == 0:
        return _mapped(cuda, lab, np.zeros(nlab + 1, np.int64), np.uint16, stream)
    filled, exact = _fill_holes(cuda, lab, nlab, stream)
    if not exact:
        return None
    # The CPU numbers labels j+1 in increasing order as it fills them (none vanishes here).
    rank = np.zeros(nlab + 1, np.int64)
    rank[present] = np.arange(1, present.size + 1)
    final = rank
    if min_size > 0:
        counts, first = _count_and_first(cuda, filled, nlab, stream)
        ranked_counts = np.concatenate([[counts[0]], counts[present]])
        ranked_first = np.concatenate([[0], first[present]])
        step3 = drop_and_renumber_map(
            ranked_counts, ranked_first, labels_to_drop(ranked_counts, min_size, reference_bugs))
        final = step3[rank]
    return _mapped(cuda, filled, final, label_dtype(int(final.max())), stream)
