"""Stopping a batch early, on the caller's word: ``Cancel`` is a flag the caller sets (``cp3rt
run`` sets it from SIGINT / SIGTERM) and the batch runners read.

The library never installs a signal handler. When the flag is set the runners start no new
image, finish the whole images in flight (seconds each), abandon a huge image between two of
its blocks (its temporary output is removed on the way out), and return the outcomes of what
was done with ``BatchSummary.not_started`` counting the rest. A re-run resumes as usual.
"""

from __future__ import annotations

import threading


class Cancelled(Exception):
    """Raised inside a batch runner when its ``Cancel`` was set: not an image's failure (never
    recorded as one); the runner that started the image catches it and stops."""


class Cancel:
    """A thread-safe stop flag with the reason it was set (e.g. ``'SIGINT'``)."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason: str | None = None

    def set(self, reason: str = "cancelled") -> None:
        if not self._event.is_set():
            self.reason = reason
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        """Raise :class:`Cancelled` if the flag is set (call it between units of work)."""
        if self._event.is_set():
            raise Cancelled(self.reason or "cancelled")

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``, waking early when the flag is set; True if it is set."""
        return self._event.wait(seconds)


def is_cancelled(cancel: Cancel | None) -> bool:
    return cancel is not None and cancel.is_set()
