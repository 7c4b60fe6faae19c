"""Where weight files are looked for, in the documented order (§2.1).

1. ``$CELLPOSE_LOCAL_MODELS_PATH`` (the reference's own override),
2. Cellpose's default cache ``~/.cellpose/models``,
3. cp3rt's cache ``$CP3RT_CACHE_DIR/models`` or the platform user cache ``.../cp3rt/models``
   (the only place cp3rt downloads into).

Reusing the Cellpose folders means a machine that already ran Cellpose needs no download.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Literal

from cp3rt.cache import cache_dir
from cp3rt.defaults import ENV_CELLPOSE_MODELS

LocationKind = Literal["path", "package", "cellpose-env", "cellpose-cache", "cp3rt-cache"]


@dataclasses.dataclass(frozen=True)
class Location:
    """A place a weight file was found: how it was found (``kind``) and the file."""

    kind: LocationKind
    path: Path


def models_cache_dir() -> Path:
    """Folder cp3rt downloads weight and size-model files into."""
    return cache_dir() / "models"


def cellpose_cache_dir() -> Path:
    """The reference's default model folder (without its env override)."""
    return Path.home() / ".cellpose" / "models"


def search_dirs() -> list[tuple[LocationKind, Path]]:
    """Folders searched for a zoo file, in order (unset env vars are left out)."""
    dirs: list[tuple[LocationKind, Path]] = []
    env = os.environ.get(ENV_CELLPOSE_MODELS)
    if env:
        dirs.append(("cellpose-env", Path(env).expanduser()))
    dirs.append(("cellpose-cache", cellpose_cache_dir()))
    dirs.append(("cp3rt-cache", models_cache_dir()))
    return dirs


def find_file(basename: str) -> Location | None:
    """First existing ``basename`` in :func:`search_dirs`, or None."""
    for kind, folder in search_dirs():
        candidate = folder / basename
        if candidate.is_file():
            return Location(kind, candidate)
    return None
