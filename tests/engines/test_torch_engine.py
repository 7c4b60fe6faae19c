"""TorchEngine against the reference CPnet (cellpose 3.1.1.2) on the same random v3 weight files."""

from __future__ import annotations

from pathlib import Path

import cellpose.core
import cellpose.resnet_torch
import numpy as np
import pytest
import torch

from cp3rt.engines import open_engine
from cp3rt.engines.torch_engine import TorchEngine
from cp3rt.errors import BackendUnavailableError, ConfigError, EngineError

pytestmark = pytest.mark.reference

# Same framework, same float32 ops; only kernel choice (mkldnn off here too) may differ.
FLOWS_ATOL = 1e-5
STYLE_ATOL = 1e-6


def _reference_file(path: Path, nchan: int, nout: int, seed: int,
                    diams: tuple[float, float] | None = None) -> cellpose.resnet_torch.CPnet:
    torch.manual_seed(seed)
    net = cellpose.resnet_torch.CPnet([nchan, 32, 64, 128, 256], nout, 3)
    if diams is not None:
        net.diam_mean.data[:] = diams[0]
        net.diam_labels.data[:] = diams[1]
    net.save_model(str(path))
    return net.eval()


def _worst(ours: np.ndarray, ref: np.ndarray, atol: float) -> str:
    diff = np.abs(ours - ref)
    idx = np.unravel_index(np.argmax(diff), diff.shape)
    return f"worst at {idx}: ours {ours[idx]} ref {ref[idx]}; mismatch rate {(diff > atol).mean():.3%}"


def test_segmentation_matches_reference(tmp_path: Path) -> None:
    net = _reference_file(tmp_path / "seg", 2, 3, seed=0)
    x = np.random.default_rng(0).normal(size=(2, 2, 64, 96)).astype(np.float32)
    ref_y, ref_style = cellpose.core._forward(net, x)
    with TorchEngine(tmp_path / "seg") as eng:
        assert eng.backend == "torch-cpu"
        assert [s.name for s in eng.outputs] == ["flows", "style"]
        out = eng.infer(x)
    for name, ours, ref, atol in (("flows", out["flows"], ref_y, FLOWS_ATOL), ("style", out["style"], ref_style, STYLE_ATOL)):
        assert ours.shape == ref.shape and ours.dtype == np.float32, name
        assert np.allclose(ours, ref, atol=atol, rtol=0), f"{name}: {_worst(ours, ref, atol)}"


def test_restoration_net(tmp_path: Path) -> None:
    net = _reference_file(tmp_path / "denoise_custom", 1, 1, seed=1)
    x = np.random.default_rng(1).normal(size=(1, 1, 48, 32)).astype(np.float32)
    ref_y, _ = cellpose.core._forward(net, x)
    eng = open_engine(tmp_path / "denoise_custom", "torch")
    out = eng.infer(x)
    eng.close()
    assert list(out) == ["restored"]
    assert np.allclose(out["restored"], ref_y, atol=FLOWS_ATOL, rtol=0), _worst(out["restored"], ref_y, FLOWS_ATOL)
    assert eng.manifest is not None and eng.manifest.role == "restore" and eng.manifest.nchan == 1


def test_zoo_name_uses_name_based_diameter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "models"
    folder.mkdir()
    _reference_file(folder / "nucleitorch_0", 2, 3, seed=2, diams=(30.0, 12.0))
    monkeypatch.setenv("CELLPOSE_LOCAL_MODELS_PATH", str(folder))
    monkeypatch.setenv("CP3RT_CACHE_DIR", str(tmp_path / "cache"))
    with TorchEngine("nuclei") as eng:
        assert eng.manifest is not None
        assert (eng.manifest.diam_mean, eng.manifest.diam_labels) == (17.0, 12.0)
        assert eng.manifest.role == "segment" and eng.manifest.nchan == 2
    with TorchEngine(folder / "nucleitorch_0") as eng:
        assert eng.manifest is not None and eng.manifest.diam_mean == 17.0


def test_devices(tmp_path: Path) -> None:
    _reference_file(tmp_path / "seg", 2, 3, seed=3)
    with pytest.raises(ConfigError, match="device is 'tpu'"):
        TorchEngine(tmp_path / "seg", device="tpu")
    if torch.cuda.is_available():
        with TorchEngine(tmp_path / "seg", device="cuda") as eng:
            assert eng.backend == "torch-cuda"
    else:
        with pytest.raises(BackendUnavailableError, match="sees no CUDA GPU"):
            TorchEngine(tmp_path / "seg", device="cuda")


def test_infer_device_keeps_tensors_and_equals_infer(tmp_path: Path) -> None:
    _reference_file(tmp_path / "seg", 2, 3, seed=2)
    x = np.random.default_rng(2).normal(size=(3, 2, 64, 64)).astype(np.float32)
    with TorchEngine(tmp_path / "seg") as eng:
        got = eng.infer_device(torch.from_numpy(x))
        want = eng.infer(x)
        assert eng.device == torch.device("cpu")
    assert isinstance(got["flows"], torch.Tensor) and got["flows"].dtype == torch.float32
    for name in ("flows", "style"):
        np.testing.assert_array_equal(got[name].numpy(), want[name])


def test_a_torch_failure_is_one_engine_error_on_both_paths(tmp_path: Path) -> None:
    _reference_file(tmp_path / "seg", 2, 3, seed=2)
    original = RuntimeError("Given groups=1, weight of size [32, 2, 3, 3], expected input\nmore text")

    def broken(x):  # noqa: ANN001, ANN202
        raise original

    with TorchEngine(tmp_path / "seg") as eng:
        assert eng.device_resident
        eng._net = broken
        for run in (eng.infer, lambda x: eng.infer_device(torch.from_numpy(x))):
            with pytest.raises(EngineError, match=r"^engine seg \(torch-cpu\) failed while running: "
                                                  r"RuntimeError: Given groups=1, .*expected input$") as info:
                run(np.zeros((1, 2, 64, 64), np.float32))
            assert info.value.__cause__ is original

