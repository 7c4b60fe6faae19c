"""Evaluate predicted label images against ground truth folders (the library side of
``cp3rt eval``): pair files by image stem, match each pair, summarise in a MatchReport."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cp3rt._fs import is_partial_file
from cp3rt.errors import InputError
from cp3rt.runtime.io.discover import natural_key
from cp3rt.runtime.io.read import read_masks
from cp3rt.runtime.quality.metrics import AP_THRESHOLDS, MatchReport, match_image

MASK_SUFFIXES = (".tif", ".tiff", ".png", ".npy")
# A prediction `X_cp_masks.tif` (Cellpose), `X_masks.tif` or `X_seg.npy` belongs to image X;
# ground truth named `X_masks.tif` (Cellpose training layout) or `X.tif` pairs the same way.
STEM_SUFFIXES = ("_cp_masks", "_masks", "_seg")

Progress = Callable[[int, int, str], None]


def image_key(path: str | os.PathLike[str]) -> str:
    """Image stem a mask file belongs to: the file stem without a known mask suffix."""
    stem = Path(path).stem
    for suffix in STEM_SUFFIXES:
        if len(stem) > len(suffix) and stem.endswith(suffix):
            return stem[: -len(suffix)]
    return stem


@dataclass(frozen=True)
class Pairing:
    """Matched (key, prediction, truth) triples and the keys found on one side only."""

    pairs: tuple[tuple[str, Path, Path], ...]
    missing_pred: tuple[str, ...]   # ground truth without a prediction
    missing_gt: tuple[str, ...]     # predictions without ground truth


def _index(folder: Path, role: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise InputError(f"The {role} folder {folder} does not exist or is not a folder.")
    index: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if not path.is_file() or is_partial_file(path):
            continue
        if path.suffix.lower() not in MASK_SUFFIXES:
            continue
        if path.suffix.lower() == ".npy" and not path.name.endswith("_seg.npy"):
            continue
        key = image_key(path)
        if key in index:
            raise InputError(
                f"The {role} folder {folder} has two files for image '{key}': "
                f"{index[key].name} and {path.name}; keep one."
            )
        index[key] = path
    if not index:
        raise InputError(
            f"The {role} folder {folder} holds no label images ({', '.join(MASK_SUFFIXES)})."
        )
    return index


def pair_mask_files(pred_dir: str | os.PathLike[str], gt_dir: str | os.PathLike[str]) -> Pairing:
    """Pair prediction and ground-truth files of two folders by image stem."""
    preds = _index(Path(pred_dir), "prediction")
    gts = _index(Path(gt_dir), "ground-truth")
    keys = sorted(set(preds) & set(gts), key=natural_key)
    return Pairing(
        pairs=tuple((k, preds[k], gts[k]) for k in keys),
        missing_pred=tuple(sorted(set(gts) - set(preds), key=natural_key)),
        missing_gt=tuple(sorted(set(preds) - set(gts), key=natural_key)),
    )


def evaluate_folders(
    pred_dir: str | os.PathLike[str],
    gt_dir: str | os.PathLike[str],
    thresholds: Sequence[float] = AP_THRESHOLDS,
    progress: Progress | None = None,
) -> MatchReport:
    """Match every paired file; ``progress(done, total, name)`` is called after each image."""
    pairing = pair_mask_files(pred_dir, gt_dir)
    if not pairing.pairs:
        raise InputError(
            f"No prediction in {pred_dir} has a ground truth with the same image name in "
            f"{gt_dir} (a prediction X_cp_masks.tif pairs with X.tif or X_masks.tif)."
        )
    images = []
    for done, (key, pred_path, gt_path) in enumerate(pairing.pairs, start=1):
        pred = read_masks(pred_path)
        gt = read_masks(gt_path)
        if pred.shape != gt.shape:
            raise InputError(
                f"{pred_path} has shape {pred.shape} but its ground truth {gt_path} has shape "
                f"{gt.shape}."
            )
        images.append(match_image(key, gt, pred, thresholds))
        if progress is not None:
            progress(done, len(pairing.pairs), key)
    return MatchReport(
        thresholds=tuple(float(t) for t in thresholds),
        images=tuple(images),
        missing_pred=pairing.missing_pred,
        missing_gt=pairing.missing_gt,
    )
