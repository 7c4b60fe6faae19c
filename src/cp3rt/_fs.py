"""Filesystem helpers: every output is written to a temporary name and renamed when complete."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike[str], *, owner: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``final``; rename it onto ``final`` only if the block succeeds.

    The temporary file lives in the same folder so the rename is atomic on POSIX and Windows.
    Its name keeps the final suffix (``x.tif`` -> ``.x.tif.<random>.part.tif``) so writers that
    look at the extension still work; ``owner`` goes into it too (``.x.tif.<owner>.<random>...``)
    for files no claim guards, so a later run can tell a dead writer's leftovers. On any error
    the temporary file is removed.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{final.name}." + (f"{owner}." if owner else ""), suffix=f".part{final.suffix}", dir=final.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    # mkstemp creates 0600 files; outputs should get the usual umask-based mode (e.g. 0644).
    os.chmod(tmp, 0o666 & ~_UMASK)
    try:
        yield tmp
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Read once at import: os.umask is process-global, so probing it later from worker threads
# could briefly give files created elsewhere a 0 umask.
_UMASK = _read_umask()


def atomic_write_bytes(final: str | os.PathLike[str], data: bytes, *, owner: str | None = None) -> None:
    """Write ``data`` to ``final`` atomically (``owner``: see ``atomic_path``)."""
    with atomic_path(final, owner=owner) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())


def is_partial_file(path: str | os.PathLike[str]) -> bool:
    """True for temporary files left by :func:`atomic_path` when a process was killed."""
    name = Path(path).name
    return name.startswith(".") and ".part" in name
