"""Claims: one run at a time works on an image, so two ``cp3rt run`` on one folder share it.

Before an image is computed its runner takes the claim of its masks file: an advisory,
exclusive ``flock`` on ``.<masks name>.lock`` next to it (the file holds pid, host and start
time, for people and for the "claimed by" message). The kernel drops the lock when its holder
exits or is killed, so a lock file left by a dead run is free again with no guessing from pids
or ages; on NFS the lock is the server's. Only the claim holder removes the temporary files of
an output (they can only be a dead run's leftovers then), and the lock file goes when the
claim is released. An image whose claim another live run holds is reported as "claimed", not
done and not failed; ``run_inputs`` waits for such images at the end and checks them again.

Where ``fcntl`` is missing (Windows), or the filesystem has no locks (some FUSE/SMB mounts
answer ENOLCK / EOPNOTSUPP), every claim is granted: two runs there are not kept apart, but one
run works as before.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import time
from pathlib import Path
from types import TracebackType

from cp3rt.errors import OutputError
from cp3rt.runtime.batch.cancel import Cancel

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

_NO_LOCKS = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}
POLL_SECONDS = 0.25  # how often a run waiting on another run's claim looks again


def lock_path(key: Path) -> Path:
    """The lock file of an output: ``out/.x_cp_masks.tif.lock`` for ``out/x_cp_masks.tif``."""
    return key.with_name(f".{key.name}.lock")


class Claim:
    """A held claim; release it with ``release()`` or by leaving its ``with`` block."""

    def __init__(self, path: Path, fd: int | None) -> None:
        self.path, self._fd = path, fd

    def release(self) -> None:
        if self._fd is None:
            return
        try:  # unlink while still holding the lock; a waiter re-checks the inode (try_claim)
            if os.stat(self.path).st_ino == os.fstat(self._fd).st_ino:
                os.unlink(self.path)
        except OSError:
            pass
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.release()


def try_claim(key: Path) -> Claim | None:
    """Claim the output ``key`` for this process; None when another live holder has it. An
    unwritable folder raises :class:`OutputError` naming it."""
    lock = lock_path(key)
    if fcntl is None:  # pragma: no cover
        return Claim(lock, None)
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(8):  # a holder may unlink the file between our open and our lock
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return None
            except OSError as exc:
                if exc.errno not in _NO_LOCKS:
                    raise
                return Claim(lock, fd)  # no locks on this filesystem: one run works as before
            if _same_file(lock, fd):
                os.ftruncate(fd, 0)
                os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                         "started": time.time()}).encode())
                return Claim(lock, fd)
            os.close(fd)
        return None
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        raise OutputError(f"Cannot claim {key.name} in folder {key.parent} (lock file {lock.name}): {why}.") from exc


def _same_file(lock: Path, fd: int) -> bool:
    try:
        return os.stat(lock).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


def clear_stale_lock(key: Path) -> None:
    """Remove the lock file of a finished output that a killed run left behind (it holds no
    lock any more); a lock a live run holds, or an unwritable folder, is left alone."""
    if lock_path(key).exists():
        try:
            claim = try_claim(key)
        except OutputError:
            return
        if claim is not None:
            claim.release()


def holder(key: Path) -> str:
    """Who holds ``key``'s claim, in words ('pid 12 on host, since 18:20:03'), or 'another run'."""
    try:
        info = json.loads(lock_path(key).read_text())
        since = time.strftime("%H:%M:%S", time.localtime(float(info["started"])))
        return f"pid {int(info['pid'])} on {info['host']}, since {since}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another run"


def wait_released(key: Path, stop: Cancel | None = None) -> bool:
    """Block until nobody holds ``key``'s claim (True), or until ``stop`` (a ``Cancel``) is set
    (False). The claim is not kept: the caller claims again when it processes the image."""
    while True:
        claim = try_claim(key)
        if claim is not None:
            claim.release()
            return True
        if stop is None:
            time.sleep(POLL_SECONDS)
        elif stop.wait(POLL_SECONDS):
            return False


def remove_stale_partials(final: Path) -> list[Path]:
    """Delete temporary files a killed run left for ``final`` (see cp3rt._fs.atomic_path)."""
    removed = []
    if final.parent.is_dir():
        for p in final.parent.glob(f".{final.name}.*.part*"):
            try:
                p.unlink()
                removed.append(p)
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise OutputError(f"{p}: cannot remove a stale partial file ({exc.strerror}).") from exc
    return removed
