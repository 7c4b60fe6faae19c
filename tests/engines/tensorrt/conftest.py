"""Fixtures for the TensorRT tests: the fake tensorrt/CUDA modules and tiny exported nets."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "fakes"))

import trt_fixtures  # noqa: E402


@pytest.fixture(scope="session")
def exports(tmp_path_factory: pytest.TempPathFactory) -> trt_fixtures.Exports:
    return trt_fixtures.export_tiny(tmp_path_factory.mktemp("tiny_exports"))


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("CP3RT_CACHE_DIR", str(cache))
    return cache


@pytest.fixture
def fake_trt(monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201 - a factory
    """``fake_trt(version="10.9.0.34", gpu=True, cc=(9, 0), devices=None)`` installs the fakes,
    returns the state."""

    def install(version: str = "10.9.0.34", *, gpu: bool = True, cc: tuple[int, int] = (9, 0),
                **more):  # noqa: ANN003 - devices, trt_cuda, bindings_cuda, driver, dist
        return trt_fixtures.install(monkeypatch, version, gpu=gpu, cc=cc, **more)

    return install
