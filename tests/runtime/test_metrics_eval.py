"""Folder evaluation: pairing rules, missing pairs, errors, and scores equal to the oracle
(cellpose.metrics) on real ground truth with perturbed predictions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from cellpose import metrics as ref_metrics
from PIL import Image
from scipy import ndimage

from cp3rt.errors import InputError
from cp3rt.runtime.io import write_masks_tif
from cp3rt.runtime.quality.evaluation import evaluate_folders, image_key, pair_mask_files

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
GT_DIR = DATA / "baby_yeast" / "masks"
THRESHOLDS = (0.5, 0.75, 0.9)


def _touch(folder: Path, *names: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        (folder / n).write_bytes(b"x")


def test_image_key():
    assert image_key("a/X_cp_masks.tif") == "X"
    assert image_key("X_masks.png") == "X"
    assert image_key("X_seg.npy") == "X"
    assert image_key("X.tif") == "X"
    assert image_key("_masks.tif") == "_masks"


def test_pairing_rules(tmp_path):
    _touch(tmp_path / "pred", "a_cp_masks.tif", "b_masks.tif", "c.tif", "d_seg.npy",
           "extra_cp_masks.tif", ".a_cp_masks.tif.x1.part.tif", "notes.txt", "flows.npy")
    _touch(tmp_path / "gt", "a.tif", "b_masks.tif", "c.png", "d.tiff", "e.tif", "README.md")
    pairing = pair_mask_files(tmp_path / "pred", tmp_path / "gt")
    assert [(k, p.name, g.name) for k, p, g in pairing.pairs] == [
        ("a", "a_cp_masks.tif", "a.tif"), ("b", "b_masks.tif", "b_masks.tif"),
        ("c", "c.tif", "c.png"), ("d", "d_seg.npy", "d.tiff")]
    assert pairing.missing_pred == ("e",)
    assert pairing.missing_gt == ("extra",)


def test_pairing_errors(tmp_path):
    _touch(tmp_path / "dup", "a_cp_masks.tif", "a_cp_masks.png", "a.tif")
    _touch(tmp_path / "gt", "a.tif")
    with pytest.raises(InputError, match="two files for image 'a'"):
        pair_mask_files(tmp_path / "dup", tmp_path / "gt")
    with pytest.raises(InputError, match="prediction folder .* does not exist"):
        pair_mask_files(tmp_path / "nope", tmp_path / "gt")
    _touch(tmp_path / "empty", "x.txt")
    with pytest.raises(InputError, match="ground-truth folder .* holds no label images"):
        pair_mask_files(tmp_path / "gt", tmp_path / "empty")
    _touch(tmp_path / "other", "zzz.tif")
    with pytest.raises(InputError, match="No prediction"):
        evaluate_folders(tmp_path / "other", tmp_path / "gt")


def test_pairing_a_run_folder_and_a_training_folder(tmp_path):
    """`cp3rt run imgs/` leaves X.tif, X_cp_masks.tif (and flows, _seg.npy, overlay) in one
    folder; ground truth in Cellpose's training layout is X.tif + X_masks.tif. The mask wins
    over the raw image on each side; the prediction prefers _cp_masks over _seg.npy."""
    _touch(tmp_path / "imgs", "a.tif", "a_cp_masks.tif", "a_seg.npy", "a_flows.tif", "a_dP.tif",
           "a_cellprob.tif", "a_overlay.png", "b.tif", "b_seg.npy", "c.png", "c_masks.png")
    _touch(tmp_path / "gt", "a.tif", "a_masks.tif", "b.tif", "b_masks.tif", "c_masks.tif")
    pairing = pair_mask_files(tmp_path / "imgs", tmp_path / "gt")
    assert [(k, p.name, g.name) for k, p, g in pairing.pairs] == [
        ("a", "a_cp_masks.tif", "a_masks.tif"), ("b", "b_seg.npy", "b_masks.tif"),
        ("c", "c_masks.png", "c_masks.tif")]
    assert pairing.missing_pred == pairing.missing_gt == ()


def test_pairing_one_folder_for_both_sides(tmp_path):
    """Cellpose's training folder after a run: ground truth takes X_masks, the prediction
    X_cp_masks; never the same file on both sides, never the raw image."""
    _touch(tmp_path / "d", "a.tif", "a_masks.tif", "a_cp_masks.tif", "b.tif", "b_masks.tif")
    pairing = pair_mask_files(tmp_path / "d", tmp_path / "d")
    assert [(k, p.name, g.name) for k, p, g in pairing.pairs] == [("a", "a_cp_masks.tif", "a_masks.tif")]
    assert pairing.missing_pred == ("b",)


def test_pairs_the_shipped_samples_folder(tmp_path):
    """The samples folder (image + its _masks ground truth) pairs with a run's output folder."""
    import shutil
    from importlib.resources import files

    samples = Path(str(files("cp3rt") / "assets" / "samples"))
    gt = tifffile.imread(samples / "dsb2018_nuclei_masks.tif")
    write_masks_tif(tmp_path / "dsb2018_nuclei_cp_masks.tif", gt)
    shutil.copy(samples / "dsb2018_nuclei.tif", tmp_path)  # `cp3rt run` wrote next to the image
    report = evaluate_folders(tmp_path, samples, (0.5,))
    assert [im.name for im in report.images] == ["dsb2018_nuclei"]
    assert report.mean_ap[0] == pytest.approx(1.0)
    assert report.images[0].n_true == 125


