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


def _images_by_key(folder: str | os.PathLike[str] | None) -> dict[str, Path]:
    """Image files of ``folder`` by image name (``x.ome.tif`` -> 'x'); {} without a folder."""
    if folder is None:
        return {}
    from cp3rt.runtime.io.discover import find_images

    return {p.stem.removesuffix(".ome"): p for p in find_images([folder])}


def _backdrop(path: Path | None, shape: tuple[int, ...]) -> np.ndarray | None:
    """The image to draw on, (Y, X) or (Y, X, C) of the masks' size; None when there is none
    or it does not fit (a picture on a dark background then)."""
    if path is None:
        return None
    from cp3rt.runtime.io.read import read_image

    img = read_image(path)
    if img.shape[:2] == shape and img.ndim in (2, 3):
        return img
    if img.ndim == 3 and img.shape[1:] == shape:
        return np.moveaxis(img, 0, -1)
    return None


def write_eval_pictures(
    pred_dir: str | os.PathLike[str],
    gt_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    threshold: float = MASK_IOU_THRESHOLD,
    progress: Callable[[int, int, str], None] | None = None,
    images_dir: str | os.PathLike[str] | None = None,
) -> list[Path]:
    """One evaluation picture per pair of ``pair_mask_files(pred_dir, gt_dir)`` into
    ``out_dir``, drawn over the image of the same name in ``images_dir`` when there is one;
    returns the pictures written."""
    from cp3rt.runtime.io.pictures import write_match_picture
    from cp3rt.runtime.io.read import read_masks
    from cp3rt.runtime.quality.evaluation import pair_mask_files

    pairs = pair_mask_files(pred_dir, gt_dir).pairs
    images = _images_by_key(images_dir)
    written = []
    for done, (key, pred_path, gt_path) in enumerate(pairs, start=1):
        gt, pred = read_masks(gt_path), read_masks(pred_path)
        if gt.ndim != 2 or gt.shape != pred.shape:
            continue  # volumes have no picture; a shape mismatch is the evaluation's error to report
        c = match_classes(gt, pred, threshold)
        path = Path(out_dir) / f"{key}{EVAL_PICTURE_SUFFIX}"
        written.append(write_match_picture(path, gt, pred, c.matched, c.missed, c.extra, title=key,
                                           threshold=threshold, image=_backdrop(images.get(key), gt.shape)))
        if progress is not None:
            progress(done, len(pairs), key)
    return written


CHECK_PICTURE_SUFFIX = "_check.png"
CHECK_LEGEND = ("in both", "reference only", "engine only")


def write_check_picture(out_dir: str | os.PathLike[str], name: str, image: Any, reference: Any, engine: Any,
                        *, engine_name: str, reference_name: str, threshold: float = MASK_IOU_THRESHOLD) -> Path:
    """``cp3rt check --pictures``: the engine's masks against the reference's on ``image``, as an
    evaluation picture with the reference in place of the ground truth (``<name>_check.png``)."""
    from cp3rt.runtime.io.pictures import write_match_picture

    c = match_classes(reference, engine, threshold)
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[1:] == np.shape(reference):  # (C, Y, X) -> (Y, X, C)
        img = np.moveaxis(img, 0, -1)
    stem = Path(name).stem.removesuffix(".ome")  # a.tif -> a_check.png
    return write_match_picture(Path(out_dir) / f"{stem}{CHECK_PICTURE_SUFFIX}", reference, engine, c.matched,
                               c.missed, c.extra, title=f"{name}: {engine_name} vs {reference_name}",
                               threshold=threshold, image=img, legend=CHECK_LEGEND)
