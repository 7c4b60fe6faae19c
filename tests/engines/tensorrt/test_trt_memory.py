"""GPU memory of a TrtEngine: one context-memory block per slot (user-managed context memory,
shared by the slot's per-profile contexts, as Polygraphy's runner does), I/O buffers allocated
once at the profile maximum, and no infer() into a slot that an unfinished infer_many() owns.
The fake counts memory against the device's size and fails like TensorRT when it is spent."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from trt_fixtures import worst

from cp3rt.engines.ort import OrtEngine
from cp3rt.engines.tensorrt import BuildConfig, TrtEngine, build_plan
from cp3rt.errors import EngineError

ATOL = 1e-5


@pytest.fixture
def plan(fake_trt, exports, tmp_path):  # noqa: ANN001, ANN201
    state = fake_trt()
    path = build_plan(exports.fp32, tmp_path / "p.plan", BuildConfig(precision="fp32")).plan_path
    return state, path


def _engine_numbers(path):  # noqa: ANN001, ANN202
    """(context memory of one context, I/O bytes of one slot) for the default 1:64:256 plan."""
    trt = sys.modules["tensorrt"]
    engine = trt.Runtime(trt.Logger()).deserialize_cuda_engine(path.read_bytes())
    io = 256 * 224 * 224 * 4 * (2 + 3) + 256 * 64 * 4  # image + flows + style at the largest batch
    return engine.device_memory_size_v2, io


def test_two_slots_two_profiles_fit_where_four_static_contexts_do_not(plan) -> None:  # noqa: ANN001
    state, path = plan
    block, io = _engine_numbers(path)
    gpu = state.cuda.devices[0]
    gpu.totalGlobalMem = 2 * block + 2 * io + (64 << 20)  # < 4 * block: four STATIC contexts do not fit
    assert gpu.totalGlobalMem < 4 * block
    rng = np.random.default_rng(0)
    batches = [rng.normal(size=s).astype(np.float32) for s in ((3, 2, 224, 224), (2, 2, 64, 96), (1, 2, 64, 64), (1, 2, 224, 224))]
    # slot 0 / profile 0, slot 1 / profile 1, slot 0 / profile 1, slot 1 / profile 0: all four contexts
    with TrtEngine(path) as trt, OrtEngine(_onnx(path)) as ort:
        for got, x in zip(trt.infer_many(batches), batches):
            want = ort.infer(x)
            for name in want:
                assert np.allclose(got[name], want[name], atol=ATOL), worst(name, got[name], want[name], ATOL)
        strategies = {ref().strategy.name for ref in state.contexts if ref() is not None}
        assert strategies == {"USER_MANAGED"}
        blocks = {ref().memory for ref in state.contexts if ref() is not None}
        assert len(blocks) == 2  # one block per slot, shared by the slot's two profile contexts


def _onnx(path):  # noqa: ANN001, ANN202
    from cp3rt.manifest import EngineManifest, manifest_path_for

    return EngineManifest.read(manifest_path_for(path)).onnx_path


def test_io_buffers_are_allocated_once_at_the_profile_maximum(plan) -> None:  # noqa: ANN001
    state, path = plan
    calls = state.cuda.calls
    with TrtEngine(path) as trt:
        before = (calls["cudaMalloc"], calls["cudaMallocHost"], calls["cudaFree"])
        shapes = [(1, 2, 224, 224), (8, 2, 224, 224), (2, 2, 32, 32), (16, 2, 224, 224), (4, 2, 160, 224)]
        list(trt.infer_many([np.zeros(s, np.float32) for s in shapes]))
        trt.infer(np.zeros((256, 2, 32, 32), np.float32)[:5])
        assert (calls["cudaMalloc"], calls["cudaMallocHost"], calls["cudaFree"]) == before


def test_infer_while_infer_many_is_running_is_refused(plan) -> None:  # noqa: ANN001
    _state, path = plan
    rng = np.random.default_rng(1)
    batches = [rng.normal(size=(2, 2, 224, 224)).astype(np.float32) for _ in range(4)]
    with TrtEngine(path) as trt, OrtEngine(_onnx(path)) as ort:
        stream = trt.infer_many(batches)
        first = next(stream)
        with pytest.raises(EngineError, match=r"infer_many\(\) on this engine is still running"):
            trt.infer(batches[0])
        with pytest.raises(EngineError, match=r"infer_many\(\) on this engine is still running"):
            next(trt.infer_many(batches))
        results = [first, *stream]  # the running iteration is intact
        for got, x in zip(results, batches):
            want = ort.infer(x)
            assert np.allclose(got["flows"], want["flows"], atol=ATOL), worst("flows", got["flows"], want["flows"], ATOL)
        assert np.isfinite(trt.infer(batches[0])["flows"]).all()  # finished: infer works again
        stream = trt.infer_many(batches)
        next(stream)
        stream.close()  # an abandoned iteration frees the engine too
        trt.infer(batches[0])


def test_closing_the_engine_inside_an_iteration_ends_it_cleanly(plan) -> None:  # noqa: ANN001
    state, path = plan
    trt = TrtEngine(path)
    stream = trt.infer_many([np.zeros((2, 2, 224, 224), np.float32)] * 4)
    next(stream)
    trt.close()
    stream.close()  # must not touch the freed streams
    assert not state.cuda.streams and not state.cuda.allocations
