"""The TensorRT backend, `cp3rt check` and the build/check commands import nothing heavy at import
time: no torch, no tensorrt, no CUDA bindings, no reference cellpose, no torch-side cp3rt code."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

FORBIDDEN = ("torch", "tensorrt", "cuda", "cellpose", "cp3rt.models", "cp3rt.export", "onnxruntime")
MODULES = ("cp3rt.engines.tensorrt.engine", "cp3rt.engines.tensorrt.builder",
           "cp3rt.engines.tensorrt.plan_cache", "cp3rt.build",
           "cp3rt.engines.torch_cuda", "cp3rt.check", "cp3rt.cli.build", "cp3rt.cli.check")


def _loaded(body: str) -> list[str]:
    code = f"import json, sys\n{body}\nprint(json.dumps(sorted(m for m in {FORBIDDEN!r} if m in sys.modules)))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("module", MODULES)
def test_imports_stay_light(module: str) -> None:
    assert _loaded(f"import {module}") == []


def test_the_check_can_fail() -> None:
    assert _loaded("import cp3rt.check\nimport onnxruntime") == ["onnxruntime"]
