"""`cp3rt run --gpu-resident` as a user runs it: the torch engine on the CPU stands in for the GPU."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from cp3rt.export.from_onnx import recover_weight_file

ASSETS = Path(__file__).resolve().parents[2] / "src" / "cp3rt" / "assets"
SAMPLE = ASSETS / "samples" / "dsb2018_nuclei.tif"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cp3rt", "run", *args], capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_gpu_resident_run_writes_the_host_paths_masks(tmp_path: Path) -> None:
    weights = recover_weight_file(ASSETS / "models" / "cp3rt_nuclei.onnx", tmp_path / "cp3rt_nuclei")
    common = (str(SAMPLE), "--model", str(weights), "--backend", "torch", "--diameter", "17")
    host = _run(*common, "--out", str(tmp_path / "host"))
    resident = _run(*common, "--gpu-resident", "--out", str(tmp_path / "resident"))
    assert host.returncode == 0, host.stderr
    assert resident.returncode == 0, resident.stderr
    want = tifffile.imread(tmp_path / "host" / "dsb2018_nuclei_cp_masks.tif")
    got = tifffile.imread(tmp_path / "resident" / "dsb2018_nuclei_cp_masks.tif")
    assert want.max() > 20
    np.testing.assert_array_equal(got, want)


def test_gpu_resident_with_an_onnx_backend_is_refused_in_one_line_before_any_work(tmp_path: Path) -> None:
    proc = _run(str(SAMPLE), "--model", "cp3rt_nuclei", "--backend", "ort", "--gpu-resident",
                "--diameter", "17", "--out", str(tmp_path / "out"))
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "gpu_resident=True" in lines[0] and "torch-cuda" in lines[0], proc.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
