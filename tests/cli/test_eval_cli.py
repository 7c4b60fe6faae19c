"""``cp3rt eval`` end to end through the console entry point."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
from cellpose import metrics as ref_metrics

from cp3rt.cli.app import main
from cp3rt.runtime.io import write_masks_tif

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
GT_DIR = DATA / "baby_yeast" / "masks"


@pytest.fixture()
def pred_dir(tmp_path):
    pred = tmp_path / "pred"
    for i, path in enumerate(sorted(GT_DIR.glob("*.tif"))[:4]):
        gt = tifffile.imread(path)
        write_masks_tif(pred / f"{path.stem}_cp_masks.tif", np.roll(gt, i, axis=1))
    write_masks_tif(pred / "unpaired_cp_masks.tif", np.zeros((81, 81), np.uint16))
    return pred


def test_eval_table_and_json(pred_dir, tmp_path, capsys):
    out_json = tmp_path / "scores.json"
    rc = main(["eval", "--pred", str(pred_dir), "--gt", str(GT_DIR), "--json", str(out_json),
               "-t", "0.5,0.75", "-t", "0.9"])
    out = capsys.readouterr().out
    assert rc == 0
    for needle in ("evolve_testA", "overall", "AP@0.5", "AP@0.9", "AJI",
                   "no ground truth for 1 prediction(s): unpaired",
                   "no prediction for 4 ground-truth image(s)"):
        assert needle in out, needle
    data = json.loads(out_json.read_text())
    assert data["thresholds"] == [0.5, 0.75, 0.9]
    assert data["missing_gt"] == ["unpaired"]
    gts = [tifffile.imread(GT_DIR / f"{im['name']}.tif").astype(int) for im in data["images"]]
    preds = [tifffile.imread(pred_dir / f"{im['name']}_cp_masks.tif").astype(int)
             for im in data["images"]]
    ap, tp, fp, fn = ref_metrics.average_precision(gts, preds, [0.5, 0.75, 0.9])
    np.testing.assert_array_equal([im["tp"] for im in data["images"]], tp)
    np.testing.assert_array_equal([im["fp"] for im in data["images"]], fp)
    np.testing.assert_array_equal([im["fn"] for im in data["images"]], fn)
    np.testing.assert_allclose([im["ap"] for im in data["images"]], ap, rtol=1e-6)
    assert data["overall"]["tp"] == [int(v) for v in tp.sum(0)]
    assert tp[:, 0].sum() > tp[:, 2].sum()  # the shifts make the thresholds matter


@pytest.mark.parametrize("args,code,needle", [
    (["-t", "0.5,high"], 2, "--thresholds got 'high'"),
    (["-t", "1.5"], 2, "thresholds contains 1.5"),
])
def test_eval_bad_thresholds(pred_dir, capsys, args, code, needle):
    rc = main(["eval", "--pred", str(pred_dir), "--gt", str(GT_DIR), *args])
    err = capsys.readouterr().err
    assert rc == code and needle in err and err.count("\n") == 1


def test_eval_missing_folder(tmp_path, capsys):
    rc = main(["eval", "--pred", str(tmp_path / "none"), "--gt", str(GT_DIR)])
    err = capsys.readouterr().err
    assert rc == 1
    assert err.startswith("error: The prediction folder") and err.count("\n") == 1


def test_eval_help_teaches(capsys):
    rc = main(["eval", "--help"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "cp3rt eval --pred masks/ --gt ground_truth/" in out and "X_cp_masks.tif" in out


def test_library_and_cli_modules_do_not_import_torch():
    code = ("import sys, cp3rt.runtime.io, cp3rt.runtime.quality.metrics, cp3rt.runtime.quality.degrade, "
            "cp3rt.runtime.quality.evaluation, cp3rt.cli.eval, cp3rt.cli.degrade; "
            "bad = [m for m in ('torch', 'cellpose', 'cp3rt.models') if m in sys.modules]; "
            "assert not bad, bad")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
