"""cp3rt run names a TensorRT plan build before it happens, and cp3rt warmup does it ahead (issue
18 item 2), against the fake TensorRT/CUDA modules (TensorRT itself cannot run here)."""

from __future__ import annotations

from cp3rt.engines.tensorrt import PlanCache
from cp3rt.runtime import PipelineConfig
from cp3rt.runtime.batch.warmup import first_use_work, warmup


def test_a_plan_build_is_named_until_the_plan_is_cached(fake_trt, exports) -> None:  # noqa: ANN001
    fake_trt()
    config = PipelineConfig(segment=str(exports.fp16), backend="trt", precision="fp16")
    [line] = first_use_work(config)
    assert line.startswith(f"building a TensorRT plan for {exports.fp16}") and "cp3rt warmup" in line
    assert first_use_work(PipelineConfig(segment=str(exports.fp16), backend="ort")) == ()  # no plan for ort
    PlanCache().get(exports.fp16)
    assert first_use_work(config) == ()


def test_without_a_gpu_auto_names_no_plan(fake_trt, exports) -> None:  # noqa: ANN001
    fake_trt(gpu=False)
    assert first_use_work(PipelineConfig(segment=str(exports.fp16), backend="auto", precision="fp16")) == ()


def test_warmup_builds_the_plan_into_the_cache(fake_trt, exports) -> None:  # noqa: ANN001
    fake_trt()
    config = PipelineConfig(segment=str(exports.fp16), backend="trt", precision="fp16")
    report = warmup(config, volumes=False)
    [model] = report.models
    assert model.engine_backend == "trt" and model.artefact.endswith(".plan") and model.artefact_sha256
    assert first_use_work(config) == ()  # the next run opens the cached plan
