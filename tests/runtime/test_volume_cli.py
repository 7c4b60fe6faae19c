"""``cp3rt run --do-3d / --stitch-threshold``: 3-D TIFF in, 3-D label TIFF out, equal to the
library's result; 2-D-only outputs refused for volumes with a one-line error."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ holds pipeline_testutil
import pipeline_testutil as U  # noqa: E402

from cp3rt import Pipeline  # noqa: E402
from cp3rt.cli.app import main  # noqa: E402

pytestmark = pytest.mark.slow  # each case exports/runs a CPnet on ~1000 small tiles (~20 s)


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory) -> Path:
    from cp3rt.artefacts import resolve_model

    models = U.write_zoo(tmp_path_factory.mktemp("zoo"))
    with U.zoo_env(models, tmp_path_factory.mktemp("cache")):
        return resolve_model("cyto3").path


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Path:
    src = U.data_image("stardist_dsb2018_nuclei/images/img2d.tif")
    vol = np.stack([src[3 * z : 3 * z + 48, 2 * z : 2 * z + 56] for z in range(10)])  # (Z, Y, X)
    path = tmp_path_factory.mktemp("in") / "stack.tif"
    tifffile.imwrite(path, vol)
    return path


@pytest.mark.parametrize("flags,settings", [
    (["--do-3d", "--anisotropy", "2"], {"do_3D": True, "anisotropy": 2.0}),
    (["--stitch-threshold", "0.25"], {"stitch_threshold": 0.25}),
], ids=["do3d", "stitch"])
def test_volume_in_volume_labels_out(onnx_model, stack, tmp_path, flags, settings):
    out = tmp_path / "out"
    assert main(["run", str(stack), "--model", str(onnx_model), "--backend", "ort",
                 "--diameter", "30", "--out", str(out), "--save-flows", *flags]) == 0
    masks = tifffile.imread(out / "stack_cp_masks.tif")
    assert masks.shape == (10, 48, 56) and masks.dtype == np.uint16
    assert tifffile.imread(out / "stack_flows.tif").shape == (10, 48, 56, 3)  # one picture per plane
    with Pipeline(onnx_model, backend="ort") as pipe:
        want = pipe.run(stack, diameter=30.0, channels=(0, 0), **settings).masks
    assert np.array_equal(masks, want)


def test_seg_npy_is_refused_for_volumes(onnx_model, stack, tmp_path, capsys):
    # (--overlay works for volumes: a montage of Z planes, tests/cli/test_run_screening_outputs.py)
    code = main(["run", str(stack), "--model", str(onnx_model), "--backend", "ort", "--diameter", "30",
                 "--out", str(tmp_path), "--do-3d", "--save-seg"])
    assert code == 1
    text = capsys.readouterr()
    assert "only work for 2-D images" in text.out + text.err
    assert not (tmp_path / "stack_cp_masks.tif").exists()
