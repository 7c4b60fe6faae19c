"""The watch journal: an append-only JSON-lines file in the output folder saying what happened
to each input file (done / skipped / failed), so a restarted ``watch`` neither redoes nor skips
a file.

One record per line, written with one ``write`` and ``fsync``'d before the next image starts, so
a crash (power loss, SIGKILL) loses at most the record of the image in flight, whose outputs are
written atomically and are therefore either all there (the restart finds them and skips the
image) or not (the restart computes it). A torn last line (a crash mid-write) is ignored when the
journal is read, and the next record starts on a line of its own.

A file is known by its path relative to the watched folder plus its size and mtime: a file
written again later (another acquisition under the same name) is a new version and is
processed again; a file that failed is not retried until it changes.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from cp3rt.errors import OutputError
from cp3rt.runtime.batch.watch.complete import FileKey

SCHEMA = 1


class Journal:
    """Open (creating) the journal at ``path`` for the folder ``root``; ``seen`` / ``record``."""

    def __init__(self, path: Path, root: Path) -> None:
        self.path, self.root = Path(path), Path(root)
        self._known: dict[str, FileKey] = {}
        self._wrote: set[str] = set()  # files whose outputs exist ('done' or 'skipped' last)
        self.torn = 0  # unreadable lines skipped (a crash mid-write leaves at most one)
        self._lock = threading.Lock()
        self._load()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        except OSError as exc:
            raise OutputError(f"Cannot open the watch journal {self.path}: {exc.strerror}.") from exc
        self._newline_if_torn()

    def _load(self) -> None:
        try:
            lines = self.path.read_bytes().split(b"\n")
        except FileNotFoundError:
            return
        except OSError as exc:
            raise OutputError(f"Cannot read the watch journal {self.path}: {exc.strerror}.") from exc
        for line in lines:
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                self._known[rec["file"]] = FileKey(int(rec["size"]), int(rec["mtime_ns"]))
                self._note_outputs(rec["file"], rec.get("status"))
            except (ValueError, KeyError, TypeError):
                self.torn += 1

    def _newline_if_torn(self) -> None:
        with open(self.path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            if fh.tell() == 0:
                return
            fh.seek(-1, os.SEEK_END)
            last = fh.read(1)
        if last != b"\n":
            os.write(self._fd, b"\n")

    def __len__(self) -> int:
        return len(self._known)

    def name(self, path: Path) -> str:
        """The journal's name of an input: relative to the watched folder, with '/'."""
        try:
            return Path(os.path.abspath(path)).relative_to(os.path.abspath(self.root)).as_posix()
        except ValueError:
            return Path(os.path.abspath(path)).as_posix()

    def seen(self, path: Path, key: FileKey) -> bool:
        """Whether this version of ``path`` has a record (done, skipped or failed)."""
        return self._known.get(self.name(path)) == key

    def changed(self, path: Path, key: FileKey) -> bool:
        """Whether ``path`` has a record of another version (the file was written again since)."""
        known = self._known.get(self.name(path))
        return known is not None and known != key

    def record(self, path: Path, key: FileKey, status: str, **extra: Any) -> None:
        """Append one record and fsync it (raises OutputError when the disk refuses)."""
        rec = {"schema": SCHEMA, "file": self.name(path), "size": key.size, "mtime_ns": key.mtime_ns,
               "status": status, "time": time.time(), **extra}
        data = (json.dumps(rec, default=str) + "\n").encode()
        with self._lock:
            try:
                os.write(self._fd, data)
                os.fsync(self._fd)
            except OSError as exc:
                raise OutputError(f"Cannot write the watch journal {self.path}: {exc.strerror}.") from exc
            self._known[rec["file"]] = key
            self._note_outputs(rec["file"], status)

    def _note_outputs(self, name: str, status: object) -> None:
        if status in ("done", "skipped"):
            self._wrote.add(name)
        else:
            self._wrote.discard(name)

    def with_outputs(self) -> list[Path]:
        """The inputs whose outputs an earlier record says exist (to keep a later file of the
        same stem from being taken for done, or from overwriting them)."""
        return [self.root / name for name in sorted(self._wrote)]

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None  # type: ignore[assignment]

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def read_records(path: Path) -> list[dict[str, Any]]:
    """Every readable record of a journal, in order (torn lines left out): for tests and tools."""
    out = []
    for line in Path(path).read_bytes().split(b"\n"):
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out
