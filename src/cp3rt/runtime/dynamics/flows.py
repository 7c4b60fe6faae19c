"""Masks -> flows by heat diffusion from each label's centre (§4.1, reference CPU path)."""

from __future__ import annotations

import numpy as np

from cp3rt.errors import ConfigError
from cp3rt.runtime.dynamics._heat import flows_into
from cp3rt.runtime.dynamics._labels import as_label_image, label_boxes


def masks_to_flows(masks: np.ndarray, niter: int | None = None) -> np.ndarray:
    """Unit flows (2, Y, X) float64 (Y component first) pointing to each label's source pixel.

    Per label: box enlarged by 1 px, source = label pixel nearest the centroid, ``niter``
    synchronous 3x3-mean steps (default 2 * (box height + box width + 4)), central differences,
    normalisation by ``1e-60 + |flow|``. Background and single-pixel labels get (0, 0).
    Label values need not be consecutive. 2-D only for now.
    """
    lab, _ = as_label_image(masks)
    if niter is not None and (isinstance(niter, bool) or int(niter) != niter or niter < 0):
        raise ConfigError(f"niter must be None or an integer >= 0; got {niter!r}.")
    mu = np.zeros((2, *lab.shape), np.float64)
    if lab.size == 0 or lab.max() == 0:
        return mu
    boxes = label_boxes(lab)
    flows_into(lab, boxes, -1 if niter is None else int(niter), mu)
    return mu
