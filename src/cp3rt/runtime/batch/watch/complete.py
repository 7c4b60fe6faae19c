"""When a file that is being written is ready to read: ``Settler`` (size + mtime stable over a
settle interval) and ``looks_complete`` (it parses as a whole image).

Both are needed. A camera or a copy over the network can pause longer than any settle interval,
so a stable size alone can still be half a file; a file that parses can still be growing (a
stack gaining pages). The parse check is cheap and reads no pixels:

* TIFF: every page's strips / tiles end inside the file, and the chain of pages (IFDs) ends
  inside the file too (tifffile logs a warning and stops early on a cut chain; that counts as
  incomplete);
* PNG: the last chunk is IEND; JPEG: the data ends with the EOI marker;
* NPY: the header parses and the file holds exactly the bytes it announces.

A file that never becomes complete (garbage, a copy that died) is handed on after ``give_up``
seconds unchanged, so the batch code reports it as failed instead of waiting for ever.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from pathlib import Path

from cp3rt.runtime.io.discover import natural_key
from cp3rt.runtime.io.read import PIL_SUFFIXES, TIFF_SUFFIXES

_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"


@dataclasses.dataclass(frozen=True)
class FileKey:
    """What identifies one version of a file: its size and modification time (ns)."""

    size: int
    mtime_ns: int


def file_key(path: Path) -> FileKey | None:
    """The file's current key, or None when it is gone (or not a regular file)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not os.path.isfile(path):
        return None
    return FileKey(st.st_size, st.st_mtime_ns)


def looks_complete(path: Path) -> bool:
    """True when ``path`` parses as a whole image of its kind (see the module docstring)."""
    suffix = path.suffix.lower()
    try:
        if os.path.getsize(path) == 0:
            return False
        if suffix in TIFF_SUFFIXES:
            return _tiff_complete(path)
        if suffix == ".png":
            return _tail(path, len(_PNG_END)) == _PNG_END
        if suffix in PIL_SUFFIXES:  # jpeg
            return _tail(path, 2) == b"\xff\xd9"
        if suffix == ".npy":
            return _npy_complete(path)
    except OSError:
        return False
    return True  # a kind we cannot check: the settle interval alone decides


def _tail(path: Path, n: int) -> bytes:
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        fh.seek(max(0, size - n))
        return fh.read()


class _Warned(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.seen = False

    def emit(self, record: logging.LogRecord) -> None:
        self.seen = True


def _tiff_complete(path: Path) -> bool:
    from cp3rt.errors import Cp3rtError
    from cp3rt.runtime.io.read import check_tiff_data

    log = logging.getLogger("tifffile")
    warned = _Warned()
    log.addHandler(warned)
    propagate, log.propagate = log.propagate, False  # a cut chain is expected here, not news
    try:
        check_tiff_data(path)  # parses every page; raises when a strip ends past the file's end
    except (Cp3rtError, OSError):
        return False
    finally:
        log.removeHandler(warned)
        log.propagate = propagate
    return not warned.seen


def _npy_complete(path: Path) -> bool:
    import numpy as np

    with open(path, "rb") as fh:
        try:
            fmt = np.lib.format
            major, _minor = fmt.read_magic(fh)
            read_header = fmt.read_array_header_1_0 if major == 1 else fmt.read_array_header_2_0
            shape, _fortran, dtype = read_header(fh)
        except Exception:  # noqa: BLE001 - a header still being written
            return False
        header_end = fh.tell()
    count = 1
    for n in shape:
        count *= n
    return os.path.getsize(path) == header_end + count * dtype.itemsize


@dataclasses.dataclass
class _Watching:
    key: FileKey
    since: float  # monotonic time the key was first seen unchanged


class Settler:
    """Tracks files that may still be written; ``ready()`` hands each on once, when complete."""

    def __init__(self, settle: float, give_up: float) -> None:
        self.settle, self.give_up = settle, give_up
        self._files: dict[Path, _Watching] = {}

    def __len__(self) -> int:
        return len(self._files)

    def add(self, path: Path) -> None:
        """Start (or keep) watching ``path``."""
        if path not in self._files:
            key = file_key(path)
            if key is not None:
                self._files[path] = _Watching(key, time.monotonic())

    def discard(self, path: Path) -> None:
        self._files.pop(path, None)

    def ready(self) -> list[tuple[Path, FileKey, bool]]:
        """(path, key, complete) of every file now ready, oldest first, forgotten here: complete
        ones once stable for ``settle`` s; incomplete ones once stable for ``give_up`` s."""
        now = time.monotonic()
        out = []
        for path, w in list(self._files.items()):
            key = file_key(path)
            if key is None:  # deleted or renamed away: its new name comes as its own event
                del self._files[path]
                continue
            if key != w.key:
                self._files[path] = _Watching(key, now)
                continue
            stable = now - w.since
            if stable < self.settle:
                continue
            complete = looks_complete(path)
            if complete or stable >= self.give_up:
                del self._files[path]
                out.append((w.since, natural_key(str(path)), path, key, complete))
        return [(p, k, c) for _, _, p, k, c in sorted(out, key=lambda t: t[:2])]
