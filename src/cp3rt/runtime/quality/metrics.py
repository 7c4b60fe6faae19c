"""Instance-segmentation metrics with the same matching rules as Cellpose 3 (spec §5).

Label counts come from the *maximum* label, not from the labels present, so a gap in the
numbering counts as a missing object (a false positive in a prediction, a false negative in the
truth) exactly as in the reference. Matching is a linear sum assignment on the reference's cost
``-(IoU >= th) - IoU / (2 * n_min)``: first maximise the number of pairs above the threshold,
then, among those, the summed IoU.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numba import njit
from scipy.optimize import linear_sum_assignment

from cp3rt.defaults import AP_THRESHOLDS, MASK_IOU_THRESHOLD
from cp3rt.errors import ConfigError, InputError

__all__ = [
    "AP_THRESHOLDS", "ImageMatch", "MatchReport", "aggregated_jaccard_index", "average_precision",
    "diameters", "intersection_over_union", "label_overlap", "mask_ious", "match_image",
]


# ---- label tables ----------------------------------------------------------------------------


@njit(cache=True, nogil=True)
def _label_overlap_kernel(x: np.ndarray, y: np.ndarray, nx: int, ny: int) -> np.ndarray:
    table = np.zeros((nx, ny), dtype=np.int64)
    for i in range(x.shape[0]):
        table[x[i], y[i]] += 1
    return table


def _as_labels(masks: Any, name: str) -> np.ndarray:
    arr = np.asarray(masks)
    if arr.dtype == bool:
        return arr.astype(np.uint8)
    if arr.dtype.kind == "f":
        # Label images saved as float (e.g. by some TIFF writers) are accepted when integral.
        if not np.all(np.isfinite(arr)) or np.any(arr != np.floor(arr)):
            raise InputError(f"{name} has non-integer values; a label image must hold integers.")
    elif arr.dtype.kind not in "iu":
        raise InputError(f"{name} has dtype {arr.dtype}; a label image must hold integers.")
    if arr.dtype.kind == "i" and arr.size and arr.min() < 0:
        raise InputError(f"{name} has negative labels (min {arr.min()}); labels must be >= 0.")
    # Integer label images keep their dtype (no copy); the kernel compiles once per dtype.
    return arr if arr.dtype.kind in "iu" else arr.astype(np.intp)


def label_overlap(masks_true: Any, masks_pred: Any) -> np.ndarray:
    """Contingency table ``(max_true+1, max_pred+1)`` of pixel counts, background included."""
    t = _as_labels(masks_true, "masks_true")
    p = _as_labels(masks_pred, "masks_pred")
    if t.shape != p.shape:
        raise InputError(
            f"masks_true has shape {t.shape} but masks_pred has shape {p.shape}; they must match."
        )
    nx = int(t.max()) + 1 if t.size else 1
    ny = int(p.max()) + 1 if p.size else 1
    return _label_overlap_kernel(np.ascontiguousarray(t).ravel(), np.ascontiguousarray(p).ravel(),
                                 nx, ny)


def intersection_over_union(masks_true: Any, masks_pred: Any) -> np.ndarray:
    """IoU of every (true, pred) label pair, background row/column included; 0 where undefined."""
    return _iou_from_overlap(label_overlap(masks_true, masks_pred))


def _iou_from_overlap(table: np.ndarray) -> np.ndarray:
    overlap = table.astype(np.float64)
    area_t = overlap.sum(axis=1, keepdims=True)
    area_p = overlap.sum(axis=0, keepdims=True)
    union = area_t + area_p - overlap
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = overlap / union
    iou[~np.isfinite(iou)] = 0.0
    return iou


def _assign(iou: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Reference assignment on an object IoU matrix (no background): (true_idx, pred_idx)."""
    n_min = min(iou.shape)
    if n_min == 0:
        empty = np.zeros(0, dtype=np.intp)
        return empty, empty
    cost = -(iou >= threshold).astype(np.float64) - iou / (2 * n_min)
    rows, cols = linear_sum_assignment(cost)
    return rows, cols


# ---- public metrics --------------------------------------------------------------------------


