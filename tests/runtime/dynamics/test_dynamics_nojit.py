"""Re-run the kernel tests with NUMBA_DISABLE_JIT=1: the kernels' plain-Python semantics must
agree with the naive implementations too (catches numba-only typing or overflow behaviour)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests/ holds nojit_testutil
from nojit_testutil import assert_pass_without_jit  # noqa: E402


def test_kernel_tests_pass_without_jit():
    assert_pass_without_jit(Path(__file__).with_name("test_dynamics_kernels.py"))
