"""``--exclude-on-edges``: drop the objects cut by the image border (their size and shape are
unknown), as Cellpose's ``exclude_on_edges`` (``utils.remove_edge_masks``, §8.2).

Same semantics as the reference: an object is removed when its bounding box starts at 0 or
ends at the image's size on any axis (Z included for a volume), then the remaining labels are
renumbered 1..n in their old order. cp3rt keeps the label image's dtype (the reference returns
int32).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from cp3rt.errors import ConfigError


def edge_labels(masks: np.ndarray) -> np.ndarray:
    """The labels whose bounding box touches the border of ``masks`` (sorted)."""
    touching = [k + 1 for k, box in enumerate(ndimage.find_objects(masks))
                if box is not None and any(s.start == 0 or s.stop == n for s, n in zip(box, masks.shape))]
    return np.asarray(touching, dtype=np.int64)


def exclude_on_edges(masks: Any) -> np.ndarray:
    """``masks`` without the objects touching the border, relabelled consecutively (1..n in
    the old label order); a new array of the same dtype."""
    m = np.asarray(masks)
    if m.ndim not in (2, 3) or m.dtype.kind not in "biu":
        raise ConfigError(f"masks has shape {m.shape} and dtype {m.dtype}; exclude_on_edges needs a "
                          "2-D or 3-D integer label image.")
    top = int(m.max(initial=0))
    if top == 0:
        return m.copy()
    work = m.astype(np.int64, copy=False)
    keep = np.zeros(top + 1, dtype=bool)
    keep[np.unique(work)] = True
    keep[0] = False
    keep[edge_labels(work)] = False
    lut = np.zeros(top + 1, dtype=np.int64)
    lut[keep] = np.arange(1, int(keep.sum()) + 1)
    return lut[work].astype(m.dtype, copy=False)
