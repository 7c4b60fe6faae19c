"""Instance-segmentation metrics with the matching rules of Cellpose 3 (spec §5): the public
names, from the modules that hold them.

* :mod:`.labels`: label validation, pixel-count tables, IoU, labels present, ``diameters``;
* :mod:`.matching`: assignment, ``average_precision``, ``mask_ious``, ``aggregated_jaccard_index``;
* :mod:`.report`: ``match_image``, ``ImageMatch``, ``MatchReport``.

Objects are counted as the labels present, not as the highest label (a deviation from the
reference, identical on consecutive labels; see :mod:`.matching` and docs/deviations.md).
"""

from __future__ import annotations

from cp3rt.defaults import AP_THRESHOLDS
from cp3rt.runtime.quality.labels import (
    diameters,
    intersection_over_union,
    label_overlap,
)
from cp3rt.runtime.quality.matching import (
    aggregated_jaccard_index,
    average_precision,
    mask_ious,
)
from cp3rt.runtime.quality.report import ImageMatch, MatchReport, match_image

__all__ = [
    "AP_THRESHOLDS", "ImageMatch", "MatchReport", "aggregated_jaccard_index", "average_precision",
    "diameters", "intersection_over_union", "label_overlap", "mask_ious", "match_image",
]
