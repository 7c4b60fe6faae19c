"""Matching predicted objects to true ones (spec §5): average precision, per-object IoU, AJI.

Matching is a linear sum assignment on the reference's cost ``-(IoU >= th) - IoU / (2 * n_min)``:
first maximise the number of pairs above the threshold, then, among those, the summed IoU.

Objects are the labels present (:func:`cp3rt.runtime.quality.labels.object_overlap`). The
reference counts ``max(label)`` objects, so a gap in the numbering is a phantom false positive
(in a prediction) or false negative (in the truth): identical ground truth and prediction with
labels {1, 1000} score AP 0.001 there and 1.0 here (docs/deviations.md). On consecutive labels
(everything Cellpose and cp3rt write) the counts and scores are the reference's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from cp3rt.defaults import AP_THRESHOLDS, MASK_IOU_THRESHOLD
from cp3rt.errors import ConfigError, InputError
from cp3rt.runtime.quality.labels import (
    as_labels,
    intersection_over_union,
    iou_from_overlap,
    object_overlap,
)


def assign(iou: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Reference assignment on an object IoU matrix (no background): (true_idx, pred_idx)."""
    n_min = min(iou.shape)
    if n_min == 0:
        empty = np.zeros(0, dtype=np.intp)
        return empty, empty
    cost = -(iou >= threshold).astype(np.float64) - iou / (2 * n_min)
    rows, cols = linear_sum_assignment(cost)
    return rows, cols


def check_thresholds(thresholds: float | Sequence[float]) -> tuple[float, ...]:
    """IoU thresholds as a tuple of floats in [0, 1] (ConfigError otherwise)."""
    ths = (float(thresholds),) if np.isscalar(thresholds) else tuple(float(t) for t in thresholds)
    if not ths:
        raise ConfigError("thresholds is empty; give at least one IoU threshold in [0, 1].")
    for th in ths:
        if not 0.0 <= th <= 1.0:
            raise ConfigError(f"thresholds contains {th}; IoU thresholds must lie in [0, 1].")
    return ths


def true_positives(iou: np.ndarray, ths: tuple[float, ...]) -> np.ndarray:
    """TP per threshold from an object IoU matrix (background excluded)."""
    tp = np.zeros(len(ths), dtype=np.float32)
    if min(iou.shape) == 0:
        return tp
    for k, th in enumerate(ths):
        rows, cols = assign(iou, th)
        tp[k] = np.count_nonzero(iou[rows, cols] >= th)
    return tp


def average_precision(
    masks_true: Any, masks_pred: Any, thresholds: float | Sequence[float] = AP_THRESHOLDS
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(ap, tp, fp, fn)`` as float32, with ``AP = TP / (TP + FP + FN)`` (NaN if both empty).

    A single pair of label images gives arrays of shape ``(n_thresholds,)``; lists/tuples of
    label images give ``(n_images, n_thresholds)``. Objects are the labels present.
    """
    ths = check_thresholds(thresholds)
    single = not isinstance(masks_true, (list, tuple))
    trues = [masks_true] if single else list(masks_true)
    preds = [masks_pred] if single else list(masks_pred)
    if len(trues) != len(preds):
        raise InputError(
            f"masks_true has {len(trues)} images but masks_pred has {len(preds)}; pair them 1:1."
        )
    shape = (len(trues), len(ths))
    ap, tp, fp, fn = (np.zeros(shape, np.float32) for _ in range(4))
    for n, (t_raw, p_raw) in enumerate(zip(trues, preds)):
        t = as_labels(t_raw, "masks_true")
        p = as_labels(p_raw, "masks_pred")
        if t.shape != p.shape:
            raise InputError(
                f"masks_true[{n}] has shape {t.shape} but masks_pred[{n}] has shape {p.shape}."
            )
        table, tv, pv = object_overlap(t, p)
        tp[n] = true_positives(iou_from_overlap(table)[1:, 1:], ths)
        fp[n] = pv.size - tp[n]
        fn[n] = tv.size - tp[n]
        with np.errstate(invalid="ignore", divide="ignore"):
            ap[n] = tp[n] / (tp[n] + fp[n] + fn[n])
    if single:
        return ap[0], tp[0], fp[0], fn[0]
    return ap, tp, fp, fn


def match_ious(iou: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row of an object IoU matrix (background excluded): IoU with its assigned column and
    that column's index + 1 (0: unassigned)."""
    n_true = iou.shape[0]
    ious = np.zeros(n_true, dtype=np.float64)
    preds = np.zeros(n_true, dtype=np.int64)
    rows, cols = assign(iou, MASK_IOU_THRESHOLD)
    ious[rows] = iou[rows, cols]
    preds[rows] = cols + 1
    return ious, preds


def mask_ious(masks_true: Any, masks_pred: Any) -> tuple[np.ndarray, np.ndarray]:
    """Per true label (index = label - 1): IoU with its assigned prediction and that label.

    All assigned pairs are reported, even below 0.5; unassigned true labels get IoU 0, label 0.
    The reference's per-label contract, on its table indexed by label value (so the arbitrary
    pairs of IoU 0 are the reference's too); InputError when a label exceeds the pixel count.
    """
    return match_ious(intersection_over_union(masks_true, masks_pred)[1:, 1:])


def aji_from_overlap(table: np.ndarray, iou: np.ndarray) -> float:
    """Simplified AJI from an object table (background row/column first) and its IoU."""
    _, preds = match_ious(iou[1:, 1:])
    matched = np.nonzero(preds > 0)[0]
    inter = table[matched + 1, preds[matched]].sum()
    # Foreground in either image = all pixels minus those background in both.
    union = table.sum() - table[0, 0]
    return float(inter / union) if union else float("nan")


def aggregated_jaccard_index(masks_true: Any, masks_pred: Any) -> float:
    """Simplified AJI of §5: matched-pair intersections / pixels foreground in either image.

    NaN when both images are empty.
    """
    t = as_labels(masks_true, "masks_true")
    p = as_labels(masks_pred, "masks_pred")
    table, _, _ = object_overlap(t, p)
    return aji_from_overlap(table, iou_from_overlap(table))
