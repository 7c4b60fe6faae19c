"""TrtEngine end to end against the fake TensorRT (which runs the same ONNX on onnxruntime CPU):
outputs must equal OrtEngine's, every TensorRT failure is surfaced, and stale or corrupted plans
are refused with the exact rebuild command before TensorRT sees them."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from trt_fixtures import worst

from cp3rt.manifest import EngineManifest, manifest_path_for
from cp3rt.engines.ort import OrtEngine
from cp3rt.engines.tensorrt import BuildConfig, TrtEngine, build_plan
from cp3rt.errors import EngineError, IncompatibleEngineError

# The fake runs the very graph OrtEngine runs, on the same library: results must agree to float
# rounding of a different session (graph fusions may reorder sums).
ATOL = 1e-5


def _check(got: dict, want: dict) -> None:
    for name, ref in want.items():
        assert got[name].shape == ref.shape and got[name].dtype == ref.dtype, name
        assert np.allclose(got[name], ref, atol=ATOL, rtol=0), worst(name, got[name], ref, ATOL)


@pytest.fixture
def fp32_plan(fake_trt, exports, tmp_path) -> Path:  # noqa: ANN001
    fake_trt()
    return build_plan(exports.fp32, tmp_path / "plans" / "tiny.fp32.plan", BuildConfig(precision="fp32")).plan_path


def test_outputs_equal_onnxruntime_for_every_profile(fp32_plan, exports) -> None:  # noqa: ANN001
    rng = np.random.default_rng(0)
    with TrtEngine(fp32_plan) as trt, OrtEngine(exports.fp32) as ort:
        for shape in ((3, 2, 224, 224), (2, 2, 64, 96), (1, 2, 32, 224)):
            x = rng.normal(size=shape).astype(np.float32)
            assert trt.profile_for(shape) == (0 if shape[2:] == (224, 224) else 1)
            _check(trt.infer(x), ort.infer(x))


def test_fp16_plan_equals_the_fp16_graph(fake_trt, exports, tmp_path) -> None:  # noqa: ANN001
    fake_trt("11.0.0")
    plan = build_plan(exports.fp16, tmp_path / "p16.plan", BuildConfig(precision="fp16")).plan_path
    x = np.random.default_rng(1).normal(size=(2, 2, 224, 224)).astype(np.float32)
    with TrtEngine(plan) as trt, OrtEngine(exports.fp16) as ort:
        assert trt.manifest.precision == "fp16"
        _check(trt.infer(x), ort.infer(x))


def _watch_streams_in_flight() -> list[int]:
    """After each enqueue on the fake CUDA, append how many streams have work queued."""
    import sys

    state = sys.modules["tensorrt"].STATE.cuda
    busy: list[int] = []
    enqueue = state.enqueue

    def watch(handle, op) -> None:  # noqa: ANN001
        enqueue(handle, op)
        busy.append(sum(1 for q in state.streams.values() if q))

    state.enqueue = watch
    return busy


def test_infer_many_keeps_two_batches_in_flight(fp32_plan, exports, fake_trt) -> None:  # noqa: ANN001
    busy = _watch_streams_in_flight()
    rng = np.random.default_rng(2)
    batches = [rng.normal(size=(n, 2, 224, 224)).astype(np.float32) for n in (4, 1, 3, 2, 5)]
    with TrtEngine(fp32_plan) as trt, OrtEngine(exports.fp32) as ort:
        results = list(trt.infer_many(batches))
        assert len(results) == len(batches)
        for got, x in zip(results, batches):
            _check(got, ort.infer(x))
    assert max(busy) == 2  # batch k+1 was staged and queued while batch k was still on the GPU


def test_pipeline_keeps_a_batch_in_flight_on_tensorrt(fp32_plan, exports) -> None:  # noqa: ANN001
    """The tiling runner feeds TrtEngine.infer_many (cutting and stitching overlap the GPU) and
    the flows equal onnxruntime's through the same pipeline."""
    from cp3rt.runtime.config import RunConfig
    from cp3rt.runtime.pipeline import Pipeline

    busy = _watch_streams_in_flight()
    image = np.random.default_rng(3).normal(500, 80, size=(610, 530)).astype(np.float32)
    run = RunConfig(diameter=30.0, channels=(0, 0), batch_size=4)  # 9 tiles -> 3 batches
    with Pipeline.from_engines(TrtEngine(fp32_plan), run=run) as trt, \
            Pipeline.from_engines(OrtEngine(exports.fp32), run=run) as ort:
        got, want = trt.run(image), ort.run(image)
    assert max(busy) == 2
    assert np.allclose(got.dP, want.dP, atol=ATOL, rtol=0), worst("dP", got.dP, want.dP, ATOL)
    assert np.allclose(got.cellprob, want.cellprob, atol=ATOL, rtol=0), worst("cellprob", got.cellprob,
                                                                             want.cellprob, ATOL)


def test_engine_errors_from_tensorrt_are_surfaced(fp32_plan, monkeypatch) -> None:  # noqa: ANN001
    import sys

    trt_module = sys.modules["tensorrt"]
    with TrtEngine(fp32_plan) as engine:
        def refuse(self, stream_handle) -> bool:  # noqa: ANN001
            return self._error("Error Code 1: Cuda Runtime (an illegal memory access was encountered)")

        monkeypatch.setattr(trt_module.IExecutionContext, "execute_async_v3", refuse)
        with pytest.raises(EngineError, match="execute_async_v3 failed.*illegal memory access"):
            engine.infer(np.zeros((1, 2, 224, 224), np.float32))
        with pytest.raises(EngineError, match="accepts batch 1..256"):
            engine.infer(np.zeros((257, 2, 224, 224), np.float32))


