"""`cp3rt export --precision int8 --calibrate DIR`: calibrate -> quantize -> run -> accuracy report,
and the one-line refusal that writes nothing when the int8 masks fall short.

The net is cp3rt's shipped starter (compact, trained: a random net makes no objects, so its
masks could not tell int8 from fp32) on small synthetic nuclei, one tile per image.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import tifffile
from onnx import numpy_helper

pytest.importorskip("torch")
pytest.importorskip("onnxruntime.quantization")

from cp3rt.calibrate import Int8Config, agreement, export_int8  # noqa: E402
from cp3rt.cli.app import main  # noqa: E402
from cp3rt.errors import ConfigError, ExportError  # noqa: E402
from cp3rt.manifest import EngineManifest, manifest_path_for  # noqa: E402

MODEL = "cp3rt_nuclei"  # diam_mean 17
DIAMETER = 17.0


def _nuclei(seed: int, shape: tuple[int, int] = (160, 176), n: int = 14) -> np.ndarray:
    """Bright round blobs of ~17 px on a noisy background, uint16 like a camera."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    img = np.zeros(shape, np.float64)
    for _ in range(n):
        cy, cx = rng.uniform(12, shape[0] - 12), rng.uniform(12, shape[1] - 12)
        r = rng.uniform(6.5, 9.5)
        img += 1.0 / (1.0 + np.exp((np.hypot(yy - cy, xx - cx) - r) / 1.2))
    img = 100 + 400 * np.clip(img, 0, 1.5) + rng.normal(0, 12, shape)
    return np.clip(img, 0, 65535).astype(np.uint16)


def _folder(root: Path, name: str, seeds: list[int], hot_pixel: bool = False) -> Path:
    folder = root / name
    folder.mkdir()
    for seed in seeds:
        img = _nuclei(seed)
        if hot_pixel:  # one saturated pixel: min-max ranges then waste the int8 steps on it
            img = img.astype(np.float32)
            img[5, 5] = 1e7
        tifffile.imwrite(folder / f"img{seed}.tif", img)
    return folder


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CP3RT_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("int8")
    cfg = Int8Config(MODEL, _folder(root, "calib", [1, 2]), root / "engines",
                     holdout=_folder(root, "holdout", [3]), diameter=DIAMETER)
    messages: list[str] = []
    return root, export_int8(cfg, say=messages.append), messages


def test_flow_writes_int8_graph_and_manifest_with_accuracy(exported) -> None:
    root, result, messages = exported
    assert result.onnx_path == root / "engines" / f"{MODEL}.int8.onnx"
    manifest = EngineManifest.read(manifest_path_for(result.onnx_path))
    assert manifest == result.manifest and manifest.precision == "int8" and manifest.role == "segment"
    cal = manifest.calibration
    assert cal is not None and cal.method == "percentile" and cal.activations == "u8"
    assert [f.name for f in cal.files] == ["img1.tif", "img2.tif"]
    assert [f.name for f in cal.holdout] == ["img3.tif"]
    assert all(len(f.sha256) == 64 for f in (*cal.files, *cal.holdout))
    assert cal.tiles >= 2 and cal.diameter == DIAMETER and cal.onnxruntime_version
    for acc in (cal.accuracy, cal.holdout_accuracy):
        assert acc is not None and acc.objects_fp32 >= 5, acc  # the synthetic nuclei are found
        assert acc.ap50 >= cal.min_ap50 and acc.ap75 >= cal.min_ap75
    assert (cal.min_ap50, cal.min_ap75) == (0.98, 0.95)
    assert any("calibrating on" in m for m in messages)


def test_qdq_graph_has_per_channel_symmetric_weight_scales(exported) -> None:
    _, result, _ = exported
    model = onnx.load(str(result.onnx_path))
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    producers = {o: n for n in model.graph.node for o in n.output}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert convs
    for conv in convs:
        dq = producers[conv.input[1]]
        assert dq.op_type == "DequantizeLinear", conv.name
        weight, scale, zero = (inits[name] for name in dq.input[:3])
        assert weight.dtype == np.int8 and zero.dtype == np.int8 and not zero.any()  # symmetric
        assert scale.shape == (weight.shape[0],), (conv.name, scale.shape)  # one per out channel
        assert {a.name: a.i for a in dq.attribute}.get("axis", 1) == 0
    # activations are quantized too (QDQ), and the graph keeps float32 inputs and outputs
    assert sum(n.op_type == "QuantizeLinear" for n in model.graph.node) >= len(convs)
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT


def test_cp3rt_run_opens_the_int8_graph_on_onnxruntime_cpu(exported, tmp_path: Path) -> None:
    root, result, _ = exported
    out = tmp_path / "masks"
    rc = main(["run", str(root / "holdout" / "img3.tif"), "--model", str(result.onnx_path),
               "--precision", "int8", "--diameter", str(DIAMETER), "--backend", "ort", "--out", str(out)])
    assert rc == 0
    masks = tifffile.imread(next(out.glob("*_cp_masks.tif")))
    assert masks.max() == result.manifest.calibration.holdout_accuracy.objects_int8


