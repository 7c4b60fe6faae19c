"""A shorter GIL switch interval while several workers run (``StreamConfig.gil_switch_s``).

Why it exists: a thread that returns from a nogil kernel (numba, onnxruntime, large numpy
operations) must take the GIL back, and while another thread runs Python it waits up to the
interpreter's switch interval (5 ms by default). The dynamics of one image go in and out of
kernels dozens of times, so beside a thread running Python they took 2.6x as long (0.52 s
instead of 0.20 s for 1024²) at 5 ms, 1.2x at 0.5 ms (benchmarks/results/cores.md).
Why it is off by default: that is one image's latency; on a machine whose cores are all busy
the waiting costs no throughput, and the extra switching bought none (a folder on 2 cores:
51.2 s at 0.5 ms vs 50.3 s at 5 ms). Whether it pays on a many-core host is measured by ``gpu_checks.sh cores``.
The interval is process-wide: it is lowered while the first stream runs and restored when the
last one ends.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterator

_lock = threading.Lock()
_active = [0, 0.0]  # streams running, the interval to restore


@contextlib.contextmanager
def gil_switch_interval(seconds: float | None) -> Iterator[None]:
    """Run the block with the GIL switch interval at most ``seconds`` (None: unchanged)."""
    if seconds is None:
        yield
        return
    with _lock:
        if _active[0] == 0:
            _active[1] = sys.getswitchinterval()
        _active[0] += 1
        sys.setswitchinterval(min(seconds, _active[1]))
    try:
        yield
    finally:
        with _lock:
            _active[0] -= 1
            if _active[0] == 0:
                sys.setswitchinterval(_active[1])