def test_a_tensorrt_exception_is_one_engine_error_in_infer_and_infer_many(fp32_plan, monkeypatch) -> None:  # noqa: ANN001
    """TensorRT's Python API can also raise (pybind errors): that is the engine failing on this
    batch, an EngineError naming the plan and the original error, not a traceback."""
    import sys

    trt_module = sys.modules["tensorrt"]
    original = TypeError("execute_async_v3(): incompatible function arguments.\nInvoked with: ...")

    def explode(self, stream_handle) -> bool:  # noqa: ANN001
        raise original

    with TrtEngine(fp32_plan) as engine:
        monkeypatch.setattr(trt_module.IExecutionContext, "execute_async_v3", explode)
        for run in (engine.infer, lambda x: next(engine.infer_many([x]))):
            with pytest.raises(EngineError, match=r"fp32.plan \(trt\) failed while running: TypeError: "
                                                  r"execute_async_v3\(\): incompatible function arguments\.$") as info:
                run(np.zeros((1, 2, 224, 224), np.float32))
            assert info.value.__cause__ is original


def test_infer_many_validates_like_infer(fp32_plan) -> None:  # noqa: ANN001
    with TrtEngine(fp32_plan) as engine:
        with pytest.raises(EngineError, match="accepts batch 1..256"):
            list(engine.infer_many([np.zeros((257, 2, 224, 224), np.float32)]))
        with pytest.raises(EngineError, match="dtype float64"):
            list(engine.infer_many([np.zeros((1, 2, 224, 224))]))


def test_close_frees_every_buffer_and_stream(fp32_plan) -> None:  # noqa: ANN001
    import sys

    cuda = sys.modules["tensorrt"].STATE.cuda
    engine = TrtEngine(fp32_plan)
    list(engine.infer_many([np.zeros((2, 2, 224, 224), np.float32)] * 3))
    assert cuda.allocations and cuda.streams
    engine.close()
    assert not cuda.allocations and not cuda.streams
    with pytest.raises(EngineError, match="is closed"):
        engine.infer(np.zeros((1, 2, 224, 224), np.float32))


def test_corrupted_plan_is_refused_with_the_rebuild_command(fp32_plan, exports) -> None:  # noqa: ANN001
    data = bytearray(fp32_plan.read_bytes())
    data[-10] ^= 0xFF
    fp32_plan.write_bytes(bytes(data))
    with pytest.raises(IncompatibleEngineError) as info:
        TrtEngine(fp32_plan)
    msg = str(info.value)
    assert "is corrupted or was changed after it was built" in msg
    # a weight file's bare name ('tiny') would not resolve from another folder: the ONNX path does
    assert msg.endswith(f"rebuild with: cp3rt build {exports.fp32.resolve()} --precision fp32 --batch 1:64:256 "
                        f"--out {fp32_plan.parent}")


def test_rebuild_command_names_a_zoo_model_by_name(fp32_plan) -> None:  # noqa: ANN001
    from cp3rt.engines.tensorrt.builder import rebuild_command

    manifest = EngineManifest.read(manifest_path_for(fp32_plan))
    assert manifest.onnx_path and rebuild_command(manifest, None).startswith(f"cp3rt build {manifest.onnx_path} ")
    zoo = dataclasses.replace(manifest, source_model="cyto3")
    assert rebuild_command(zoo, None) == "cp3rt build cyto3 --precision fp32 --batch 1:64:256"


def test_plan_for_another_tensorrt_or_gpu_is_refused(fp32_plan, fake_trt) -> None:  # noqa: ANN001
    fake_trt("10.10.0")
    with pytest.raises(IncompatibleEngineError, match=r"TensorRT 10\.9\.0\.34 != installed 10\.10\.0.*rebuild with: cp3rt build /\S*tiny\.fp32\.onnx "):
        TrtEngine(fp32_plan)
    fake_trt(cc=(8, 0))
    with pytest.raises(IncompatibleEngineError, match=r"compute capability 9\.0 != this GPU's 8\.0"):
        TrtEngine(fp32_plan)


def test_a_lying_manifest_meets_tensorrt_own_check(fp32_plan, fake_trt) -> None:  # noqa: ANN001
    fake_trt("10.10.0")
    sidecar = manifest_path_for(fp32_plan)
    data = json.loads(sidecar.read_text())
    data["tensorrt_version"] = "10.10.0"
    sidecar.write_text(json.dumps(data))
    with pytest.raises(IncompatibleEngineError, match="not compatible with this version of TensorRT.*rebuild with"):
        TrtEngine(fp32_plan)


def test_missing_manifest(fp32_plan) -> None:  # noqa: ANN001
    manifest_path_for(fp32_plan).unlink()
    with pytest.raises(IncompatibleEngineError, match="manifest .* is missing"):
        TrtEngine(fp32_plan)


def test_no_gpu_refuses_in_one_sentence(fp32_plan, fake_trt) -> None:  # noqa: ANN001
    fake_trt(gpu=False)
    with pytest.raises(Exception) as info:
        TrtEngine(fp32_plan)
    assert type(info.value).__name__ == "BackendUnavailableError"
    assert "no NVIDIA GPU 0 is visible here" in str(info.value)


def test_engine_specs_come_from_the_plan(fp32_plan) -> None:  # noqa: ANN001
    with TrtEngine(fp32_plan) as engine:
        assert [s.describe() for s in engine.inputs] == ["image: float32[?, 2, ?, ?]"]
        assert [s.describe() for s in engine.outputs] == ["flows: float32[?, 3, ?, ?]", "style: float32[?, 64]"]
        assert dataclasses.asdict(engine.manifest.shapes)["max_batch"] == 256
