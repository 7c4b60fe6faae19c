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
# Which file stands for image X when a folder holds several (lower wins). A prediction folder is
# usually where `cp3rt run` wrote `X_cp_masks.tif` next to the image `X.tif`; a ground-truth
# folder is usually Cellpose's training layout, `X.tif` + `X_masks.tif`. The bare `X.tif` counts
# only when no mask-named file exists for X: next to a mask it is the raw image.
PRED_RANK = {"_cp_masks": 0, "_masks": 1, "_seg": 2, "": 3}
GT_RANK = {"_masks": 0, "_seg": 1, "_cp_masks": 2, "": 3}
# Other outputs of Cellpose / cp3rt that are never label images (flows, pictures, restored).
_NOT_LABELS = ("_flows", "_flows_0", "_flows_1", "_flows_2", "_dP", "_cellprob", "_cp_output",
               "_restored", "_overlay", "_outlines")

Progress = Callable[[int, int, str], None]


def image_key(path: str | os.PathLike[str]) -> str:
    """Image stem a mask file belongs to: the file stem without a known mask suffix."""
    return _split(path)[0]


def _split(path: str | os.PathLike[str]) -> tuple[str, str]:
    """(image stem, mask suffix or '') of a file name: ``X_cp_masks.tif`` -> ('X', '_cp_masks')."""
    stem = Path(path).stem
    for suffix in STEM_SUFFIXES:
        if len(stem) > len(suffix) and stem.endswith(suffix):
            return stem[: -len(suffix)], suffix
    return stem, ""


@dataclass(frozen=True)
class Pairing:
    """Matched (key, prediction, truth) triples and the keys found on one side only."""

    pairs: tuple[tuple[str, Path, Path], ...]
    missing_pred: tuple[str, ...]   # ground truth without a prediction
    missing_gt: tuple[str, ...]     # predictions without ground truth


def _index(folder: Path, role: str, rank: dict[str, int],
           taken: dict[str, Path] | None = None) -> dict[str, Path]:
    """Image stem -> the one label file standing for it in ``folder``: the best ``rank``ed
    name (a bare ``X.tif`` only without a mask-named file); ``taken`` files (the other side's
    choice, when both sides are one folder) are passed over."""
    if not folder.is_dir():
        raise InputError(f"The {role} folder {folder} does not exist or is not a folder.")
    found: dict[str, list[tuple[str, Path]]] = {}
    for path in sorted(folder.iterdir()):
        if not path.is_file() or is_partial_file(path):
            continue
        if path.suffix.lower() not in MASK_SUFFIXES or path.stem.endswith(_NOT_LABELS):
            continue
        if path.suffix.lower() == ".npy" and not path.name.endswith("_seg.npy"):
            continue
        key, suffix = _split(path)
        found.setdefault(key, []).append((suffix, path))
    if not found:
        raise InputError(
            f"The {role} folder {folder} holds no label images ({', '.join(MASK_SUFFIXES)})."
        )
    used = {p.resolve() for p in (taken or {}).values()}
    index: dict[str, Path] = {}
    for key, files in found.items():
        masked = any(suffix for suffix, _ in files)
        files = [(rank[s], p) for s, p in files if (s or not masked) and p.resolve() not in used]
        if not files:
            continue
        top = min(r for r, _ in files)
        best = [p for r, p in files if r == top]
        if len(best) > 1:
            raise InputError(
                f"The {role} folder {folder} has two files for image '{key}': "
                f"{best[0].name} and {best[1].name}; keep one."
            )
        index[key] = best[0]
    return index


def pair_mask_files(pred_dir: str | os.PathLike[str], gt_dir: str | os.PathLike[str]) -> Pairing:
    """Pair prediction and ground-truth files of two folders by image stem.

    Several files for one image: a prediction is ``X_cp_masks`` > ``X_masks`` > ``X_seg.npy``,
    ground truth ``X_masks`` > ``X_seg.npy`` > ``X_cp_masks``; the bare ``X.tif`` only when
    nothing mask-named exists for X (else it is the raw image). One folder for both sides:
    ground truth chooses first and the prediction never takes the same file."""
    gts = _index(Path(gt_dir), "ground-truth", GT_RANK)
    same = Path(pred_dir).resolve() == Path(gt_dir).resolve()
    preds = _index(Path(pred_dir), "prediction", PRED_RANK, gts if same else None)
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
