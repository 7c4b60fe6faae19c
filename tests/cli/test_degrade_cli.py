"""``cp3rt degrade`` end to end through the console entry point."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile

from cp3rt.cli.app import main

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
YEAST = DATA / "baby_yeast" / "images"


def test_degrade_fixed_poisson(tmp_path, capsys):
    out = tmp_path / "noisy"
    args = ["degrade", str(YEAST / "evolve_testA.tif"), str(YEAST / "evolve_testB.tif"),
            "--noise", "poisson", "--pscale", "5", "--seed", "3"]
    assert main([*args, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "[2/2] evolve_testB.tif" in text and "wrote 2 image(s)" in text
    record = json.loads((out / "cp3rt_degrade.json").read_text())
    assert record["noise"] == {"kind": "fixed", "pscale": 5.0, "sigma": None, "ds": 1,
                               "iso": True}
    assert record["seed"] == 3 and "--pscale 5" in record["command"]
    assert [e["applied"]["pscale"] for e in record["images"]] == [5.0, 5.0]
    first = tifffile.imread(out / "evolve_testA.tif")
    assert first.dtype == np.float32 and first.shape == (81, 81)
    # Same command again: same pixels.
    assert main([*args, "--out", str(tmp_path / "again")]) == 0
    np.testing.assert_array_equal(first, tifffile.imread(tmp_path / "again" / "evolve_testA.tif"))


def test_degrade_random_preset_on_folder(tmp_path, capsys):
    out = tmp_path / "ds"
    assert main(["degrade", str(YEAST), "--noise", "downsample", "--out", str(out),
                 "--diameter", "15"]) == 0
    record = json.loads((out / "cp3rt_degrade.json").read_text())
    assert len(record["images"]) == len(list(YEAST.glob("*.tif")))
    assert record["noise"]["gblur"] == 5.0 and record["diameter"] == 15.0


@pytest.mark.parametrize("args,code,needle", [
    (["--noise", "blur", "--ds", "2"], 2, "ds cannot be fixed for noise 'blur'"),
    (["--noise", "poisson", "--pscale", "-1"], 2, "pscale is -1.0"),
    (["--noise", "speckle"], 2, "noise is 'speckle'"),
])
def test_degrade_option_errors(tmp_path, capsys, args, code, needle):
    rc = main(["degrade", str(YEAST), *args, "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == code and needle in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()


def test_degrade_input_error(tmp_path, capsys):
    rc = main(["degrade", str(tmp_path / "*.tif"), "--noise", "poisson", "--out",
               str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 1 and "matches no image files" in err


def test_degrade_help_teaches(capsys):
    assert main(["degrade", "--help"]) == 0
    out = capsys.readouterr().out
    assert "cp3rt degrade clean/ --noise poisson --out noisy/" in out and "--pscale" in out
