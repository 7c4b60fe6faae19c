"""TensorRT's timing cache: the tactic timings of earlier builds on this GPU and TensorRT, kept
in the plan cache folder so a rebuild (another shape range, another model) skips the timings it
already has. One file per TensorRT version and compute capability; a file TensorRT cannot read
only costs the timings.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from cp3rt._fs import atomic_write_bytes
from cp3rt.engines.tensorrt._trt import TrtEnvironment

def default_timing_cache(env: TrtEnvironment) -> Path:
    """``<cache>/plans/timing-trt<version>-sm<cc>.cache``."""
    from cp3rt.cache import cache_dir

    tag = f"trt{env.tensorrt_version}-sm{env.compute_capability.replace('.', '')}"
    return cache_dir() / "plans" / f"timing-{tag}.cache"


def attach_timing_cache(bconf: Any, path: Path, say: Callable[[str], None], logger: Any) -> Any:
    """Load the persisted timing cache (tactic timings of earlier builds on this GPU + TensorRT).

    A file TensorRT cannot read (truncated by a crash, overwritten) only costs the timings: it is
    replaced by a new cache, with a warning, and its errors are dropped from the build's messages.
    """
    try:
        blob = path.read_bytes() if path.is_file() else b""
    except OSError as exc:
        say(f"timing cache {path} cannot be read ({exc}); starting a new one")
        blob = b""
    try:
        cache = bconf.create_timing_cache(blob)
    except (RuntimeError, TypeError, ValueError) as exc:
        cache, why = None, str(exc)
    else:
        why = logger.error_text("TensorRT returned no cache")
    if cache is None:
        say(f"timing cache {path} is unreadable ({why}); starting a new one")
        logger.errors.clear()
        cache = bconf.create_timing_cache(b"")
        bconf.set_timing_cache(cache, False)
        return cache
    if not bconf.set_timing_cache(cache, False):
        say(f"timing cache {path} does not match this TensorRT/GPU; starting a new one")
        cache = bconf.create_timing_cache(b"")
        bconf.set_timing_cache(cache, False)
    return cache


def save_timing_cache(cache: Any, path: Path) -> None:
    import filelock

    path.parent.mkdir(parents=True, exist_ok=True)
    with filelock.FileLock(str(path) + ".lock"):
        atomic_write_bytes(path, bytes(cache.serialize()))
