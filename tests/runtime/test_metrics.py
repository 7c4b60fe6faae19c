"""Metrics: spec §5 / Appendix A vectors and parity with cellpose.metrics (the oracle) on real
ground-truth masks with realistic perturbations."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from cellpose import metrics as ref_metrics
from cellpose import utils as ref_utils
from scipy import ndimage

from cp3rt.errors import ConfigError, InputError
from cp3rt.runtime.quality.metrics import (
    MatchReport,
    aggregated_jaccard_index,
    average_precision,
    diameters,
    intersection_over_union,
    mask_ious,
    match_image,
)

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
GT_FILES = [
    DATA / "stardist_dsb2018_nuclei" / "masks" / "img2d.tif",
    DATA / "baby_bacteria_mothermachine" / "masks" / "mmsCMOS_testA.tif",
    DATA / "baby_yeast" / "masks" / "evolve_testA.tif",
    DATA / "ctc_sim_nuclei" / "masks" / "seq01_t012.tif",
]
# Counts are integers and AP a ratio of them: both must agree exactly with the reference.
COUNT_ATOL = 0.0
# IoU / AJI are float64 ratios computed in a different order: allow rounding only.
IOU_ATOL = 1e-12
DIAMETER_RTOL = 1e-12


def assert_close(name: str, got, want, atol: float, rtol: float = 0.0) -> None:
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, f"{name}: shape {got.shape} != {want.shape}"
    both_nan = np.isnan(got) & np.isnan(want)
    err = np.where(both_nan, 0.0, np.abs(got - want))
    bad = ~(err <= atol + rtol * np.abs(want))
    if bad.any():
        worst = np.unravel_index(np.nanargmax(np.where(np.isnan(err), np.inf, err)), err.shape)
        pytest.fail(
            f"{name}: mismatch rate {bad.mean():.3%}; worst at {worst}: got {got[worst]!r}, "
            f"want {want[worst]!r} (atol {atol}, rtol {rtol})"
        )


# ---- spec vectors ----------------------------------------------------------------------------


def consecutive(m: np.ndarray) -> np.ndarray:
    """Labels renumbered 1..n in order of value: where the reference counts objects as cp3rt."""
    values, inverse = np.unique(m, return_inverse=True)
    return (inverse.reshape(m.shape) + (0 if values[0] == 0 else 1)).astype(np.int32)


def appendix_pair() -> tuple[np.ndarray, np.ndarray]:
    """Two true squares (labels 1, 2); prediction labels 1 and 3 (2 unused), each shifted."""
    t = np.zeros((30, 40), np.int32)
    t[2:12, 2:12] = 1
    t[15:25, 20:30] = 2
    p = np.zeros_like(t)
    p[2:12, 3:13] = 1    # shifted by 1 column: IoU 90/110 = 0.818
    p[15:25, 23:33] = 3  # shifted by 3 columns: IoU 70/130 = 0.538
    return t, p


def test_appendix_a_average_precision():
    t, p = appendix_pair()
    # Appendix A counts the unused label 2 as a false positive: AP [0.667, 0.25, 0], TP [2, 1, 0],
    # FP [1, 2, 3], FN [0, 1, 2]. cp3rt counts the labels present (docs/deviations.md): the two
    # predicted objects give FP [0, 1, 2], which is the reference's answer on labels 1, 2.
    ap, tp, fp, fn = average_precision(t, p)
    np.testing.assert_allclose(ap, [1.0, 1 / 3, 0.0], rtol=1e-6)
    np.testing.assert_array_equal(tp, [2, 1, 0])
    np.testing.assert_array_equal(fp, [0, 1, 2])
    np.testing.assert_array_equal(fn, [0, 1, 2])
    assert ap.dtype == np.float32
    want = ref_metrics.average_precision(t, consecutive(p))
    for g, w in zip((ap, tp, fp, fn), want):
        assert_close("appendix relabelled", g, w, COUNT_ATOL)


def test_appendix_a_aji_by_hand_and_oracle():
    t, p = appendix_pair()
    # Matched intersections 90 + 70 over the foreground union 110 + 130.
    assert aggregated_jaccard_index(t, p) == pytest.approx(160 / 240, abs=IOU_ATOL)
    assert_close("aji", aggregated_jaccard_index(t, p),
                 ref_metrics.aggregated_jaccard_index([t], [p])[0], IOU_ATOL)


def test_appendix_a_diameters():
    m = np.zeros((6, 8), np.int32)
    m[1:4, 1:6] = 1
    m[4, 6] = 2
    assert diameters(m) == pytest.approx(2.7492864, abs=1e-6)  # Appendix A value
    assert diameters(np.zeros((4, 4), int)) == 0.0


def test_iou_matches_slow_definition():
    rng = np.random.default_rng(0)
    t = rng.integers(0, 4, (15, 17))
    p = rng.integers(0, 6, (15, 17))
    iou = intersection_over_union(t, p)
    for a in range(t.max() + 1):
        for b in range(p.max() + 1):
            inter = np.sum((t == a) & (p == b))
            union = np.sum((t == a) | (p == b))
            assert iou[a, b] == pytest.approx(inter / union if union else 0.0, abs=1e-15)


# ---- parity with the oracle on real masks ------------------------------------------------------


def _shift(m, dy, dx):
    out = np.zeros_like(m)
    ys = slice(max(dy, 0), m.shape[0] + min(dy, 0))
    xs = slice(max(dx, 0), m.shape[1] + min(dx, 0))
    yd = slice(max(-dy, 0), m.shape[0] + min(-dy, 0))
    xd = slice(max(-dx, 0), m.shape[1] + min(-dx, 0))
    out[ys, xs] = m[yd, xd]
    return out


def perturbations(m: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = int(m.max())
    out = {"identity": m.copy(), "shift": _shift(m, 2, -3), "shift_far": _shift(m, 6, 5)}
    out["dilate"] = ndimage.grey_dilation(m, size=3)
    eroded = m.copy()
    eroded[ndimage.grey_erosion(m, size=5) != m] = 0
    out["erode"] = eroded
    dropped = m.copy()
    dropped[np.isin(m, rng.choice(np.arange(1, n + 1), size=max(1, n // 3), replace=False))] = 0
    out["drop_gaps"] = dropped  # labels keep their numbers: gaps count as false positives
    perm = np.concatenate([[0], rng.permutation(n) * 2 + 1])
    out["relabel_sparse"] = perm[m]
    merged = m.copy()
    merged[m == 2] = 1
    out["merge"] = merged
    split = m.copy()
    ys, xs = np.nonzero(m == 1)
    split[ys[ys > np.median(ys)], xs[ys > np.median(ys)]] = n + 1
    out["split"] = split
    noisy = m.copy()
    flip = rng.random(m.shape) < 0.05
    noisy[flip] = rng.integers(0, n + 1, size=int(flip.sum()))
    out["pixel_noise"] = noisy
    out["empty"] = np.zeros_like(m)
    return out


@pytest.fixture(scope="module", params=GT_FILES, ids=lambda p: p.parent.parent.name)
def gt_and_preds(request):
    m = tifffile.imread(request.param).astype(np.int32)
    return m, perturbations(m, seed=len(request.param.name))


def test_average_precision_parity(gt_and_preds):
    m, preds = gt_and_preds
    names = list(preds)
    trues = [m] * len(names)
    ths = [0.5, 0.6, 0.75, 0.9]
    got = average_precision(trues, [preds[k] for k in names], ths)
    # Gapped perturbations (drop_gaps, relabel_sparse, merge) are given to the oracle relabelled:
    # it counts max(label) objects, cp3rt the labels present; on consecutive labels they agree.
    want = ref_metrics.average_precision([consecutive(m)] * len(names),
                                         [consecutive(preds[k]) for k in names], ths)
    for label, g, w in zip(("ap", "tp", "fp", "fn"), got, want):
        assert g.shape == w.shape == (len(names), len(ths))
        assert_close(label, g, w, COUNT_ATOL)


def test_mask_ious_and_aji_parity(gt_and_preds):
    m, preds = gt_and_preds
    for name, p in preds.items():
        if p.max() == 0:
            continue  # the reference divides by zero here; cp3rt's behaviour is tested below
        iou, match = mask_ious(m, p)
        iou_ref, match_ref = ref_metrics.mask_ious(m, p)
        assert_close(f"{name}: iou", iou, iou_ref, IOU_ATOL)
        np.testing.assert_array_equal(match, match_ref, err_msg=name)
        assert_close(f"{name}: aji", aggregated_jaccard_index(m, p),
                     ref_metrics.aggregated_jaccard_index([m], [p])[0], IOU_ATOL)


def test_diameters_parity(gt_and_preds):
    m, preds = gt_and_preds
    for name in ("identity", "erode", "drop_gaps", "relabel_sparse"):
        assert_close(name, diameters(preds[name]), ref_utils.diameters(preds[name])[0], 0.0,
                     DIAMETER_RTOL)


def test_diameters_fixes_no_background_case():
    # Reference drops the first unique count, a real object when no pixel is 0 (spec bug).
    m = np.ones((4, 4), int)
    m[:, 2:] = 2
    assert diameters(m) == pytest.approx(np.sqrt(8) / (np.sqrt(np.pi) / 2))


# ---- edge cases and validation -----------------------------------------------------------------


def test_empty_cases():
    t, p = appendix_pair()
    z = np.zeros_like(t)
    ap, tp, fp, fn = average_precision(t, z)
    np.testing.assert_array_equal(tp, 0)
    np.testing.assert_array_equal(fn, 2)
    np.testing.assert_array_equal(ap, 0)
    ap, tp, fp, fn = average_precision(z, p)
    np.testing.assert_array_equal(fp, 2)  # labels 1 and 3: two objects
    ap, *_ = average_precision(z, z)
    assert np.all(np.isnan(ap))
    iou, match = mask_ious(t, z)
    np.testing.assert_array_equal(iou, 0)
    np.testing.assert_array_equal(match, 0)
    assert np.isnan(aggregated_jaccard_index(z, z))
    assert aggregated_jaccard_index(t, z) == 0.0


def test_single_threshold_and_list_shapes():
    t, p = appendix_pair()
    ap, tp, fp, fn = average_precision(t, p, 0.5)
    assert ap.shape == (1,) and tp[0] == 2
    ap, *_ = average_precision([t, t], [p, t], (0.5, 0.9))
    assert ap.shape == (2, 2)
    np.testing.assert_allclose(ap[1], 1.0)


def test_validation_errors():
    t, p = appendix_pair()
    with pytest.raises(ConfigError, match="thresholds"):
        average_precision(t, p, (0.5, 1.5))
    with pytest.raises(ConfigError, match="empty"):
        average_precision(t, p, ())
    with pytest.raises(InputError, match="2 images"):
        average_precision([t, t], [p], 0.5)
    with pytest.raises(InputError, match="shape"):
        average_precision(t, p[:, :-1])
    with pytest.raises(InputError, match="dtype"):
        average_precision(t.astype(str), p)


def test_match_report_summary():
    t, p = appendix_pair()
    a = match_image("a", t, p)
    b = match_image("b", t, t)
    empty = match_image("c", np.zeros_like(t), np.zeros_like(t))
    assert (a.tp, a.fp, a.fn) == ((2, 1, 0), (0, 1, 2), (0, 1, 2))
    assert (a.n_true, a.n_pred) == (2, 2)  # labels present: 1 and 3
    assert a.aji == pytest.approx(160 / 240)
    report = MatchReport((0.5, 0.75, 0.9), (a, b, empty), missing_pred=("x",))
    assert report.tp == (4, 3, 2)
    assert report.fp == (0, 1, 2)
    assert report.fn == (0, 1, 2)
    assert report.pooled_ap[1] == pytest.approx(3 / 5)
    # The empty image (AP NaN) is left out of the mean.
    assert report.mean_ap[1] == pytest.approx((1 / 3 + 1.0) / 2)
    d = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert d["images"][2]["ap"] == [None, None, None]
    assert d["missing_pred"] == ["x"]
    with pytest.raises(ConfigError, match="one per threshold"):
        MatchReport((0.5,), (a,))
    with pytest.raises(ConfigError, match="thresholds"):
        MatchReport((2.0, 0.5, 0.1), (a,))