def test_refuses_in_one_line_and_writes_nothing_below_the_bar(tmp_path: Path, capsys) -> None:
    calib = _folder(tmp_path, "calib", [4], hot_pixel=True)
    out = tmp_path / "engines"
    rc = main(["export", MODEL, "--precision", "int8", "--calibrate", str(calib), "--out", str(out),
               "--diameter", str(DIAMETER), "--calibration-method", "minmax"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0
    assert err[-1].startswith("error: int8 cp3rt_nuclei (minmax, u8) misses the accuracy bar"), err
    assert "nothing written" in err[-1]
    assert not out.exists() or not any(out.iterdir())


def test_cli_without_holdout_says_the_bar_was_only_checked_on_the_calibration_images(tmp_path: Path, capsys) -> None:
    args = ["export", MODEL, "--precision", "int8", "--calibrate", str(_folder(tmp_path, "calib", [5])),
            "--diameter", str(DIAMETER), "--min-ap50", "0", "--min-ap75", "0"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("note:")]
    assert notes == ["note: the accuracy bar was checked only on the calibration images; add --holdout DIR "
                     "(other images of the same kind) to check it on images the calibration has not seen."]
    assert main([*args, "--holdout", str(_folder(tmp_path, "check", [6])), "--out", str(tmp_path / "b")]) == 0
    assert not [line for line in capsys.readouterr().err.splitlines() if line.startswith("note:")]


def test_impossible_bar_is_refused_by_the_library(exported, tmp_path: Path) -> None:
    root = exported[0]
    cfg = Int8Config(MODEL, root / "calib", tmp_path / "engines", diameter=DIAMETER,
                     method="minmax", min_ap50=1.0, min_ap75=1.0)
    try:
        result = export_int8(cfg)
    except ExportError as exc:
        assert "misses the accuracy bar" in str(exc) and not (tmp_path / "engines").exists()
    else:  # minmax kept every mask to IoU 0.75: then both APs are exactly 1
        acc = result.manifest.calibration.accuracy
        assert (acc.ap50, acc.ap75) == (1.0, 1.0)


def test_restore_net_needs_segment_with(tmp_path: Path) -> None:
    calib = _folder(tmp_path, "calib", [5])
    with pytest.raises(ConfigError, match="--segment-with"):
        export_int8(Int8Config("cp3rt_denoise_nuclei", calib, tmp_path / "engines"))


def test_run_precision_int8_needs_a_calibrated_graph(tmp_path: Path) -> None:
    from cp3rt.artefacts import resolve_model

    with pytest.raises(ConfigError, match="--precision int8 --calibrate DIR"):
        resolve_model(MODEL, precision="int8")


def test_agreement_pools_counts_and_treats_empty_as_perfect() -> None:
    a = np.zeros((20, 20), np.uint16)
    a[2:8, 2:8], a[10:16, 10:16] = 1, 2
    b = a.copy()
    b[10:16, 10:16] = 0  # one object lost
    acc = agreement([a, np.zeros_like(a)], [b, np.zeros_like(a)])
    assert (acc.ap50, acc.objects_fp32, acc.objects_int8) == (0.5, 2, 1)
    assert agreement([np.zeros_like(a)], [np.zeros_like(a)]).ap75 == 1.0


def test_manifest_without_calibration_keeps_the_old_json(tmp_path: Path) -> None:
    from cp3rt.manifest import EngineManifest as M

    m = M(role="segment", source_model="x", source_sha256="0" * 64, nchan=2, nout=3, diam_mean=17.0,
          diam_labels=17.0, precision="fp32", opset=17)
    assert "calibration" not in m.to_dict()
    path = m.write(tmp_path / "x.onnx.json")
    assert M.read(path) == m and "calibration" not in json.loads(path.read_text())


def test_restore_net_is_judged_through_segment_with_and_keeps_its_adds_fp32(tmp_path: Path) -> None:
    calib = _folder(tmp_path, "calib", [6])
    result = export_int8(Int8Config("cp3rt_denoise_nuclei", calib, tmp_path / "engines", diameter=DIAMETER,
                                    segment_with=MODEL, min_ap50=0, min_ap75=0))
    cal = result.manifest.calibration
    assert result.manifest.role == "restore" and cal.segment_with == MODEL
    assert cal.keep_fp32 == ("Gemm", "Add", "Mul") and cal.accuracy.objects_fp32 >= 5
    assert cal.keep_scope == ("/net/up.0/", "/net/out_pre/")
    model = onnx.load(str(result.onnx_path))
    producers = {o: n.op_type for n in model.graph.node for o in n.output}
    gemms = {n.name: n for n in model.graph.node if n.op_type == "Gemm"}  # style layers
    # the last decoder level's style layers keep fp32 weights, the deeper levels' are int8
    assert all(producers.get(n.input[1]) != "DequantizeLinear" for k, n in gemms.items() if "/up.0/" in k)
    assert any(producers.get(n.input[1]) == "DequantizeLinear" for k, n in gemms.items() if "/up.1/" in k)
    assert any(producers.get(n.input[1]) == "DequantizeLinear" for n in model.graph.node if n.op_type == "Conv")


def test_auto_skips_tensorrt_for_an_int8_graph_with_a_reason(exported, monkeypatch: pytest.MonkeyPatch) -> None:
    import cp3rt.engines.select as select
    import cp3rt.engines.tensorrt._trt as trt_env

    monkeypatch.setattr(trt_env, "current_environment", lambda gpu=0: object())  # "TensorRT is here"
    with pytest.raises(Exception, match="int8 graph, which cp3rt does not build into TensorRT plans") as info:
        select._open_trt(str(exported[1].onnx_path))
    from cp3rt.errors import BackendUnavailableError

    assert isinstance(info.value, BackendUnavailableError)  # so 'auto' moves on to onnxruntime


def test_holdout_must_not_repeat_a_calibration_image(tmp_path: Path) -> None:
    calib = _folder(tmp_path, "calib", [7])
    hold = tmp_path / "holdout"
    hold.mkdir()
    (hold / "same.tif").write_bytes((calib / "img7.tif").read_bytes())
    with pytest.raises(ConfigError, match="also a calibration image"):
        export_int8(Int8Config(MODEL, calib, tmp_path / "engines", holdout=hold, diameter=DIAMETER))
