"""Objects are counted as the labels present, not as the highest label (issue 13 item 6).

The reference counts ``max(label)`` objects, so a gap in the numbering is a phantom object; cp3rt
counts the labels that occur (docs/deviations.md). On consecutive labels both agree: the oracle
is run on the gapped images relabelled 1..n.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from cellpose import metrics as ref_metrics

from cp3rt.cli.app import main
from cp3rt.errors import InputError
from cp3rt.runtime.io import write_masks_tif
from cp3rt.runtime.quality.metrics import (
    aggregated_jaccard_index,
    average_precision,
    mask_ious,
    match_image,
)


def gapped_pair() -> np.ndarray:
    m = np.zeros((40, 40), np.uint16)
    m[2:10, 2:10] = 1
    m[20:30, 20:30] = 1000
    return m


def consecutive(m: np.ndarray) -> np.ndarray:
    values, inverse = np.unique(m, return_inverse=True)
    offset = 0 if values[0] == 0 else 1
    return (inverse.reshape(m.shape) + offset).astype(np.int64)


def test_identical_gapped_labels_score_one():
    m = gapped_pair()
    ap, tp, fp, fn = average_precision(m, m)
    np.testing.assert_array_equal(ap, 1.0)
    np.testing.assert_array_equal(tp, 2)
    np.testing.assert_array_equal(fp, 0)
    np.testing.assert_array_equal(fn, 0)
    im = match_image("gapped", m, m)
    assert (im.n_true, im.n_pred, im.tp[0], im.fp[0], im.fn[0]) == (2, 2, 2, 0, 0)
    assert im.ap == (1.0, 1.0, 1.0)
    assert aggregated_jaccard_index(m, m) == 1.0


def test_huge_label_values_do_not_size_the_table():
    # A table of (max+1)^2 cells would be 1.6e19 bytes; labels present are what is counted.
    m = np.zeros((8, 8), np.uint32)
    m[1:3, 1:3] = 4_000_000_000
    m[5:7, 5:7] = 7
    ap, tp, *_ = average_precision(m, m)
    np.testing.assert_array_equal(tp, 2)
    assert aggregated_jaccard_index(m, m) == 1.0
    # mask_ious returns one entry per label value (the reference's contract): refused, one line.
    with pytest.raises(InputError, match="up to 4000000000, more than its 64 pixels; relabel"):
        mask_ious(m, m)
    iou, match = mask_ious(np.where(m == 7, 60, 0), np.where(m == 7, 7, 0))  # entry 59: label 60
    assert iou.shape == (60,) and iou[59] == 1.0 and match[59] == 7 and iou[:59].max() == 0


def test_gapped_equal_oracle_on_relabelled():
    t = np.zeros((60, 60), np.int32)
    for k, (y, x) in enumerate([(5, 5), (5, 30), (30, 5), (30, 30), (45, 45)], start=1):
        t[y:y + 10, x:x + 10] = k * 7  # labels 7, 14, ... (gaps)
    p = np.roll(t, 3, axis=1)
    p[p == 21] = 0                     # a dropped object
    p[50:58, 2:10] = 999               # an extra one
    ths = [0.5, 0.75, 0.9]
    got = average_precision(t, p, ths)
    want = ref_metrics.average_precision(consecutive(t), consecutive(p), ths)
    for name, g, w in zip(("ap", "tp", "fp", "fn"), got, want):
        np.testing.assert_allclose(g, w, rtol=1e-6, err_msg=name)
    assert aggregated_jaccard_index(t, p) == pytest.approx(
        ref_metrics.aggregated_jaccard_index([consecutive(t)], [consecutive(p)])[0], abs=1e-12)


def test_eval_cli_on_gapped_labels(tmp_path, capsys):
    m = gapped_pair()
    write_masks_tif(tmp_path / "pred" / "a_cp_masks.tif", m)
    write_masks_tif(tmp_path / "gt" / "a.tif", m)
    out_json = tmp_path / "s.json"
    rc = main(["eval", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"),
               "--json", str(out_json)])
    assert rc == 0
    data = json.loads(out_json.read_text())
    assert data["images"][0]["n_true"] == 2 and data["images"][0]["n_pred"] == 2
    assert data["overall"]["mean_ap"] == [1.0, 1.0, 1.0]
