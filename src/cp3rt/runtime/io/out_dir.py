"""Check an output folder once, before the first image, instead of failing per image after
computing each (issue 13 item 9): ``check_output_dir(path)``."""

from __future__ import annotations

import os
from pathlib import Path

from cp3rt.errors import ConfigError, OutputError


def check_output_dir(path: str | os.PathLike[str], *, flag: str = "--out") -> Path:
    """``path`` as a Path if it is a folder cp3rt can write into, or one it can create.

    Nothing is created. ConfigError (a bad option value, exit 2) when ``path`` or one of its
    parents is an existing file; OutputError when the folder, or the nearest existing parent
    it would be created in, is not writable. ``flag`` names the option in the message.
    """
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{flag} {out} is a file; give a folder (it is created if missing).")
    parent = out
    while not parent.exists():
        if parent.parent == parent:
            break
        parent = parent.parent
    if parent.exists() and not parent.is_dir():
        raise ConfigError(
            f"{flag} {out} cannot be created: {parent} is a file; give a folder path."
        )
    if parent.exists() and not os.access(parent, os.W_OK | os.X_OK):
        what = "is not writable" if parent == out else f"cannot be created: {parent} is not writable"
        raise OutputError(f"{flag} {out} {what}; choose a folder you can write to.")
    return out
