"""The CUDA layer against the real cuda-bindings of both CUDA majors, without a GPU or driver
(see real_cuda_checks.py for what is checked). 13.x: the one constraints/test.txt pins (numba-cuda
needs it). 12.x: CUDA12_BINDINGS, installed with --no-deps into a temporary folder put first on
PYTHONPATH (a few seconds; a second full venv would cost minutes). Each runs in a subprocess, so
the fakes other tests install never mix with the real module."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
CHECKS = HERE / "real_cuda_checks.py"
CUDA12_BINDINGS = "12.9.4"  # also noted in constraints/test.txt (a second pin of one name cannot go there)


def _run(*first_on_path: str) -> dict:
    path = [*first_on_path, str(ROOT / "src"), str(ROOT / "tests" / "fakes")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([*path, os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, str(CHECKS)], capture_output=True, text=True, timeout=120, env=env)
    assert proc.stdout.strip(), proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    if report["skipped"]:
        pytest.skip(report["skipped"])
    assert report["failed"] == {}, "\n".join(f"{k}:\n{v}" for k, v in report["failed"].items())
    assert proc.returncode == 0 and len(report["passed"]) >= 7, report
    return report


@pytest.fixture(scope="module")
def cuda12(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("cuda-bindings-12")
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--disable-pip-version-check",
           "--target", str(target), f"cuda-bindings=={CUDA12_BINDINGS}"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
        ok, why = proc.returncode == 0, (proc.stderr.strip().splitlines() or ["?"])[-1]
    except subprocess.TimeoutExpired:
        ok, why = False, "pip took over 90 s"
    if not ok:
        if os.environ.get("CI"):
            pytest.fail(f"cannot install cuda-bindings=={CUDA12_BINDINGS} for the CUDA 12 check: {why}")
        pytest.skip(f"cuda-bindings=={CUDA12_BINDINGS} could not be installed here ({why})")
    return target


def test_cuda_layer_against_the_pinned_cuda_bindings() -> None:
    if importlib.util.find_spec("cuda.bindings") is None:
        pytest.skip("cuda-bindings is not installed (it comes with the test extra's numba-cuda)")
    report = _run()
    assert report["bindings"].split(".")[0] == "13", report["bindings"]


def test_cuda_layer_against_cuda12_bindings(cuda12: Path) -> None:
    report = _run(str(cuda12))
    assert report["bindings"] == CUDA12_BINDINGS, report["bindings"]
