"""The TorchInductor cache folder of compiled torch-CUDA engines, and who may ask to compile."""

from __future__ import annotations

import json
import types

import pytest

from cp3rt.engines import open_engine
from cp3rt.engines.compile_cache import ENV_INDUCTOR_CACHE, MANIFEST_NAME, compile_key, use_compile_cache
from cp3rt.errors import ConfigError
from cp3rt.runtime.config import PipelineConfig


def _fake_torch(name: str = "NVIDIA H200", cc: tuple[int, int] = (9, 0), version: str = "2.11.0+cu130"):  # noqa: ANN202
    props = types.SimpleNamespace(name=name, major=cc[0], minor=cc[1])
    cuda = types.SimpleNamespace(get_device_properties=lambda device: props)
    return types.SimpleNamespace(cuda=cuda, __version__=version, version=types.SimpleNamespace(cuda="13.0"))


def test_the_key_names_gpu_capability_torch_cuda_and_precision() -> None:
    assert compile_key(_fake_torch(), 0, "fp16") == "nvidia-h200-sm90-torch2.11.0-cuda13.0-fp16"
    assert compile_key(_fake_torch("NVIDIA L4", (8, 9)), 0, "bf16") == "nvidia-l4-sm89-torch2.11.0-cuda13.0-bf16"


def test_a_folder_per_key_with_a_manifest_and_inductor_pointed_at_it(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.delenv(ENV_INDUCTOR_CACHE, raising=False)
    folder = use_compile_cache(_fake_torch(), 0, "fp16", tmp_path)
    assert folder == tmp_path / "torch-compile" / "nvidia-h200-sm90-torch2.11.0-cuda13.0-fp16"
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    assert manifest["gpu_name"] == "NVIDIA H200" and manifest["compute_capability"] == "9.0"
    assert manifest["torch"] == "2.11.0+cu130" and manifest["precision"] == "fp16"
    import os

    assert os.environ[ENV_INDUCTOR_CACHE] == str(folder)
    monkeypatch.delenv(ENV_INDUCTOR_CACHE)
    other = use_compile_cache(_fake_torch(version="2.12.0"), 0, "fp16", tmp_path)
    assert other != folder  # another torch never reads this folder


def test_the_users_own_inductor_cache_wins(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setenv(ENV_INDUCTOR_CACHE, str(tmp_path / "mine"))
    assert use_compile_cache(_fake_torch(), 0, "fp16", tmp_path / "cp3rt") == tmp_path / "mine"
    assert not (tmp_path / "cp3rt").exists()


def test_only_torch_cuda_compiles() -> None:
    with pytest.raises(ConfigError, match="only the 'torch-cuda' backend"):
        PipelineConfig(segment="cyto3", backend="ort", compile=True)
    with pytest.raises(ConfigError, match="compile=True needs backend 'torch-cuda'"):
        open_engine("x.onnx", "ort", compile=True)
    with pytest.raises(ConfigError, match="compile=.* is not allowed"):
        PipelineConfig(segment="cyto3", backend="torch-cuda", compile="yes")  # type: ignore[arg-type]
    assert PipelineConfig(segment="cyto3", backend="torch-cuda", compile=True).compile
