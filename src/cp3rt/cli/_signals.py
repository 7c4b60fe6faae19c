"""SIGINT / SIGTERM during ``cp3rt run``: stop cleanly, say what was done, exit 128 + signal.

The first signal sets the batch's ``Cancel`` (the library stops between images, abandons a huge
image between blocks and removes its partial outputs); the run then returns, the summary is
printed and the exit code is the shell's convention (130 for SIGINT, 143 for SIGTERM). A second
signal stops at once (KeyboardInterrupt / the default SIGTERM), for a user who will not wait.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator

from cp3rt.runtime.batch.cancel import Cancel

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def cancel_on_signals(cancel: Cancel) -> Iterator[list[int]]:
    """Route SIGINT and SIGTERM to ``cancel`` until the block ends; yields the list that
    receives the number of the first signal."""
    got: list[int] = []

    def handler(signum: int, _frame: object) -> None:
        if got:  # the second one: now
            signal.signal(signum, signal.SIG_DFL)
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            signal.raise_signal(signum)
        got.append(signum)
        cancel.set(signal.Signals(signum).name)

    previous = {s: signal.signal(s, handler) for s in STOP_SIGNALS}
    try:
        yield got
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def exit_code(signum: int) -> int:
    """The shell's code for a command ended by ``signum``: 128 + its number."""
    return 128 + int(signum)
