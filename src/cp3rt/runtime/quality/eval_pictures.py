"""Evaluation pictures (``cp3rt eval --pictures DIR``): where the false negatives and false
positives are. One ``<image>_eval.png`` per paired image: predictions matched to a true object
at the IoU threshold in green, true objects left unmatched (missed, false negatives) in
magenta, predictions left unmatched (extra, false positives) in yellow.

The classes come from the same one-to-one assignment as the scores (``matching.assign``), so
the picture's counts are the TP / FN / FP of ``cp3rt eval``'s table at that threshold.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cp3rt.defaults import MASK_IOU_THRESHOLD
from cp3rt.runtime.quality.labels import as_labels, iou_from_overlap, object_overlap
from cp3rt.runtime.quality.matching import assign

EVAL_PICTURE_SUFFIX = "_eval.png"


@dataclass(frozen=True)
class MatchClasses:
    """Label values of each class: ``matched`` (prediction labels with a true partner, and
    ``partners`` their true labels), ``missed`` true labels, ``extra`` prediction labels."""

    matched: np.ndarray
    partners: np.ndarray
    missed: np.ndarray
    extra: np.ndarray


def match_classes(masks_true: Any, masks_pred: Any, threshold: float = MASK_IOU_THRESHOLD) -> MatchClasses:
    """Matched / missed / extra objects of one image at IoU ``threshold``."""
    t = as_labels(masks_true, "masks_true")
    p = as_labels(masks_pred, "masks_pred")
    table, tv, pv = object_overlap(t, p)
    iou = iou_from_overlap(table)[1:, 1:]
    rows, cols = assign(iou, threshold)
    good = iou[rows, cols] >= threshold
    rows, cols = rows[good], cols[good]
    return MatchClasses(matched=pv[cols], partners=tv[rows], missed=np.setdiff1d(tv, tv[rows]),
                        extra=np.setdiff1d(pv, pv[cols]))


def write_eval_pictures(
    pred_dir: str | os.PathLike[str],
    gt_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    threshold: float = MASK_IOU_THRESHOLD,
    progress: Callable[[int, int, str], None] | None = None,
) -> list[Path]:
    """One evaluation picture per pair of ``pair_mask_files(pred_dir, gt_dir)`` into
    ``out_dir``; returns the pictures written."""
    from cp3rt.runtime.io.pictures import write_match_picture
    from cp3rt.runtime.io.read import read_masks
    from cp3rt.runtime.quality.evaluation import pair_mask_files

    pairs = pair_mask_files(pred_dir, gt_dir).pairs
    written = []
    for done, (key, pred_path, gt_path) in enumerate(pairs, start=1):
        gt, pred = read_masks(gt_path), read_masks(pred_path)
        if gt.ndim != 2 or gt.shape != pred.shape:
            continue  # volumes have no picture; a shape mismatch is the evaluation's error to report
        c = match_classes(gt, pred, threshold)
        path = Path(out_dir) / f"{key}{EVAL_PICTURE_SUFFIX}"
        written.append(write_match_picture(path, gt, pred, c.matched, c.missed, c.extra, title=key,
                                           threshold=threshold))
        if progress is not None:
            progress(done, len(pairs), key)
    return written
