"""`cp3rt check`: prints per-output errors and the worst element, PASS with exit 0 in tolerance,
FAIL with exit 1 out of tolerance; --json writes the report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from cp3rt.cli.app import main
from cp3rt.models.cpnet import CPnet


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    root = tmp_path_factory.mktemp("checkcli")
    torch.manual_seed(0)
    weights = CPnet((2, 32, 64, 128, 256), 3).save(root / "tiny")  # the runtime needs style 256
    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    tifffile.imwrite(images / "a.tif", rng.normal(100, 20, (96, 120)).astype(np.float32))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CP3RT_CACHE_DIR", str(root / "cache"))
        yield weights, images, root


def test_pass_prints_errors_and_writes_json(setup, capsys) -> None:  # noqa: ANN001
    weights, images, root = setup
    rc = main(["check", str(weights), "--images", str(images), "--json", str(root / "r.json")])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "ort-cpu (fp32) vs torch-cpu on 1 tiles" in out
    assert "flows     max abs" in out and "worst at a.tif tile 0 channel" in out and out.strip().endswith("PASS")
    report = json.loads((root / "r.json").read_text())
    assert report["ok"] is True and {o["name"] for o in report["outputs"]} == {"flows", "style"}


def test_pictures_are_written_per_image(setup, capsys) -> None:  # noqa: ANN001
    """--pictures: one IMAGE_check.png per image (their content: tests/test_check.py)."""
    from PIL import Image

    weights, images, root = setup
    assert main(["check", str(weights), "--images", str(images), "--flow-threshold", "0",
                 "--pictures", str(root / "pics")]) == 0
    assert "pics/a_check.png" in capsys.readouterr().err
    assert Image.open(root / "pics" / "a_check.png").size[0] >= 120


def test_out_of_tolerance_exits_1(setup, capsys) -> None:  # noqa: ANN001
    weights, images, _ = setup
    rc = main(["check", str(weights), "--images", str(images), "--precision", "fp16", "--against", "ort",
               "--tolerance", "1e-9"])
    out = capsys.readouterr().out
    assert rc == 1 and "FAIL" in out and out.strip().endswith("out of tolerance")


def test_bad_flags_are_one_line_errors(setup, capsys) -> None:  # noqa: ANN001
    weights, _, _ = setup
    assert main(["check", str(weights), "--backend", "tvm"]) == 2
    assert "error: backend='tvm' is not allowed; allowed: ort, trt, torch-cuda." in capsys.readouterr().err
