"""``benchmarks/gpu_checks.sh`` is the one prepared script a session with a lent GPU runs, and a
device minute is scarce: a renamed flag, a moved test file or a Python error in a benchmark must
fail here, on CI, not on the GPU machine. These checks need no GPU."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_checks.sh"


def _commands() -> str:
    return SCRIPT.read_text().replace("\\\n", " ")  # one line per command


def _python_calls() -> dict[str, set[str]]:
    """benchmark script -> every ``--flag`` gpu_checks.sh passes it."""
    calls: dict[str, set[str]] = {}
    for script, rest in re.findall(r"python3 (benchmarks/\w+\.py)([^|\n]*)", _commands()):
        calls.setdefault(script, set()).update(re.findall(r"(?<![\w$])--[a-z][\w-]*", rest))
    return calls


def test_the_script_parses_as_bash():
    proc = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_every_test_file_it_runs_exists():
    paths = set(re.findall(r"tests/[\w/]+\.py", _commands()))
    assert paths, "gpu_checks.sh names no test file"
    assert sorted(p for p in paths if not (ROOT / p).is_file()) == []


@pytest.mark.parametrize("script", sorted(_python_calls()))
def test_every_benchmark_it_runs_takes_the_flags_it_is_given(script):
    proc = subprocess.run([sys.executable, str(ROOT / script), "--help"], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT / "src")}, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    offered = set(re.findall(r"--[a-z][\w-]*", proc.stdout))
    assert sorted(_python_calls()[script] - offered) == []


def test_the_parser_sees_the_calls_of_the_resident_mode():
    """The regexes above must find the commands, or the flag test checks nothing."""
    calls = _python_calls()
    assert {"--images", "--out"} <= calls["benchmarks/bench_gpu_resident.py"]
    assert "--backend" in calls["benchmarks/bench_stream.py"] and len(calls) >= 7


@pytest.mark.slow
def test_the_resident_benchmark_runs_end_to_end_on_the_cpu(tmp_path):
    """``bench_gpu_resident.py --smoke-cpu``: the benchmark's own code (models recovered from the
    shipped ONNX, both paths and the reference, latency, folder, the masks comparison, the verdict
    against issue 16's bars, the results files) on the CPU at small sizes; the host and the
    resident path must give the same masks. Only the device-memory step needs CUDA."""
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_gpu_resident.py"), "--smoke-cpu",
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=900,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "src"), "CP3RT_CACHE_DIR": str(tmp_path / "cache")},
                          cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "gpu_resident_smoke.json").read_text())
    assert [row["what"] for row in result["rows"]] == ["segment", "restore -> segment"]
    for row in result["rows"]:
        for path in ("host", "resident", "reference"):
            assert row[path]["p50_ms"] > 0 and row[path]["folder_equiv_per_s"] > 0
    assert result["masks_resident_vs_host_fp32"] == {"ap": [1.0, 1.0, 1.0], "images": 4}
    verdict = {v["key"]: v for v in result["verdict"]}
    assert len(verdict) == 8 and verdict["masks_ap90_fp32"]["pass"] is True
    assert verdict["big_device_in_use_gib"]["value"] is None and verdict["big_device_in_use_gib"]["pass"] is None
    ratio = result["rows"][0]["resident"]["folder_equiv_per_s"] / result["rows"][0]["reference"]["folder_equiv_per_s"]
    assert verdict["segment_folder_x_reference"]["value"] == pytest.approx(ratio)
    assert "## Issue 16's bars" in (tmp_path / "gpu_resident_smoke.md").read_text()
