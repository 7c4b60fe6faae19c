"""One 2-worker LocalCluster (processes, loopback) and one tiny real ONNX net for every cluster
test: workers load engines from a PipelineConfig, so the net must be a file."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runtime"))
from scale_testutil import export_tiny_onnx  # noqa: E402

from cp3rt.distributed import close_client, open_client  # noqa: E402


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory) -> Path:
    return export_tiny_onnx(tmp_path_factory.mktemp("net"))


@pytest.fixture(scope="session")
def client():
    c = open_client("local:2")
    yield c
    close_client(c)
