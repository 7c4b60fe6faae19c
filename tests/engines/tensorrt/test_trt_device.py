"""``--device N``: the plan is built on GPU N, its manifest and cache key describe GPU N, and the
engine runs on GPU N (the fake CUDA keeps each allocation's and stream's device, and the fake
TensorRT builds and runs on the calling thread's current device, as the real ones do)."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
from fake_cuda import DeviceProps
from fake_trt_runtime import MAGIC
from trt_fixtures import A100

from cp3rt.engines import open_engine
from cp3rt.engines.tensorrt import BuildConfig, PlanCache, TrtEngine, build_plan
from cp3rt.engines.tensorrt.builder import default_shapes

SMALL = default_shapes((1, 2, 4))  # I/O buffers are allocated at the profile maximum: keep it small


def _plan_cc(plan) -> str:  # noqa: ANN001
    """The compute capability the fake TensorRT baked into a plan: where it was really built."""
    data = plan.read_bytes()
    size = int.from_bytes(data[len(MAGIC):len(MAGIC) + 8], "little")
    return json.loads(data[len(MAGIC) + 8:len(MAGIC) + 8 + size])["cc"]


@pytest.fixture
def two_gpus(fake_trt):  # noqa: ANN001, ANN201
    return fake_trt(devices=[DeviceProps(), A100])


def test_build_and_run_on_the_chosen_gpu(two_gpus, exports, tmp_path) -> None:  # noqa: ANN001
    result = build_plan(exports.fp32, tmp_path / "p.plan", BuildConfig(precision="fp32", shapes=SMALL, device=1))
    assert result.manifest.gpu_name == "Fake NVIDIA A100-SXM4-40GB"
    assert result.manifest.compute_capability == "8.0"
    assert _plan_cc(result.plan_path) == "8.0"  # the builder ran on GPU 1, not on GPU 0
    cuda = two_gpus.cuda
    with TrtEngine(result.plan_path, device=1) as engine:
        out = engine.infer(np.zeros((2, 2, 224, 224), np.float32))
        assert np.isfinite(out["flows"]).all()
        assert {a.device for a in cuda.allocations.values() if a.kind == "device"} == {1}
        assert set(cuda.stream_device.values()) == {1}


def test_an_engine_on_gpu1_runs_from_another_thread(two_gpus, exports, tmp_path) -> None:  # noqa: ANN001
    """The current device is per host thread: a worker thread starts on GPU 0."""
    plan = build_plan(exports.fp32, tmp_path / "p.plan", BuildConfig(precision="fp32", shapes=SMALL, device=1)).plan_path
    with TrtEngine(plan, device=1) as engine:
        box: dict = {}
        worker = threading.Thread(target=lambda: box.update(out=engine.infer(np.ones((1, 2, 224, 224), np.float32))))
        worker.start()
        worker.join()
        assert np.isfinite(box["out"]["flows"]).all()


def test_plan_cache_key_is_that_of_the_gpu_used(two_gpus, exports, tmp_path) -> None:  # noqa: ANN001
    cache = PlanCache(tmp_path / "plans")
    on0 = cache.get(exports.fp32, BuildConfig(precision="fp32", shapes=SMALL, device=0))
    on1 = cache.get(exports.fp32, BuildConfig(precision="fp32", shapes=SMALL, device=1))
    assert on0.plan_path.parent != on1.plan_path.parent
    assert (_plan_cc(on0.plan_path), _plan_cc(on1.plan_path)) == ("9.0", "8.0")
    assert on1.manifest.compute_capability == "8.0"


def test_open_engine_takes_the_gpu_from_device(two_gpus, exports) -> None:  # noqa: ANN001
    with open_engine(exports.fp32, "trt", device="cuda:1") as engine:
        assert engine.manifest.compute_capability == "8.0"
        assert engine.environment.gpu_name == "Fake NVIDIA A100-SXM4-40GB"
