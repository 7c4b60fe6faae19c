"""CUDA dynamics (cp3rt.runtime.dynamics.cuda): simulator cases, lazy import, refusal without a
device, and (marker ``gpu``) the real device against the CPU path on a bigger scene."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from . import synth

REPO = Path(__file__).resolve().parents[3]
SIM_CASES = Path(__file__).with_name("sim_cuda_cases.py")


def _python(code_or_args: list[str], **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *code_or_args], env=dict(os.environ, **env),
                          capture_output=True, text=True, timeout=600, cwd=REPO)


def test_kernels_match_the_cpu_kernels_in_the_simulator():
    """NUMBA_ENABLE_CUDASIM must be set before numba.cuda is first imported, and this process
    already uses numba: the simulator cases run in their own interpreter."""
    proc = _python(["-m", "pytest", "-q", "-p", "no:cacheprovider", str(SIM_CASES)],
                   NUMBA_ENABLE_CUDASIM="1")
    tail = (proc.stdout + proc.stderr)[-4000:]
    assert proc.returncode == 0, tail
    assert " passed" in tail and "skipped" not in tail, tail


def test_importing_cp3rt_does_not_import_numba_cuda():
    code = ("import sys, cp3rt, cp3rt.runtime, cp3rt.runtime.dynamics, "
            "cp3rt.runtime.dynamics.cuda; "
            "print(sorted(m for m in sys.modules if m.startswith('numba.cuda')))")
    proc = _python(["-c", code])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]", proc.stdout


def test_without_a_device_the_error_says_why():
    code = (
        "import numpy as np\n"
        "from numba import cuda\n"
        "if cuda.is_available(): print('HAS_GPU'); raise SystemExit\n"
        "from cp3rt.errors import BackendUnavailableError\n"
        "from cp3rt.runtime.dynamics import DynamicsConfig\n"
        "from cp3rt.runtime.dynamics.cuda import compute_masks_cuda\n"
        "try:\n"
        "    compute_masks_cuda(np.zeros((2, 8, 8)), np.zeros((8, 8)), DynamicsConfig())\n"
        "except BackendUnavailableError as err:\n"
        "    print('REFUSED', err)\n"
    )
    proc = _python(["-c", code], NUMBA_ENABLE_CUDASIM="0")
    assert proc.returncode == 0, proc.stderr[-2000:]
    if proc.stdout.startswith("HAS_GPU"):
        pytest.skip("a CUDA device is present here")
    assert proc.stdout.startswith("REFUSED the CUDA dynamics need an NVIDIA GPU"), proc.stdout
    assert "NUMBA_ENABLE_CUDASIM=1" in proc.stdout and "compute_masks_with" in proc.stdout


def _real_device():
    """numba.cuda if this process sees a real CUDA device, else skip with the reason."""
    from cp3rt.runtime.dynamics.cuda import _env

    if os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0"):
        pytest.skip("numba's CUDA simulator is enabled in this process")
    try:
        return _env.load()
    except Exception as err:  # noqa: BLE001 - BackendUnavailableError or a broken install
        pytest.skip(f"needs a CUDA GPU: {err}")


@pytest.mark.gpu
def test_device_matches_the_cpu_path_on_a_1024_scene():
    cuda = _real_device()
    from cp3rt.runtime.dynamics import DynamicsConfig, compute_masks_with
    from cp3rt.runtime.dynamics._euler import follow
    from cp3rt.runtime.dynamics._prepare import prepare
    from cp3rt.runtime.dynamics.cuda import compute_masks_cuda, end_points_cuda

    lab = synth.with_small_cells(synth.ellipse_cells((1024, 1024), 1500, seed=5), 40, seed=5)
    dP, prob = synth.net_outputs(lab, seed=5, weak_fraction=0.1)
    for interp in (True, False):
        ys, xs, ends = end_points_cuda(dP, prob, DynamicsConfig(niter=200, interp=interp))
        _, field, cys, cxs = prepare(dP, prob, np.float32(0.0))
        np.testing.assert_array_equal(ys, cys)
        np.testing.assert_array_equal(ends, follow(field, cys, cxs, 200, interp))
    for config in (DynamicsConfig(niter=200), DynamicsConfig(niter=200, flow_threshold=0),
                   DynamicsConfig(niter=200, interp=False, reference_bugs=True)):
        cpu = compute_masks_with(dP, prob, config)
        assert cpu.max() > 1000
        stream = cuda.stream()
        gpu = compute_masks_cuda(cuda.to_device(dP, stream=stream),
                                 cuda.to_device(prob, stream=stream), config, stream=stream)
        np.testing.assert_array_equal(gpu, cpu)
    try:
        import torch
    except ImportError:
        return
    if torch.cuda.is_available():  # the net's output as it comes: torch tensors on a stream
        torch_stream = torch.cuda.Stream()
        with torch.cuda.stream(torch_stream):
            t_dP = torch.from_numpy(dP).cuda()
            t_prob = torch.from_numpy(prob).cuda()
        config = DynamicsConfig(niter=200)
        gpu = compute_masks_cuda(t_dP, t_prob, config, stream=torch_stream)
        np.testing.assert_array_equal(gpu, compute_masks_with(dP, prob, config))
