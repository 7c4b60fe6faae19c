"""Backend probing for `cp3rt info`: the hand-encoded probe model and the GPU-provider trap."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime
import pytest

from cp3rt.engines import probe


def test_probe_model_is_valid_onnx() -> None:
    model = onnx.load_from_string(probe.identity_model_bytes())
    onnx.checker.check_model(model, full_check=True)
    assert [n.op_type for n in model.graph.node] == ["Identity"]
    session = onnxruntime.InferenceSession(probe.identity_model_bytes(), providers=["CPUExecutionProvider"])
    x = np.array([2.5], np.float32)
    np.testing.assert_array_equal(session.run(None, {"x": x})[0], x)


def test_varint_matches_protobuf_encoding() -> None:
    # Cross-check against onnx's protobuf: a ModelProto with a large ir_version round-trips.
    for value in (0, 1, 127, 128, 300, 2**31, 2**40 + 5):
        model = onnx.ModelProto()
        model.ParseFromString(probe._int_field(1, value))
        assert model.ir_version == value


def test_report_here_lists_every_backend() -> None:
    report = {s.name: s for s in probe.backend_report()}
    assert list(report) == ["trt", "ort-tensorrt", "ort-cuda", "ort-cpu", "torch", "openvino"]
    assert report["ort-cpu"].available
    for status in report.values():
        assert status.detail.endswith(".")


@pytest.mark.parametrize(
    ("version", "gpu", "available", "detail"),
    [
        (None, None, False, "tensorrt is not installed"),
        ("8.6.1", None, False, "tensorrt 8.6.1 is installed but cp3rt needs >= 10"),
        ("10.3.0", "none", False, "tensorrt 10.3.0 is installed but no NVIDIA GPU 0 is visible"),
        ("10.3.0", "H100", True, "tensorrt 10.3.0 (not imported by this report) on H100, compute capability 9.0"),
    ],
)
def test_tensorrt_status(monkeypatch: pytest.MonkeyPatch, version: str | None, gpu: str | None,
                         available: bool, detail: str) -> None:
    import types

    import cp3rt.engines.tensorrt._cuda as cuda
    from cp3rt.errors import BackendUnavailableError

    def device_info(index: int = 0) -> object:
        if gpu == "none":
            raise BackendUnavailableError("no NVIDIA GPU 0 is visible here (CUDA reports 0 device(s)).")
        return types.SimpleNamespace(name=gpu, compute_capability="9.0")

    real = probe.package_version
    monkeypatch.setattr(probe, "package_version", lambda dist: version if dist == "tensorrt" else real(dist))
    monkeypatch.setattr(cuda, "device_info", device_info)
    status = probe._tensorrt_status()
    assert status.available is available
    assert status.detail.startswith(detail)
    assert status.detail.endswith(".") and not status.detail.endswith("..")


def test_listed_gpu_provider_that_does_not_come_up(monkeypatch: pytest.MonkeyPatch) -> None:
    real = onnxruntime.InferenceSession

    def cpu_only_session(model: bytes, sess_options: object = None, providers: list[str] | None = None):  # noqa: ANN202
        return real(model, sess_options=sess_options, providers=["CPUExecutionProvider"])

    monkeypatch.setattr(onnxruntime, "get_available_providers",
                        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(onnxruntime, "InferenceSession", cpu_only_session)
    report = {s.name: s for s in probe.backend_report()}
    assert not report["ort-cuda"].available
    assert "listed but a session came up on ['CPUExecutionProvider']" in report["ort-cuda"].detail
    assert "no TensorrtExecutionProvider" in report["ort-tensorrt"].detail


def test_provider_start_failure_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    def failing(*args: object, **kwargs: object) -> None:
        raise RuntimeError("libcudnn.so.9: cannot open shared object file\nmore")

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(onnxruntime, "InferenceSession", failing)
    report = {s.name: s for s in probe.backend_report()}
    assert report["ort-cuda"].detail == "CUDAExecutionProvider failed to start: libcudnn.so.9: cannot open shared object file."


def test_versions_fingerprint() -> None:
    info = probe.versions()
    assert info["cp3rt"] and info["python"] and info["cpu"]
    assert info["onnxruntime"] == onnxruntime.__version__
    assert info["numpy"] == np.__version__
