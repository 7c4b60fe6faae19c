"""Re-run the 3-D kernel tests with NUMBA_DISABLE_JIT=1 (plain-Python semantics of the kernels
must agree with the naive implementations too)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

KERNEL_TESTS = Path(__file__).with_name("test_kernels3d.py")


def test_3d_kernel_tests_pass_without_jit():
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(KERNEL_TESTS)],
        env=env, capture_output=True, text=True, timeout=900,
        cwd=Path(__file__).resolve().parents[3],
    )
    tail = (proc.stdout + proc.stderr)[-4000:]
    assert proc.returncode == 0, tail
    assert " passed" in tail and "skipped" not in tail, tail
