"""Rendering for ``cp3rt watch``: on a terminal one live status line (what is watched, how
many done / failed, the backlog, the last image), failures printed above it; otherwise (a log
file, a service) one line per image with its objects, seconds and the backlog."""

from __future__ import annotations

import threading
from pathlib import Path
from types import TracebackType

from rich.console import Console
from rich.markup import escape

from cp3rt.runtime.batch.watch import WatchEvent, WatchSummary

_err = Console(stderr=True)


class Status:
    """Feeds on WatchEvents (from the watch loop and its detector thread)."""

    def __init__(self, folder: Path, *, verbose: bool = False, console: Console | None = None) -> None:
        self._console = console or _err
        self._folder, self._verbose = folder, verbose
        self._live = self._console.is_terminal
        self._status = self._console.status("", spinner="dots") if self._live else None
        self._lock = threading.Lock()
        self._done = self._failed = self._backlog = self._settling = 0
        self._last = ""
        self._how = ""

    def __enter__(self) -> Status:
        if self._status is not None:
            self._status.__enter__()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        if self._status is not None:
            self._status.__exit__(et, ev, tb)

    def update(self, event: WatchEvent) -> None:
        with self._lock:
            self._backlog, self._settling = event.backlog, event.settling
            if event.kind == "watching":
                self._how = event.note or ""
                self._say(f"watching {escape(str(self._folder))} ({escape(self._how)}); Ctrl-C stops after the "
                          "image in flight")
            elif event.kind == "end" and event.outcome is not None:
                self._ended(event)
            if self._status is not None:
                self._status.update(self._line())

    def _ended(self, event: WatchEvent) -> None:
        o = event.outcome
        assert o is not None
        if o.status == "failed":
            self._failed += 1
            self._say(f"[red]failed[/red] {escape(o.error or str(o.path))}")
            if self._verbose and o.detail:
                self._say(escape(o.detail.rstrip()))
            return
        self._done += 1
        seconds = sum(o.timings.values())
        self._last = f"{o.path.name}: {o.n_objects} objects, {seconds:.2f} s"
        if not self._live:  # headless: one line per image
            what = "done" if o.status == "done" else f"{o.status} ({o.note or 'outputs exist'})"
            self._say(f"{what} {escape(str(o.path))}: {o.n_objects} objects, {seconds:.2f} s, "
                      f"latency {event.latency or 0:.2f} s, backlog {event.backlog}")

    def _line(self) -> str:
        last = f" · last {escape(self._last)}" if self._last else ""
        return (f"watching {escape(self._folder.name)} · done {self._done} · failed {self._failed} · "
                f"backlog {self._backlog} · settling {self._settling}{last}")

    def _say(self, text: str) -> None:
        self._console.print(text, highlight=False, soft_wrap=True)


def summary(result: WatchSummary, *, stopped_by: str | None = None) -> None:
    """The session's last lines: counts, what is left, where the journal is."""
    b = result.batch
    lat = sorted(result.latencies)
    p50 = f", latency p50 {lat[len(lat) // 2]:.2f} s" if lat else ""
    why = f"stopped by {stopped_by} after the image in flight (no partial files left); " if stopped_by else ""
    _err.print(f"{why}{b.count('done')} done, {b.count('skipped')} skipped, {b.count('failed')} failed, "
               f"{b.n_objects} objects{p50}; backlog left {b.not_started}; journal {result.journal}",
               highlight=False, soft_wrap=True)
