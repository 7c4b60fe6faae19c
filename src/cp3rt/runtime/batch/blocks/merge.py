"""Seam mending: labels of neighbouring blocks that are the same object get one global label.

Rule: block A and block B both segmented the region where their extended regions overlap
(a band 2 x halo wide across their shared border, or a corner square / edge bar / corner
cube for diagonal neighbours; the same in 2-D and 3-D). Within that region, label ``a`` of
A and label ``b`` of B are the same object when their IoU *counted inside the region* is >=
``merge_iou`` (default 0.5). IoU > 0.5 is a one-to-one relation (two disjoint labels cannot
both overlap ``b`` by more than half), so no chain can join two different objects through
one label. Objects that cross the border lie
whole inside the region (halo >= 2 diameters), both blocks see them whole and they match with
IoU near 1; an object cut by the edge of one block's extended region is never in that block's
core, so whether it matches does not change the output. Matches are joined with union-find;
the roots are numbered 1..N in order of (block, local label): labels are globally unique and
consecutive.

Only a frame of each block's labels (within 2 x halo of its extended edge, per axis) is kept,
on disk, so memory does not grow with the number of blocks.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import numpy as np

from cp3rt._fs import atomic_write_bytes
from cp3rt.runtime.batch.blocks.plan import Block, BlockGrid, box_slices, intersection


class FrameStore:
    """Per-block label frames as compressed .npz files in one folder (interior zeroed).

    ``halo`` is one int for every axis or one per axis (0 along an axis without neighbours:
    the whole extent along it is kept). ``FrameStore.temporary`` owns a fresh temporary folder
    that ``close`` removes; a plain ``FrameStore(folder, halo)`` writes into an existing folder,
    which is how Dask workers share one. Each frame is written under a temporary name and
    renamed, so a retried or killed task never leaves a half-written frame behind.
    """

    def __init__(self, folder: str | os.PathLike[str], halo: int | tuple[int, ...]) -> None:
        self.folder = Path(folder)
        self.halo = halo
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    @classmethod
    def temporary(cls, halo: int | tuple[int, ...],
                  parent: str | os.PathLike[str] | None = None) -> FrameStore:
        tmp = tempfile.TemporaryDirectory(prefix="cp3rt_blocks_", dir=parent)
        store = cls(tmp.name, halo)
        store._tmp = tmp
        return store

    def put(self, block: Block, labels: np.ndarray) -> None:
        frame = np.array(labels, dtype=np.uint32, copy=True)
        halos = self.halo if isinstance(self.halo, tuple) else (self.halo,) * frame.ndim
        widths = [2 * h for h in halos]
        if all(n > 2 * w for n, w in zip(frame.shape, widths)):
            # nobody else overlaps the interior
            frame[tuple(slice(w, n - w) for n, w in zip(frame.shape, widths))] = 0
        buf = io.BytesIO()
        np.savez_compressed(buf, labels=frame)
        atomic_write_bytes(self.folder / f"{block.index}.npz", buf.getvalue())

    def get(self, block: Block) -> np.ndarray:
        with np.load(self.folder / f"{block.index}.npz") as f:
            return f["labels"]

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()


class UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = np.arange(n, dtype=np.int64)

    def find(self, i: int) -> int:
        root = i
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[i] != root:  # path compression
            self.parent[i], i = root, self.parent[i]
        return int(root)

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)  # smaller id stays root: order-independent


def matching_pairs(la: np.ndarray, lb: np.ndarray, merge_iou: float) -> list[tuple[int, int]]:
    """(a, b) label pairs of two label images of one region with IoU >= merge_iou."""
    la = la.astype(np.int64, copy=False).ravel()
    lb = lb.astype(np.int64, copy=False).ravel()
    both = (la > 0) & (lb > 0)
    if not both.any():
        return []
    nb = int(lb.max()) + 1
    codes, inter = np.unique(la[both] * nb + lb[both], return_counts=True)
    size_a = np.bincount(la, minlength=int(la.max()) + 1)
    size_b = np.bincount(lb, minlength=nb)
    a, b = codes // nb, codes % nb
    iou = inter / (size_a[a] + size_b[b] - inter)
    keep = iou >= merge_iou
    return list(zip(a[keep].tolist(), b[keep].tolist()))


def global_tables(grid: BlockGrid, counts: list[int], present: list[np.ndarray],
                  frames: FrameStore, merge_iou: float) -> list[np.ndarray]:
    """Per block, a lookup table local label -> final global label (0 stays 0).

    ``present[k]`` are the local labels that occur in block k's core: only objects that reach
    the output are numbered, so the final labels are 1..N without gaps."""
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    uf = UnionFind(int(offsets[-1]) + 1)
    blocks = grid.blocks
    frame_a: tuple[int, np.ndarray | None] = (-1, None)
    for ia, ib in grid.neighbour_pairs():
        a, b = blocks[ia], blocks[ib]
        region = intersection(a, b)
        if region is None or not counts[ia] or not counts[ib]:
            continue
        if frame_a[0] != ia:  # pairs come grouped by their first block: read its frame once
            frame_a = (ia, frames.get(a))
        la = frame_a[1][box_slices(_shift(region, a.ext))]
        lb = frames.get(b)[box_slices(_shift(region, b.ext))]
        for la_id, lb_id in matching_pairs(la, lb, merge_iou):
            uf.union(int(offsets[ia] + la_id), int(offsets[ib] + lb_id))
    ids = np.concatenate([offsets[k] + np.asarray(p, np.int64) for k, p in enumerate(present)]
                         + [np.zeros(0, np.int64)])
    ids = np.sort(ids[ids > 0])
    final = np.zeros(int(offsets[-1]) + 1, dtype=np.int64)
    if ids.size:
        roots = np.array([uf.find(int(i)) for i in ids], dtype=np.int64)
        _, first, inverse = np.unique(roots, return_index=True, return_inverse=True)
        # number objects by first appearance (raster order of blocks, then local label)
        rank = np.empty(first.size, np.int64)
        rank[np.argsort(first)] = np.arange(first.size)
        final[ids] = rank[inverse] + 1
    return [np.concatenate([[0], final[offsets[k] + 1 : offsets[k + 1] + 1]]).astype(np.uint32)
            for k in range(len(counts))]


def _shift(box: tuple[int, ...], ext: tuple[int, ...]) -> tuple[int, ...]:
    """``box`` in image coordinates -> coordinates inside the extended region ``ext``."""
    return tuple(v - ext[i - i % 2] for i, v in enumerate(box))
