"""Which files of a watched folder tree are inputs, and how changes are noticed.

``Finder`` decides what an input is: an image file (Cellpose's folder suffixes, or the given
``--pattern`` globs matched against the name or the path relative to the folder) anywhere in
the tree, except cp3rt's and Cellpose's own outputs, hidden files and folders (cp3rt's
temporaries and many writers' partial files start with '.'), and the output folder.

``open_events`` starts a watchdog observer (inotify on Linux, FSEvents on macOS,
ReadDirectoryChangesW on Windows) that collects the paths it hears about; events only say where
to look, the settle and parse checks (``complete``) still decide when a file is ready.
Without watchdog, when its observer cannot start (inotify watch limit), or when asked to poll
(network shares, where no events arrive from other machines), the folder is rescanned every
``poll`` seconds instead; the reason is reported.
"""

from __future__ import annotations

import fnmatch
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from cp3rt.runtime.batch.files import CELLPROB_SUFFIX, DP_SUFFIX, FLOWS_SUFFIX, OVERLAY_SUFFIX, RESTORED_SUFFIX
from cp3rt.runtime.io.discover import is_output_name
from cp3rt.runtime.io.read import IMAGE_SUFFIXES

_OWN_STEMS = tuple(s.rsplit(".", 1)[0] for s in (RESTORED_SUFFIX, OVERLAY_SUFFIX, FLOWS_SUFFIX, DP_SUFFIX,
                                                  CELLPROB_SUFFIX))


_NOISE = ("opened", "closed_no_write")


class Finder:
    """Input files under ``root`` (recursive); ``skip`` is a folder never looked into."""

    def __init__(self, root: Path, patterns: Sequence[str] = (), skip: Path | None = None) -> None:
        self.root = Path(os.path.abspath(root))
        self.patterns = tuple(patterns)
        self.skip = Path(os.path.abspath(skip)) if skip is not None else None

    def wanted(self, path: Path) -> bool:
        """Whether ``path`` (absolute or relative to the working folder) is an input file name."""
        path = Path(os.path.abspath(path))
        try:
            rel = path.relative_to(self.root)
        except ValueError:
            return False
        if any(part.startswith(".") for part in rel.parts) or self._skipped(path.parent):
            return False
        if is_output_name(path) or path.stem.endswith(_OWN_STEMS):
            return False
        if self.patterns:
            return any(fnmatch.fnmatch(path.name, p) or fnmatch.fnmatch(rel.as_posix(), p) for p in self.patterns)
        return path.suffix.lower() in IMAGE_SUFFIXES

    def _skipped(self, folder: Path) -> bool:
        return self.skip is not None and self.skip != self.root and (folder == self.skip or self.skip in folder.parents)

    def scan(self, under: Path | None = None) -> Iterator[Path]:
        """Every input file in the tree (or in its folder ``under``) now, unsorted."""
        for dirpath, dirnames, filenames in os.walk(under or self.root):
            here = Path(dirpath)
            dirnames[:] = [d for d in dirnames if not d.startswith(".") and not self._skipped(here / d)]
            for name in filenames:
                p = here / name
                if self.wanted(p) and p.is_file():
                    yield p


class Events:
    """Paths a watchdog observer reported since the last ``drain()``."""

    def __init__(self, observer: Any, lock: threading.Lock, paths: set[Path]) -> None:
        self._observer, self._lock, self._paths = observer, lock, paths

    def drain(self) -> set[Path]:
        with self._lock:
            out = set(self._paths)
            self._paths.clear()
        return out

    def close(self) -> None:
        self._observer.stop()
        self._observer.join(timeout=5)


def open_events(root: Path) -> tuple[Events | None, str]:
    """A started observer on ``root`` (recursive) and a description ('inotify'...), or None and
    why the folder will be polled instead."""
    try:
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers import Observer
    except ImportError:
        return None, "watchdog is not installed"
    lock, paths = threading.Lock(), set()

    class Collect(FileSystemEventHandler):
        def on_any_event(self, event: Any) -> None:
            if event.event_type in _NOISE or (event.is_directory and event.event_type == "modified"):
                return  # our own reads open files; a folder's 'modified' repeats its files' events
            with lock:
                for p in (event.src_path, getattr(event, "dest_path", "")):
                    if p:
                        paths.add(Path(os.fsdecode(p)))

    observer = Observer()
    try:
        observer.schedule(Collect(), os.fspath(root), recursive=True)
        observer.start()
    except OSError as exc:  # e.g. the inotify watch limit
        return None, f"file events unavailable ({exc.strerror or exc})"
    kind = type(observer).__name__.removesuffix("Observer").lower() or "events"
    return Events(observer, lock, paths), kind
