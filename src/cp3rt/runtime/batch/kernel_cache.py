"""Are the numba kernels compiled on disk? Every kernel is ``@njit(cache=True)``: the first run on
a fresh install compiles them (about 20 s on 2 cores) and numba keeps the machine code in its
cache (``__pycache__`` beside the modules, or ``NUMBA_CACHE_DIR``); later processes load it.

``kernel_states()`` reads numba's own cache index of each kernel (nothing is compiled): a kernel
is warm when its index holds an entry compiled for this CPU. ``cp3rt run`` asks this before
the first image to say that a compile is coming; ``cp3rt warmup`` (``batch.warmup``) fills the
cache ahead. Kernels numba inlines into their callers (``inline="always"``) have no cache of
their own and are left out. Without numba's JIT (``NUMBA_DISABLE_JIT=1``) there is nothing to
compile and nothing is listed.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from typing import Any

# Every module of the runtime holding cached kernels; the 3-D ones only run for volumes.
KERNEL_MODULES_2D = (
    "cp3rt.runtime.prep.percentile", "cp3rt.runtime.prep.resize", "cp3rt.runtime.tiles._blend_kernels",
    "cp3rt.runtime.dynamics._prepare", "cp3rt.runtime.dynamics._euler", "cp3rt.runtime.dynamics._seeds",
    "cp3rt.runtime.dynamics._labels", "cp3rt.runtime.dynamics._fill", "cp3rt.runtime.dynamics._heat",
    "cp3rt.runtime.dynamics.resize", "cp3rt.runtime.io._outlines", "cp3rt.runtime.quality.labels",
)
KERNEL_MODULES_3D = ("cp3rt.runtime.dynamics._euler3d", "cp3rt.runtime.dynamics._seeds3d",
                     "cp3rt.runtime.dynamics._fill3d")
# Kernels every 2-D run compiles (tile blending, dynamics), and every do_3D run too: the "first
# run" notice looks at these only, since a run leaves kernels it had no use for (the one-pass
# percentile of big images, the 2x box shrink, outlines, training's heat flows...) cold, and the
# notice would never go away.
FIRST_RUN_KERNELS_2D = (
    "cp3rt.runtime.tiles._blend_kernels.blend_add",
    "cp3rt.runtime.dynamics._prepare.prepare", "cp3rt.runtime.dynamics._seeds.find_seeds",
    "cp3rt.runtime.dynamics._fill.fill_all",
)
FIRST_RUN_KERNELS_3D = ("cp3rt.runtime.dynamics._euler3d._follow3d",)
COLD_NOTICE = ("compiling numba kernels (first run, ~20 s; `cp3rt warmup` does this ahead, "
               "e.g. in an install script)")


@dataclasses.dataclass(frozen=True)
class KernelState:
    """One cached kernel: ``module.name``, and whether its compiled code is on disk for this CPU."""

    name: str
    warm: bool
    index: str  # numba's index file of the kernel ('' when unknown)


def _dispatchers(module_name: str) -> list[tuple[str, Any]]:
    from numba.core.dispatcher import Dispatcher

    module = importlib.import_module(module_name)
    found = []
    for name, obj in sorted(vars(module).items()):
        obj = getattr(obj, "dispatcher", obj)  # a dynamics.threads.parallel_kernel's compiled kernel
        if isinstance(obj, Dispatcher) and getattr(obj, "__module__", None) == module_name:
            if obj.targetoptions.get("inline") == "always":
                continue
            found.append((f"{module_name}.{name}", obj))
    return found


def _state(name: str, disp: Any) -> KernelState | None:
    """None when numba keeps no cache for it (caching off, or numba's internals moved)."""
    cache = getattr(disp, "_cache", None)
    cache_file = getattr(cache, "_cache_file", None)
    if cache_file is None:
        return None
    try:
        index = cache_file._load_index()  # {} when absent, stale (source changed) or another numba
        magic = disp.targetctx.codegen().magic_tuple()
    except Exception:  # noqa: BLE001 - a numba without these internals: say nothing rather than guess
        return None
    warm = any(isinstance(key, tuple) and len(key) > 1 and key[1] == magic for key in index)
    return KernelState(name, warm, str(getattr(cache_file, "_index_path", "")))


def kernel_states(*, volume: bool = True) -> tuple[KernelState, ...]:
    """The state of every cached kernel a 2-D run uses (and a volume run's, with ``volume``)."""
    if os.environ.get("NUMBA_DISABLE_JIT", "0") not in ("", "0"):
        return ()
    modules = KERNEL_MODULES_2D + (KERNEL_MODULES_3D if volume else ())
    states = (_state(name, disp) for module in modules for name, disp in _dispatchers(module))
    return tuple(s for s in states if s is not None)


def cold_kernels(*, volume: bool = False) -> list[str]:
    """Names of the kernels a run would compile first (empty when all are on disk)."""
    return [s.name for s in kernel_states(volume=volume) if not s.warm]


def first_run_cold(*, do_3D: bool = False) -> list[str]:
    """The kernels every such run compiles that are not on disk yet: non-empty on a fresh
    install (or a new numba / CPU), empty once one run of the kind has finished."""
    wanted = FIRST_RUN_KERNELS_2D + (FIRST_RUN_KERNELS_3D if do_3D else ())
    return [s.name for s in kernel_states(volume=do_3D) if s.name in wanted and not s.warm]


def cache_location() -> str:
    """Where numba writes the compiled kernels."""
    where = os.environ.get("NUMBA_CACHE_DIR")
    return where if where else "__pycache__ folders beside cp3rt's modules (NUMBA_CACHE_DIR moves it)"
