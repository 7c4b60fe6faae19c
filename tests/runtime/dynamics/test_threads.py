"""The dynamics run from many threads at once: kernels compiled nogil, launches safe on every
numba threading layer, and the same labels as one thread at a time."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cp3rt.runtime.batch.kernel_cache import KERNEL_MODULES_2D, KERNEL_MODULES_3D
from cp3rt.runtime.dynamics.threads import kernel_threads

PROBE = Path(__file__).with_name("threads_probe.py")
JIT_OFF = os.environ.get("NUMBA_DISABLE_JIT") == "1"


def _module_kernels():
    from numba.core.dispatcher import Dispatcher

    for module_name in KERNEL_MODULES_2D + KERNEL_MODULES_3D:
        for name, obj in vars(importlib.import_module(module_name)).items():
            disp = getattr(obj, "dispatcher", obj)
            if isinstance(disp, Dispatcher) and disp.__module__ == module_name:
                yield f"{module_name}.{name}", obj, disp


@pytest.mark.skipif(JIT_OFF, reason="without the JIT there are no compiled kernels to inspect")
def test_every_kernel_releases_the_gil_and_parallel_ones_launch_through_the_guard():
    kernels = list(_module_kernels())
    holding = [name for name, _, disp in kernels if not disp.targetoptions.get("nogil")]
    unguarded = [name for name, obj, disp in kernels if disp.targetoptions.get("parallel") and obj is disp]
    assert len(kernels) > 40 and sum(bool(d.targetoptions.get("parallel")) for _, _, d in kernels) == 17
    assert holding == [], f"compiled without nogil (they stop every other thread): {holding}"
    assert unguarded == [], f"parallel kernels not wrapped by dynamics.threads.parallel_kernel: {unguarded}"


def _probe(layer: str) -> dict:
    env = dict(os.environ, NUMBA_THREADING_LAYER=layer, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.run([sys.executable, str(PROBE), "4", "3"], env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]  # workqueue aborts (rc 134) on an unguarded concurrent launch
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(JIT_OFF, reason="the threading layers only exist for compiled kernels")
def test_concurrent_dynamics_on_the_workqueue_layer_are_serialised_not_aborted():
    out = _probe("workqueue")
    assert out["layer"] == "workqueue" and out["unlocked"] is False
    assert out["equal"] and min(out["objects"]) > 40


@pytest.mark.skipif(JIT_OFF, reason="the threading layers only exist for compiled kernels")
def test_concurrent_dynamics_on_a_threadsafe_layer_run_unlocked_and_agree():
    out = _probe("threadsafe")  # tbb or omp, whichever this numba can load (numba refuses otherwise)
    assert out["layer"] in ("tbb", "omp") and out["unlocked"] is True
    assert out["equal"] and min(out["objects"]) > 40


@pytest.mark.parametrize(("workers", "cores", "expected"),
                         [(3, 1, 1), (3, 2, 2), (3, 4, 2), (3, 16, 5), (8, 16, 2), (1, 4, 4), (20, 16, 2)])
def test_kernel_threads_share_the_cores_out(workers, cores, expected, monkeypatch):
    import numba

    monkeypatch.setattr(numba.config, "NUMBA_NUM_THREADS", 64)
    assert kernel_threads(workers, cores) == expected
    monkeypatch.setattr(numba.config, "NUMBA_NUM_THREADS", 2)
    assert kernel_threads(1, 16) == 2  # never more than numba's pool