def _check_thresholds(thresholds: float | Sequence[float]) -> tuple[float, ...]:
    ths = (float(thresholds),) if np.isscalar(thresholds) else tuple(float(t) for t in thresholds)
    if not ths:
        raise ConfigError("thresholds is empty; give at least one IoU threshold in [0, 1].")
    for th in ths:
        if not 0.0 <= th <= 1.0:
            raise ConfigError(f"thresholds contains {th}; IoU thresholds must lie in [0, 1].")
    return ths


def _true_positives(iou: np.ndarray, ths: tuple[float, ...]) -> np.ndarray:
    """TP per threshold from an object IoU matrix (background excluded)."""
    tp = np.zeros(len(ths), dtype=np.float32)
    if min(iou.shape) == 0:
        return tp
    for k, th in enumerate(ths):
        rows, cols = _assign(iou, th)
        tp[k] = np.count_nonzero(iou[rows, cols] >= th)
    return tp


def average_precision(
    masks_true: Any, masks_pred: Any, thresholds: float | Sequence[float] = AP_THRESHOLDS
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(ap, tp, fp, fn)`` as float32, with ``AP = TP / (TP + FP + FN)`` (NaN if both empty).

    A single pair of label images gives arrays of shape ``(n_thresholds,)``; lists/tuples of
    label images give ``(n_images, n_thresholds)``.
    """
    ths = _check_thresholds(thresholds)
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
        t = _as_labels(t_raw, "masks_true")
        p = _as_labels(p_raw, "masks_pred")
        if t.shape != p.shape:
            raise InputError(
                f"masks_true[{n}] has shape {t.shape} but masks_pred[{n}] has shape {p.shape}."
            )
        iou = intersection_over_union(t, p)
        tp[n] = _true_positives(iou[1:, 1:], ths)
        fp[n] = iou.shape[1] - 1 - tp[n]  # table size = max label + 1: gaps count
        fn[n] = iou.shape[0] - 1 - tp[n]
        with np.errstate(invalid="ignore", divide="ignore"):
            ap[n] = tp[n] / (tp[n] + fp[n] + fn[n])
    if single:
        return ap[0], tp[0], fp[0], fn[0]
    return ap, tp, fp, fn


def _match_ious(iou: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """mask_ious on an object IoU matrix (background excluded)."""
    n_true = iou.shape[0]
    ious = np.zeros(n_true, dtype=np.float64)
    preds = np.zeros(n_true, dtype=np.int64)
    rows, cols = _assign(iou, MASK_IOU_THRESHOLD)
    ious[rows] = iou[rows, cols]
    preds[rows] = cols + 1
    return ious, preds


def mask_ious(masks_true: Any, masks_pred: Any) -> tuple[np.ndarray, np.ndarray]:
    """Per true label (index = label - 1): IoU with its assigned prediction and that label.

    All assigned pairs are reported, even below 0.5; unassigned true labels get IoU 0, label 0.
    """
    return _match_ious(intersection_over_union(masks_true, masks_pred)[1:, 1:])


def _aji_from_overlap(table: np.ndarray, iou: np.ndarray) -> float:
    _, preds = _match_ious(iou[1:, 1:])
    matched = np.nonzero(preds > 0)[0]
    inter = table[matched + 1, preds[matched]].sum()
    # Foreground in either image = all pixels minus those background in both.
    union = table.sum() - table[0, 0]
    return float(inter / union) if union else float("nan")


def aggregated_jaccard_index(masks_true: Any, masks_pred: Any) -> float:
    """Simplified AJI of §5: matched-pair intersections / pixels foreground in either image.

    NaN when both images are empty.
    """
    table = label_overlap(masks_true, masks_pred)
    return _aji_from_overlap(table, _iou_from_overlap(table))


def diameters(masks: Any) -> float:
    """Equivalent-circle diameter of the median object area, ``median(sqrt(area)) * 2/sqrt(pi)``.

    0.0 when there are no objects. Only labels > 0 count (the reference drops the first count
    of its unique-table, which is a real object when no background pixel exists; cp3rt does not).
    """
    m = _as_labels(masks, "masks")
    counts = np.bincount(m.ravel())[1:]
    counts = counts[counts > 0]
    if counts.size == 0:
        return 0.0
    return float(np.median(np.sqrt(counts)) / (np.sqrt(np.pi) / 2))


# ---- summary of an evaluation ----------------------------------------------------------------


@dataclass(frozen=True)
class ImageMatch:
    """Matching result of one image: object counts, true positives per threshold and AJI."""

    name: str
    n_true: int
    n_pred: int
    tp: tuple[int, ...]
    aji: float

    @property
    def fp(self) -> tuple[int, ...]:
        return tuple(self.n_pred - t for t in self.tp)

    @property
    def fn(self) -> tuple[int, ...]:
        return tuple(self.n_true - t for t in self.tp)

    @property
    def ap(self) -> tuple[float, ...]:
        return tuple(_ap(t, f, n) for t, f, n in zip(self.tp, self.fp, self.fn))


def _ap(tp: int, fp: int, fn: int) -> float:
    total = tp + fp + fn
    return tp / total if total else float("nan")


@dataclass(frozen=True)
class MatchReport:
    """Per-image matches plus what could not be paired, with overall scores.

    ``mean_ap`` averages per-image AP (images with no objects at all are ignored), as in the
    Cellpose papers; ``pooled_ap`` divides summed TP by summed TP+FP+FN.
    """

    thresholds: tuple[float, ...]
    images: tuple[ImageMatch, ...]
    missing_pred: tuple[str, ...] = field(default=())
    missing_gt: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        _check_thresholds(self.thresholds)
        for im in self.images:
            if len(im.tp) != len(self.thresholds):
                raise ConfigError(
                    f"images[{im.name!r}].tp has {len(im.tp)} values; expected one per threshold "
                    f"({len(self.thresholds)})."
                )

    def _total(self, attr: str) -> tuple[int, ...]:
        return tuple(
            int(sum(getattr(im, attr)[k] for im in self.images))
            for k in range(len(self.thresholds))
        )

    @property
    def tp(self) -> tuple[int, ...]:
        return self._total("tp")

    @property
    def fp(self) -> tuple[int, ...]:
        return self._total("fp")

    @property
    def fn(self) -> tuple[int, ...]:
        return self._total("fn")

    @property
    def pooled_ap(self) -> tuple[float, ...]:
        return tuple(_ap(t, f, n) for t, f, n in zip(self.tp, self.fp, self.fn))

    @property
    def mean_ap(self) -> tuple[float, ...]:
        rows = np.array([im.ap for im in self.images], dtype=np.float64).reshape(
            len(self.images), len(self.thresholds)
        )
        out = []
        for k in range(len(self.thresholds)):
            col = rows[:, k][np.isfinite(rows[:, k])]
            out.append(float(col.mean()) if col.size else float("nan"))
        return tuple(out)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (NaN becomes None)."""

        def clean(values: Sequence[float]) -> list[float | None]:
            return [None if not np.isfinite(v) else float(v) for v in values]

        return {
            "thresholds": list(self.thresholds),
            "images": [
                {
                    "name": im.name, "n_true": im.n_true, "n_pred": im.n_pred,
                    "ap": clean(im.ap), "tp": list(im.tp), "fp": list(im.fp), "fn": list(im.fn),
                    "aji": clean([im.aji])[0],
                }
                for im in self.images
            ],
            "overall": {
                "mean_ap": clean(self.mean_ap), "pooled_ap": clean(self.pooled_ap),
                "tp": list(self.tp), "fp": list(self.fp), "fn": list(self.fn),
            },
            "missing_pred": list(self.missing_pred),
            "missing_gt": list(self.missing_gt),
        }


def match_image(
    name: str, masks_true: Any, masks_pred: Any, thresholds: Sequence[float] = AP_THRESHOLDS
) -> ImageMatch:
    """Match one predicted label image against its ground truth (one overlap table)."""
    ths = _check_thresholds(thresholds)
    t = _as_labels(masks_true, f"ground truth of {name}")
    p = _as_labels(masks_pred, f"prediction of {name}")
    if t.shape != p.shape:
        raise InputError(
            f"ground truth of {name} has shape {t.shape} but its prediction has {p.shape}."
        )
    table = label_overlap(t, p)
    iou = _iou_from_overlap(table)
    tp = _true_positives(iou[1:, 1:], ths)
    return ImageMatch(
        name=name, n_true=table.shape[0] - 1, n_pred=table.shape[1] - 1,
        tp=tuple(int(v) for v in tp), aji=_aji_from_overlap(table, iou),
    )
