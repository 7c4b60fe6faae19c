"""The OpenVINO backend against onnxruntime on the same ONNX graphs (the shipped starters):
fp32 tensors within a named tolerance, bf16 judged on masks, lazy import, one-line refusals."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cp3rt.errors import BackendUnavailableError, ConfigError
from cp3rt.runtime import Pipeline, PipelineConfig

MODELS = Path(__file__).resolve().parents[2] / "src" / "cp3rt" / "assets" / "models"
SAMPLE = MODELS.parent / "samples" / "dsb2018_nuclei.tif"
# OpenVINO's fp32 convolutions sum in another order than onnxruntime's (both fp32): outputs of
# O(1..10) differ by ~1e-5 on these graphs; the bound leaves room for other CPUs' kernels.
FP32_ATOL = {"flows": 2e-3, "style": 2e-4, "restored": 2e-3}
BF16_MIN_AP50 = 0.95  # bf16 arithmetic (8-bit mantissa) is judged on masks, not tensors


def _worst(got: np.ndarray, want: np.ndarray) -> str:
    diff = np.abs(got - want)
    idx = np.unravel_index(int(np.argmax(diff)), diff.shape)
    return f"worst |diff| {diff[idx]:.3g} at {idx}; mismatch rate (> 1e-6) {(diff > 1e-6).mean():.3%}"


@pytest.mark.parametrize("model", ["cp3rt_nuclei", "cp3rt_denoise_nuclei"])
@pytest.mark.parametrize("shape", [(1, 32, 32), (3, 224, 96), (2, 320, 320)])
def test_fp32_matches_onnxruntime(model: str, shape: tuple[int, int, int]) -> None:
    pytest.importorskip("openvino")
    from cp3rt.engines import open_engine

    path = MODELS / f"{model}.onnx"
    with open_engine(path, "ort") as ort, open_engine(path, "openvino") as ov:
        assert ov.backend == "openvino-cpu" and ov.manifest == ort.manifest
        assert [s.name for s in ov.outputs] == [s.name for s in ort.outputs]
        nchan = ort.manifest.nchan
        x = np.random.default_rng(0).standard_normal((shape[0], nchan, *shape[1:])).astype(np.float32)
        want, got = ort.infer(x), ov.infer(x)
        for name, ref in want.items():
            assert got[name].shape == ref.shape and got[name].dtype == np.float32
            assert np.abs(got[name] - ref).max() <= FP32_ATOL[name], f"{model} {name}: " + _worst(got[name], ref)
        again = ov.infer(x)  # outputs are copies: a later call does not overwrite earlier results
        np.testing.assert_array_equal(again[ort.outputs[0].name], got[ort.outputs[0].name])


def test_pipeline_backend_openvino_fp32_and_bf16_masks() -> None:
    pytest.importorskip("openvino")
    import tifffile

    from cp3rt.runtime.quality.metrics import average_precision

    img = tifffile.imread(SAMPLE)
    seg, rst = str(MODELS / "cp3rt_nuclei.onnx"), str(MODELS / "cp3rt_denoise_nuclei.onnx")
    masks = {}
    for backend, precision in (("ort", "fp32"), ("openvino", "fp32"), ("openvino", "bf16")):
        with Pipeline(seg, restore=rst, backend=backend, precision=precision, diameter=17.0) as pipe:
            assert pipe.segment_net.engine.backend.startswith(backend)
            masks[backend, precision] = pipe.run(img).masks
    base = masks["ort", "fp32"]
    ap32 = average_precision(base, masks["openvino", "fp32"], (0.5, 0.75))[0]
    ap16 = average_precision(base, masks["openvino", "bf16"], (0.5, 0.75))[0]
    assert base.max() > 50 and ap32[0] >= 0.99 and ap32[1] >= 0.98, ap32
    assert ap16[0] >= BF16_MIN_AP50, ap16


def test_bf16_is_refused_off_openvino_in_one_line() -> None:
    with pytest.raises(ConfigError, match=r"^precision='bf16' is OpenVINO's bf16 arithmetic .* use backend 'openvino'") as exc:
        PipelineConfig(segment="cyto3", backend="ort", precision="bf16")
    assert "\n" not in str(exc.value)
    pytest.importorskip("openvino")
    from cp3rt.engines.openvino import OpenVinoEngine

    with pytest.raises(ConfigError, match="precision='fp16' is not allowed for the openvino backend"):
        OpenVinoEngine(MODELS / "cp3rt_nuclei.onnx", precision="fp16")


def test_without_openvino_the_backend_names_the_extra(monkeypatch) -> None:
    from cp3rt.engines import open_engine

    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino -> ImportError
    with pytest.raises(BackendUnavailableError, match=r"needs the Python package 'openvino'.*cp3rt\[openvino\]"):
        open_engine(MODELS / "cp3rt_nuclei.onnx", "openvino")


def test_openvino_is_imported_only_when_asked_for() -> None:
    code = ("import sys, cp3rt, cp3rt.runtime, cp3rt.engines, cp3rt.engines.select, cp3rt.engines.ort; "
            "from cp3rt.engines import open_engine; "
            "assert 'openvino' not in sys.modules, 'imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
