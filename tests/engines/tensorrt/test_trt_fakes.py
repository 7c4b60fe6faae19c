"""The fakes themselves must behave like TensorRT / the CUDA runtime where cp3rt can tell, or the
other TensorRT tests prove nothing. Each test here drives the fake API by hand."""

from __future__ import annotations

import ctypes
import importlib

import numpy as np
import pytest
from fake_cuda import ProtocolViolation


def _runtime():  # noqa: ANN202
    return importlib.import_module("cuda.bindings.runtime")


def test_async_copies_wait_for_synchronize(fake_trt) -> None:  # noqa: ANN001
    fake_trt()
    rt = _runtime()
    ok = rt.cudaError_t.cudaSuccess
    _, stream = rt.cudaStreamCreate()
    _, host = rt.cudaMallocHost(16)
    _, dev = rt.cudaMalloc(16)
    _, back = rt.cudaMallocHost(16)
    ctypes.memmove(host, b"0123456789abcdef", 16)
    h2d, d2h = rt.cudaMemcpyKind.cudaMemcpyHostToDevice, rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
    assert rt.cudaMemcpyAsync(dev, host, 16, h2d, stream) == (ok,)
    assert rt.cudaMemcpyAsync(back, dev, 16, d2h, stream) == (ok,)
    assert ctypes.string_at(back, 16) == b"\0" * 16  # nothing ran yet: the host sees stale data
    assert rt.cudaStreamSynchronize(stream) == (ok,)
    assert ctypes.string_at(back, 16) == b"0123456789abcdef"


def test_copies_in_the_wrong_direction_or_too_long_fail_like_cuda(fake_trt) -> None:  # noqa: ANN001
    fake_trt()
    rt = _runtime()
    bad = rt.cudaError_t.cudaErrorInvalidValue
    _, stream = rt.cudaStreamCreate()
    _, host = rt.cudaMallocHost(16)
    _, dev = rt.cudaMalloc(16)
    assert rt.cudaMemcpyAsync(host, dev, 16, rt.cudaMemcpyKind.cudaMemcpyHostToDevice, stream) == (bad,)
    assert rt.cudaMemcpyAsync(dev, host, 32, rt.cudaMemcpyKind.cudaMemcpyHostToDevice, stream) == (bad,)
    assert rt.cudaFree(host) == (bad,)  # host memory is freed with cudaFreeHost
    fresh = np.frombuffer(ctypes.string_at(dev, 16), np.float32)
    assert np.isnan(fresh).all()  # unwritten device memory reads as NaN, never a lucky zero


def test_no_gpu_is_reported_as_cuda_does(fake_trt) -> None:  # noqa: ANN001
    fake_trt(gpu=False)
    rt = _runtime()
    assert rt.cudaGetDeviceCount() == (rt.cudaError_t.cudaErrorNoDevice, 0)


def test_version_specific_flags(fake_trt) -> None:  # noqa: ANN001
    fake_trt("10.9.0.34")
    trt10 = importlib.import_module("tensorrt")
    assert hasattr(trt10.BuilderFlag, "FP16") and hasattr(trt10.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH")
    fake_trt("11.0.0")
    trt11 = importlib.import_module("tensorrt")
    assert not hasattr(trt11.BuilderFlag, "FP16")  # removed in 11.x: strong typing only
    assert hasattr(trt11.NetworkDefinitionCreationFlag, "STRONGLY_TYPED")  # kept, ignored
    with pytest.raises(AttributeError):
        trt11.BuilderFlag.FP16  # noqa: B018


def test_fp16_flag_with_strong_typing_fails_the_10x_build(fake_trt, exports) -> None:  # noqa: ANN001
    fake_trt("10.9.0.34")
    trt = importlib.import_module("tensorrt")
    messages: list[str] = []

    class Log(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)

        def log(self, severity, msg) -> None:  # noqa: ANN001
            messages.append(msg)

    builder = trt.Builder(Log())
    net = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    assert trt.OnnxParser(net, Log()).parse(exports.fp16.read_bytes())
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    profile.set_shape("image", (1, 2, 32, 32), (1, 2, 64, 64), (2, 2, 64, 64))
    config.add_optimization_profile(profile)
    config.set_flag(trt.BuilderFlag.FP16)
    assert builder.build_serialized_network(net, config) is None
    assert any("strongly typed" in m for m in messages)
    weak = builder.create_network(0)
    trt.OnnxParser(weak, Log()).parse(exports.fp16.read_bytes())
    config.clear_flag(trt.BuilderFlag.FP16)
    with pytest.raises(ProtocolViolation, match="weakly typed"):
        builder.build_serialized_network(weak, config)


def test_context_protocol(fake_trt, exports, tmp_path) -> None:  # noqa: ANN001
    fake_trt()
    trt = importlib.import_module("tensorrt")
    from cp3rt.engines.tensorrt import BuildConfig, build_plan

    plan = build_plan(exports.fp32, tmp_path / "p.plan", BuildConfig(precision="fp32")).plan_path
    log = trt.Logger()
    engine = trt.Runtime(log).deserialize_cuda_engine(plan.read_bytes())
    ctx = engine.create_execution_context()
    rt = _runtime()
    _, dev = rt.cudaMalloc(1 << 20)
    with pytest.raises(ProtocolViolation, match="before set_input_shape"):
        ctx.set_tensor_address("image", dev)
    assert ctx.set_input_shape("image", (300, 2, 224, 224)) is False  # batch above the profile
    assert ctx.set_input_shape("image", (2, 2, 224, 224)) is True
    assert tuple(ctx.get_tensor_shape("flows")) == (2, 3, 224, 224)
    ctx.set_tensor_address("image", dev)
    _, stream = rt.cudaStreamCreate()
    assert ctx.execute_async_v3(int(stream)) is False  # output addresses missing


def test_each_engine_logs_to_its_own_runtimes_logger(fake_trt, exports, tmp_path) -> None:  # noqa: ANN001
    fake_trt()
    trt = importlib.import_module("tensorrt")
    from cp3rt.engines.tensorrt import BuildConfig, build_plan
    from cp3rt.engines.tensorrt._trt import make_logger

    plan = build_plan(exports.fp32, tmp_path / "p.plan", BuildConfig(precision="fp32")).plan_path
    first, second = make_logger(trt), make_logger(trt)
    engine_a = trt.Runtime(first).deserialize_cuda_engine(plan.read_bytes())
    trt.Runtime(second).deserialize_cuda_engine(plan.read_bytes())  # the later runtime
    ctx = engine_a.create_execution_context()
    assert ctx.set_input_shape("image", (999, 2, 224, 224)) is False
    assert first.errors and not second.errors


def test_a_driver_older_than_the_bindings_fails_every_device_call(fake_trt) -> None:  # noqa: ANN001
    fake_trt(bindings_cuda=13, trt_cuda=13, driver=12040)
    rt = _runtime()
    bad = rt.cudaError_t.cudaErrorInsufficientDriver
    assert rt.cudaGetDeviceCount() == (bad, None)
    assert rt.cudaMalloc(16) == (bad, None) and rt.cudaStreamCreate() == (bad, None)
    assert rt.cudaDriverGetVersion() == (rt.cudaError_t.cudaSuccess, 12040)
    trt = importlib.import_module("tensorrt")
    with pytest.raises(TypeError):
        trt.Builder(trt.Logger())