def test_shape_mismatch(tmp_path):
    write_masks_tif(tmp_path / "p" / "a_cp_masks.tif", np.ones((5, 5), np.uint16))
    write_masks_tif(tmp_path / "g" / "a.tif", np.ones((5, 6), np.uint16))
    with pytest.raises(InputError, match=r"a_cp_masks\.tif has shape \(5, 5\) but its ground"):
        evaluate_folders(tmp_path / "p", tmp_path / "g")


def test_scores_equal_oracle(tmp_path):
    gts, preds, names = [], [], []
    for i, path in enumerate(sorted(GT_DIR.glob("*.tif"))):
        gt = tifffile.imread(path)
        pred = ndimage.shift(gt, (i % 3, -(i % 2) * 2), order=0)
        if i == 2:
            pred = ndimage.grey_dilation(gt, size=5)
        names.append(path.stem)
        gts.append(gt.astype(np.int32))
        preds.append(pred.astype(np.int32))
        if i % 2:
            write_masks_tif(tmp_path / "pred" / f"{path.stem}_cp_masks.tif", pred)
        else:  # 16-bit PNG predictions are read too
            (tmp_path / "pred").mkdir(exist_ok=True)
            Image.fromarray(pred.astype(np.uint16)).save(tmp_path / "pred" / f"{path.stem}.png")
    calls = []
    report = evaluate_folders(tmp_path / "pred", GT_DIR, THRESHOLDS,
                              progress=lambda d, n, name: calls.append((d, n, name)))
    assert [c[0] for c in calls] == list(range(1, len(names) + 1))
    by_name = {im.name: im for im in report.images}
    ap, tp, fp, fn = ref_metrics.average_precision(gts, preds, list(THRESHOLDS))
    aji = ref_metrics.aggregated_jaccard_index(gts, preds)
    for k, name in enumerate(names):
        im = by_name[name]
        np.testing.assert_array_equal(im.tp, tp[k], err_msg=name)
        np.testing.assert_array_equal(im.fp, fp[k], err_msg=name)
        np.testing.assert_array_equal(im.fn, fn[k], err_msg=name)
        np.testing.assert_allclose(im.ap, ap[k], rtol=1e-6, err_msg=name)
        assert im.aji == pytest.approx(aji[k], abs=1e-12), name
    np.testing.assert_allclose(report.mean_ap, np.nanmean(ap, axis=0), rtol=1e-6)
    assert report.tp == tuple(int(v) for v in tp.sum(0))
    assert report.missing_pred == () and report.missing_gt == ()
