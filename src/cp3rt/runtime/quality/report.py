"""Summary of an evaluation: per-image matches (:class:`ImageMatch`, made by
:func:`match_image`) and the scores over a set of images (:class:`MatchReport`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cp3rt.defaults import AP_THRESHOLDS
from cp3rt.errors import ConfigError, InputError
from cp3rt.runtime.quality.labels import as_labels, iou_from_overlap, object_overlap
from cp3rt.runtime.quality.matching import aji_from_overlap, check_thresholds, true_positives


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
        check_thresholds(self.thresholds)
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
    ths = check_thresholds(thresholds)
    t = as_labels(masks_true, f"ground truth of {name}")
    p = as_labels(masks_pred, f"prediction of {name}")
    if t.shape != p.shape:
        raise InputError(
            f"ground truth of {name} has shape {t.shape} but its prediction has {p.shape}."
        )
    table, true_values, pred_values = object_overlap(t, p)
    iou = iou_from_overlap(table)
    tp = true_positives(iou[1:, 1:], ths)
    return ImageMatch(
        name=name, n_true=int(true_values.size), n_pred=int(pred_values.size),
        tp=tuple(int(v) for v in tp), aji=aji_from_overlap(table, iou),
    )
