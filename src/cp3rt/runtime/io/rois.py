"""Object outlines as polygons for Fiji/ImageJ and QuPath: ``<stem>_cp_outlines.txt`` and
``<stem>_rois.zip`` (spec §8.2, Cellpose's ``--save_txt`` and ``save_rois`` outputs).

Polygon of an object: its outer border traced pixel by pixel (8-connected, every border pixel
in order, the first one the top-most then left-most pixel), the traversal Suzuki & Abe's
border following gives (OpenCV's ``findContours`` with ``RETR_EXTERNAL``/``CHAIN_APPROX_NONE``,
which the reference uses). An object in several pieces gives the longest border, and a border
of 4 points or fewer is empty, as in the reference.

Text format (the reference's ``outlines_to_text``): one line per object in label order,
``x0,y0,x1,y1,...`` in pixel coordinates (x = column, y = row); an empty object gives an empty
line. The ROI set: one ImageJ polygon ROI per non-empty outline, named after its label, written
with ``roifile`` (the same library the reference uses).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from cp3rt.errors import ConfigError
from cp3rt.runtime.io.write import output_path

# The 8 neighbours clockwise on screen (row axis pointing down): E, SE, S, SW, W, NW, N, NE.
_DIRS = ((0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1), (-1, 0), (-1, 1))
_MIN_POINTS = 5  # the reference keeps a border of more than 4 points


def _direction(dy: int, dx: int) -> int:
    return _DIRS.index((dy, dx))


def trace_border(obj: np.ndarray, start: tuple[int, int]) -> np.ndarray:
    """The outer border of the 8-connected piece of ``obj`` (bool, padded by one background
    pixel) that holds ``start``, its top-most then left-most pixel: (N, 2) rows of (y, x)."""
    y0, x0 = start
    # Suzuki & Abe, outer border: look clockwise from the west neighbour for the first pixel.
    first = None
    for k in range(8):
        d = (4 + k) % 8
        if obj[y0 + _DIRS[d][0], x0 + _DIRS[d][1]]:
            first = d
            break
    if first is None:
        return np.array([[y0, x0]], dtype=np.int64)  # a lone pixel
    y1, x1 = y0 + _DIRS[first][0], x0 + _DIRS[first][1]
    prev, cur = (y1, x1), (y0, x0)
    points = []
    while True:
        points.append(cur)
        back = _direction(prev[0] - cur[0], prev[1] - cur[1])
        for k in range(1, 9):  # counter-clockwise from the pixel after the one we came from
            d = (back - k) % 8
            nxt = (cur[0] + _DIRS[d][0], cur[1] + _DIRS[d][1])
            if obj[nxt]:
                break
        if nxt == (y0, x0) and cur == (y1, x1):
            return np.asarray(points, dtype=np.int64)
        prev, cur = cur, nxt


def _object_outline(piece: np.ndarray, offset: tuple[int, int]) -> np.ndarray:
    """(N, 2) x, y points of the longest outer border of ``piece`` (a bool crop)."""
    obj = np.pad(piece, 1)
    parts, n = ndimage.label(obj, structure=np.ones((3, 3), dtype=bool))
    best = np.zeros((0, 2), dtype=np.int64)
    for box, k in zip(ndimage.find_objects(parts), range(1, n + 1)):
        rows, cols = np.nonzero(parts[box] == k)
        start = (box[0].start + int(rows[0]), box[1].start + int(cols[0]))
        border = trace_border(parts == k, start)
        if len(border) > len(best):
            best = border
    if len(best) < _MIN_POINTS:
        return np.zeros((0, 2), dtype=np.int64)
    return best[:, ::-1] - 1 + np.array([offset[1], offset[0]])


def outlines_list(masks: Any) -> list[np.ndarray]:
    """One (N, 2) int array of x, y border points per label present, in label order
    (empty (0, 2) for an object whose border has 4 points or fewer)."""
    m = np.asarray(masks)
    if m.ndim != 2 or m.dtype.kind not in "biu":
        raise ConfigError(f"masks has shape {m.shape} and dtype {m.dtype}; outlines need a 2-D "
                          "integer label image.")
    m = m.astype(np.int64, copy=False)
    out = []
    for k, box in enumerate(ndimage.find_objects(m), start=1):
        if box is not None:
            out.append(_object_outline(m[box] == k, (box[0].start, box[1].start)))
    return out


def outlines_text(outlines: list[np.ndarray]) -> str:
    """The ``_cp_outlines.txt`` text: one ``x0,y0,x1,y1,...`` line per outline."""
    return "".join(",".join(str(int(v)) for v in o.ravel()) + "\n" for o in outlines)


def write_outlines_txt(path: str | os.PathLike[str], masks: Any) -> Path:
    """Write the outlines of ``masks`` as ``_cp_outlines.txt`` text (ImageJ / QuPath import)."""
    text = outlines_text(outlines_list(masks))
    with output_path(path) as tmp:
        tmp.write_text(text, encoding="ascii")
    return Path(path)


def write_roi_zip(path: str | os.PathLike[str], masks: Any) -> Path:
    """Write one ImageJ polygon ROI per object of ``masks`` (named by label) into a ``.zip``
    that Fiji's ROI Manager opens."""
    from roifile import ImagejRoi, roiwrite

    m = np.asarray(masks)
    labels = [k for k in np.unique(m) if k != 0]
    rois = []
    for label, pts in zip(labels, outlines_list(m)):
        if len(pts):
            rois.append(ImagejRoi.frompoints(pts, name=f"{int(label):05d}"))
    with output_path(path) as tmp:
        roiwrite(tmp, rois, mode="w")
    return Path(path)
