"""The temporary files of run records: who writes them (``writer_tag``, in their names) and
removing those a killed writer left (``remove_dead_partials``).

A record is rewritten through a temporary file (``cp3rt._fs``); a SIGKILL during a write leaves
that file behind. Image outputs are guarded by claims (``batch.claims``), whose holder removes
such leftovers; a record has no claim, so its temporary files name their writer instead.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
from pathlib import Path

PREFIX = "cp3rt_"  # a record's name: PREFIX + run_ / watch_ + UTC time + .json
# A record's temporary file: .<record>.<pid>@<host>.<random>.part.json (mkstemp's random part has no dot).
RECORD_PARTIAL = re.compile(r"^\." + PREFIX + r"[\w-]+\.json\.(\d+)@(.+)\.[^.]+\.part\.json$")


def writer_tag() -> str:
    """``<pid>@<host>``: who writes a record's temporary files (records hold no claim)."""
    return f"{os.getpid()}@{socket.gethostname()}"


def remove_dead_partials(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary record files that runs killed on this host left in ``folder`` (a
    SIGKILL during a record write leaves one): only those whose writer's pid is gone. A live
    writer's (its pid answers), another host's, or an untagged one is left alone, so a wrong
    guess leaves a file behind and never removes one being written."""
    removed = []
    if os.name != "posix" or not Path(folder).is_dir():
        return removed  # no signal-0 probe of a pid elsewhere
    host = socket.gethostname()
    for p in Path(folder).glob(f".{PREFIX}*.part.json"):
        m = RECORD_PARTIAL.match(p.name)
        if m is None or m.group(2) != host or _pid_alive(int(m.group(1))):
            continue
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
            removed.append(p)
    return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. PermissionError: it exists, under another user
        return True
    return True
