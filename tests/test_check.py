"""cp3rt.check on CPU: ort vs the torch reference, the fp16 graph vs the fp32 graph, TensorRT (fake)
vs ort; the report names the worst element, and the check fails when out of tolerance."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

sys.path.insert(0, str(Path(__file__).resolve().parent / "fakes"))

import pipeline_testutil as pt  # noqa: E402
import trt_fixtures  # noqa: E402

from cp3rt.check import CheckConfig, describe_position, run_check, synthetic_images  # noqa: E402
from cp3rt.errors import ConfigError  # noqa: E402

# One real 200 x 200 nucleus crop (one 224 x 224 tile after padding). The random net's flows
# fail the flow QC, so the mask pipelines run with it off (as the pipeline parity tests do).
CROP = (slice(0, 200), slice(0, 200))
QC_OFF = 0.0
RANDOM_NET_FP16_AP50 = 0.85


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    root = tmp_path_factory.mktemp("check")
    weights = pt.write_reference_net(root / "calibrated_seg", nchan=2, nout=3, seed=100)
    images = root / "images"
    images.mkdir()
    tifffile.imwrite(images / "crop.tif", pt.data_image(pt.CALIBRATION_IMAGE)[CROP])
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CP3RT_CACHE_DIR", str(root / "cache"))  # exports shared by the module's tests
        yield weights, images


def test_ort_against_the_torch_reference(setup) -> None:  # noqa: ANN001
    weights, images = setup
    report = run_check(CheckConfig(str(weights), images=images, flow_threshold=QC_OFF))
    assert (report.engine, report.reference, report.tiles) == ("ort-cpu", "torch-cpu", 1)
    assert report.ok, report
    flows = {o.name: o for o in report.outputs}["flows"]
    assert flows.max_rel < 1e-4 and flows.share_out == 0.0
    (mask,) = report.masks
    assert mask.n_reference > 10 and mask.ap[0] == 1.0  # same masks, object for object


def test_the_check_picture_shows_the_engines_masks_against_the_references(setup, tmp_path) -> None:  # noqa: ANN001
    """``cp3rt check --pictures``: the eval picture with the reference as truth; ort and torch
    agree object for object here, so every object is drawn green ('in both'), none magenta or yellow."""
    from PIL import Image

    from cp3rt.runtime.io.pictures import EXTRA, MATCHED, MISSED
    from cp3rt.runtime.quality.eval_pictures import write_check_picture

    weights, images = setup
    written = []
    report = run_check(CheckConfig(str(weights), images=images, flow_threshold=QC_OFF),
                       on_masks=lambda name, image, ref, eng: written.append(write_check_picture(
                           tmp_path, name, image, ref, eng, engine_name="ort", reference_name="torch")))
    assert [p.name for p in written] == ["crop_check.png"] and report.masks[0].n_reference > 10
    picture = np.asarray(Image.open(written[0]).convert("RGB"))
    body = picture[picture.shape[0] // 4:]  # below the caption, whose legend shows each colour once
    count = {name: int(np.all(body == colour, axis=-1).sum()) for name, colour in
             (("matched", MATCHED), ("missed", MISSED), ("extra", EXTRA))}
    assert count["matched"] > 100 and count["missed"] == count["extra"] == 0, count


def test_fp16_graph_against_fp32_and_a_check_that_fails(setup) -> None:  # noqa: ANN001
    weights, images = setup
    # A random net's flows are far more fragile than a trained net's: fp16 rounding moves some
    # of its 100+ masks, so the mask bar here is lower than the 0.99 expected of real weights.
    report = run_check(CheckConfig(str(weights), precision="fp16", against="ort", images=images,
                                   flow_threshold=QC_OFF, min_ap50=RANDOM_NET_FP16_AP50))
    assert report.ok, report
    flows = {o.name: o for o in report.outputs}["flows"]
    assert 1e-5 < flows.max_rel < 1e-2  # fp16 really differs, within the fp16 tolerance
    assert report.masks[0].n_reference > 100
    strict = run_check(CheckConfig(str(weights), precision="fp16", against="ort", images=images,
                                   tolerance=1e-7, min_ap50=1.0))
    assert not strict.ok
    bad = {o.name: o for o in strict.outputs}["flows"]
    assert not bad.ok and bad.share_out > strict.config.max_share
    image, tile, channel, y, x = bad.worst_at
    assert (image, tile) == ("crop.tif", 0) and 0 <= channel < 3 and 0 <= y < 224 and 0 <= x < 224
    assert abs(bad.worst_got - bad.worst_want) == pytest.approx(bad.max_abs, rel=1e-6)
    assert describe_position(bad.worst_at).startswith("crop.tif tile 0 channel")
    assert strict.to_dict()["ok"] is False


def test_trt_fake_against_ort(setup, monkeypatch) -> None:  # noqa: ANN001
    weights, images = setup
    trt_fixtures.install(monkeypatch)
    report = run_check(CheckConfig(str(weights), backend="trt", against="ort", images=images,
                                    flow_threshold=QC_OFF))
    assert report.engine == "trt" and report.ok
    assert all(o.max_abs < 1e-4 for o in report.outputs)  # the fake runs the same graph


def test_synthetic_images_are_deterministic() -> None:
    a, b = synthetic_images(), synthetic_images()
    assert [n for n, _ in a] == ["synthetic_0", "synthetic_1"]
    np.testing.assert_array_equal(a[0][1], b[0][1])


def test_config_validation() -> None:
    with pytest.raises(ConfigError, match="model='m.onnx' is not allowed; allowed: a zoo name or a Cellpose v3 weight file"):
        CheckConfig("m.onnx")
    with pytest.raises(ConfigError, match="backend='tensorflow' is not allowed"):
        CheckConfig("cyto3", backend="tensorflow")
    with pytest.raises(ConfigError, match="precision='bf16' is not allowed; allowed: fp32, fp16 for backend ort"):
        CheckConfig("cyto3", precision="bf16")
    with pytest.raises(ConfigError, match="compares the fp32 graph with itself"):
        CheckConfig("cyto3", against="ort")
    with pytest.raises(ConfigError, match="tolerance=2 is not allowed"):
        CheckConfig("cyto3", tolerance=2)
