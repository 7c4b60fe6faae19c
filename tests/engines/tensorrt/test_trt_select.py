"""open_engine routes 'trt' to the native TensorRT backend: plans directly, ONNX exports through
the plan cache; 'auto' takes it first when it loads and moves on (saying why) when it does not."""

from __future__ import annotations

import numpy as np
import pytest

from cp3rt.engines import open_engine
from cp3rt.engines.tensorrt import TrtEngine
from cp3rt.errors import BackendUnavailableError, ConfigError


def test_onnx_with_trt_builds_into_the_cache_once(fake_trt, exports, isolated_cache) -> None:  # noqa: ANN001
    state = fake_trt()
    with open_engine(exports.fp16, "trt") as engine:
        assert isinstance(engine, TrtEngine) and engine.manifest.precision == "fp16"
        assert engine.path.is_relative_to(isolated_cache / "plans")
        out = engine.infer(np.zeros((1, 2, 224, 224), np.float32))
        assert np.isfinite(out["flows"]).all()
    with open_engine(exports.fp16, "auto") as engine:  # auto prefers TensorRT when it loads
        assert engine.backend == "trt"
    assert state.builds == 1


def test_plan_files_open_directly(fake_trt, exports) -> None:  # noqa: ANN001
    fake_trt()
    with open_engine(exports.fp32, "trt") as built:
        plan = built.path
    for backend in ("trt", "auto"):
        with open_engine(plan, backend) as engine:
            assert engine.path == plan
    with pytest.raises(ConfigError, match="runs exported .onnx files"):
        open_engine(plan, "ort")


def test_without_a_gpu_trt_refuses_and_auto_moves_on(fake_trt, exports) -> None:  # noqa: ANN001
    fake_trt(gpu=False)
    with pytest.raises(BackendUnavailableError, match="^no NVIDIA GPU 0 is visible here"):
        open_engine(exports.fp32, "trt")
    with open_engine(exports.fp32, "auto") as engine:
        assert engine.backend == "ort-cpu"


def test_weight_files_need_an_export_first(fake_trt, exports) -> None:  # noqa: ANN001
    fake_trt()
    with pytest.raises(ConfigError, match="build a plan with `cp3rt build"):
        open_engine(exports.weights, "trt")


def test_pipeline_with_backend_trt_finds_or_builds_its_plan(fake_trt, tmp_path) -> None:  # noqa: ANN001
    """`cp3rt run --backend trt` path: weights -> cached ONNX export -> plan cache -> TrtEngine, and
    the masks equal those of the onnxruntime pipeline on the same graph (the fake runs it)."""
    import torch

    from cp3rt.models.cpnet import CPnet
    from cp3rt.runtime.pipeline import Pipeline
    from cp3rt.runtime.quality.metrics import average_precision

    state = fake_trt()
    torch.manual_seed(0)
    weights = CPnet((2, 32, 64, 128, 256), 3).save(tmp_path / "seg")  # the runtime needs style 256
    image = np.random.default_rng(0).normal(100, 20, (120, 150)).astype(np.float32)
    results = {}
    for backend in ("trt", "ort"):
        with Pipeline(weights, backend=backend, precision="fp16", estimate_diameter=False,
                      flow_threshold=0.0) as pipe:
            assert pipe.segment_net.engine.backend == ("trt" if backend == "trt" else "ort-cpu")
            results[backend] = pipe.run(image)
    assert state.builds == 1
    np.testing.assert_array_equal(results["trt"].cellprob, results["ort"].cellprob)
    if results["ort"].masks.max():
        assert average_precision(results["ort"].masks, results["trt"].masks)[0][0] == 1.0
