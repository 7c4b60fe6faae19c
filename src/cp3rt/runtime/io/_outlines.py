"""numba kernel: outer-contour pixels of every label (what OpenCV's external border following
visits), one flood fill of the background per label bounding box."""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def outer_contours(masks: np.ndarray, boxes: np.ndarray, out: np.ndarray) -> None:
    """Mark in ``out`` the pixels of label k+1 (box ``boxes[k]`` = y0, y1, x0, x1) that have a
    4-neighbour in the background component reaching the box border.

    The box is padded by one ring of background so the flood fill starts outside the object;
    background is 4-connected and the object 8-connected, as in OpenCV's border following.
    """
    dy = (-1, 1, 0, 0)
    dx = (0, 0, -1, 1)
    for k in range(boxes.shape[0]):
        y0, y1, x0, x1 = boxes[k, 0], boxes[k, 1], boxes[k, 2], boxes[k, 3]
        if y1 <= y0:
            continue
        label = k + 1
        h = y1 - y0 + 2
        w = x1 - x0 + 2
        outer = np.zeros((h, w), dtype=np.uint8)
        stack = np.empty(h * w, dtype=np.int64)
        top = 0
        for i in range(h):  # the padding ring is background by definition
            for j in range(w):
                if i == 0 or j == 0 or i == h - 1 or j == w - 1:
                    outer[i, j] = 1
                    stack[top] = i * w + j
                    top += 1
        while top > 0:
            top -= 1
            i = stack[top] // w
            j = stack[top] % w
            for d in range(4):
                ni = i + dy[d]
                nj = j + dx[d]
                if ni < 1 or nj < 1 or ni > h - 2 or nj > w - 2 or outer[ni, nj]:
                    continue
                if masks[y0 + ni - 1, x0 + nj - 1] != label:
                    outer[ni, nj] = 1
                    stack[top] = ni * w + nj
                    top += 1
        for i in range(1, h - 1):
            for j in range(1, w - 1):
                if masks[y0 + i - 1, x0 + j - 1] == label and (
                    outer[i - 1, j] or outer[i + 1, j] or outer[i, j - 1] or outer[i, j + 1]
                ):
                    out[y0 + i - 1, x0 + j - 1] = True
