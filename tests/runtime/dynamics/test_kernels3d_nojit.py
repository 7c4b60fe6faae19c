"""Re-run the 3-D kernel tests with NUMBA_DISABLE_JIT=1 (plain-Python semantics of the kernels
must agree with the naive implementations too)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests/ holds nojit_testutil
from nojit_testutil import assert_pass_without_jit  # noqa: E402


def test_3d_kernel_tests_pass_without_jit():
    assert_pass_without_jit(Path(__file__).with_name("test_kernels3d.py"))
