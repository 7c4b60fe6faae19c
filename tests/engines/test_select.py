"""open_engine: explicit choices, the documented auto order, and why-each-failed messages."""

from __future__ import annotations

from pathlib import Path

import onnxruntime
import pytest

import cp3rt.engines.ort as ort_module
import cp3rt.engines.select as select_module
import cp3rt.engines.torch_engine as torch_module
from cp3rt.engines import AUTO_ORDER, open_engine
from cp3rt.errors import BackendUnavailableError, ConfigError, EngineError


@pytest.fixture(autouse=True)
def no_tensorrt(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the TensorRT backend unavailable so these tests run alike with or without a GPU;
    the TensorRT backend has its own tests (tests/engines/tensorrt)."""

    def unavailable(source: str, device: str = "cpu") -> None:
        raise BackendUnavailableError("no TensorRT today")

    monkeypatch.setattr(select_module, "_open_trt", unavailable)


def test_auto_order_is_documented() -> None:
    import cp3rt.engines.select as select

    assert AUTO_ORDER == ("trt", "ort-cuda", "ort-cpu")
    assert "torch is never chosen automatically" in (select.__doc__ or "")


def test_auto_falls_through_to_cpu_here(standin, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    path, _ = standin
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    with open_engine(path) as eng:
        assert eng.backend == "ort-cpu"


def test_auto_takes_cuda_when_it_loads(standin, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    path, _ = standin
    tried: list[tuple[str, ...]] = []

    class FakeOrt:
        def __init__(self, source: str, *, providers: tuple[str, ...], **kw: object) -> None:
            tried.append(providers)
            if providers == ("cuda",):
                self.backend = "ort-cuda"

    monkeypatch.setattr(ort_module, "OrtEngine", FakeOrt)
    eng = open_engine(path)
    assert eng.backend == "ort-cuda" and tried == [("cuda",)]


def test_auto_reports_every_failure(standin, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    path, _ = standin

    class NoOrt:
        def __init__(self, source: str, *, providers: tuple[str, ...], **kw: object) -> None:
            raise BackendUnavailableError(f"no {providers[0]} today")

    torch_opened: list[str] = []

    class RecordingTorch:
        def __init__(self, source: str, **kw: object) -> None:
            torch_opened.append(source)

    monkeypatch.setattr(ort_module, "OrtEngine", NoOrt)
    monkeypatch.setattr(torch_module, "TorchEngine", RecordingTorch)
    with pytest.raises(BackendUnavailableError) as info:
        open_engine(path)
    msg = str(info.value)
    assert msg.index("trt: no TensorRT today") < msg.index("ort-cuda: no cuda today") < msg.index("ort-cpu: no cpu today")
    assert torch_opened == []  # torch is never a silent fallback


def test_explicit_trt_goes_to_the_tensorrt_backend(standin, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    path, _ = standin
    opened: list[str] = []
    monkeypatch.setattr(select_module, "_open_trt", lambda source, device="cpu": opened.append(source) or "trt-engine")
    assert open_engine(path, "trt") == "trt-engine"
    assert opened == [str(path)]


def test_auto_stops_at_a_broken_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"junk")
    with pytest.raises(EngineError, match="onnxruntime cannot load"):
        open_engine(bad)


def test_explicit_backends(standin, tmp_path: Path) -> None:  # noqa: ANN001
    path, _ = standin
    with open_engine(path, "ort", threads=1) as eng:
        assert eng.backend == "ort-cpu"
    with pytest.raises(ConfigError, match="backend 'torch' runs weight files"):
        open_engine(path, "torch")
    with pytest.raises(ConfigError, match="cp3rt export cyto3"):
        open_engine("cyto3", "ort")
    with pytest.raises(ConfigError, match="cp3rt export"):
        open_engine(tmp_path / "weights_file", "auto")
    with pytest.raises(ConfigError, match="backend is 'onnx'"):
        open_engine(path, "onnx")
    with pytest.raises(ConfigError, match="providers is set"):
        open_engine(path, "auto", providers=("cpu",))
