"""One harness for re-running kernel tests with ``NUMBA_DISABLE_JIT=1`` (a uniquely named module:
tests/ has no packages).

Every numba kernel has an obvious reference version in its tests; the same tests run a second
time in a fresh interpreter with the JIT off, so the kernels' plain-Python bodies must agree
too (catches numba-only typing, wrap-around and overflow behaviour).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def jit_disabled() -> bool:
    """True inside the re-run (the outer run's tests that start it skip themselves there)."""
    return os.environ.get("NUMBA_DISABLE_JIT") == "1"


def assert_pass_without_jit(test_file: str | Path, *, select: str | None = None, timeout: float = 900,
                            min_passed: int = 1) -> None:
    """Run ``test_file`` (optionally ``-k select``) under NUMBA_DISABLE_JIT=1; every selected test
    must pass, at least ``min_passed`` of them, none skipped."""
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test_file)]
    if select:
        args += ["-k", select]
    proc = subprocess.run(args, env=dict(os.environ, NUMBA_DISABLE_JIT="1"), capture_output=True,
                          text=True, timeout=timeout, cwd=REPO)
    tail = (proc.stdout + proc.stderr)[-4000:]
    assert proc.returncode == 0, tail
    found = re.search(r"(\d+) passed", tail)
    assert found and int(found.group(1)) >= min_passed, tail
    assert "skipped" not in tail and "failed" not in tail, tail
