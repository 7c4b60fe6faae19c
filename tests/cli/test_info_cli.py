"""`cp3rt info`: versions, providers and backend status, as tables and as JSON."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime
import pytest

from cp3rt._version import __version__
from cp3rt.cli.app import main


def test_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["versions"]["cp3rt"] == __version__
    assert data["versions"]["numpy"] == np.__version__
    assert data["onnxruntime_providers"] == onnxruntime.get_available_providers()
    backends = {b["name"]: b for b in data["backends"]}
    assert list(backends) == ["trt", "ort-tensorrt", "ort-cuda", "ort-cpu", "torch", "openvino"]
    assert backends["ort-cpu"]["available"] is True
    for b in backends.values():
        assert b["detail"]


def test_tables(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    lines: dict[str, str] = {}
    for line in out.splitlines():
        if line.strip():
            lines.setdefault(line.split()[0], line)  # first row per name: the versions table
    assert lines["onnxruntime"].split()[1] == onnxruntime.__version__
    assert f"onnxruntime providers: {', '.join(onnxruntime.get_available_providers())}" in out
    assert lines["ort-cpu"].split()[1] == "yes"
    assert lines["trt"].split()[1] == "no"
