"""Finding input images: files, folders and glob patterns (Cellpose folder rules, spec §8.1)."""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Sequence
from pathlib import Path

from cp3rt._fs import is_partial_file
from cp3rt.errors import InputError
from cp3rt.runtime.io.read import IMAGE_SUFFIXES, READABLE_SUFFIXES

# Stems that Cellpose (and cp3rt) give their outputs; such files are never taken as inputs
# from a folder or a pattern. `_cp_masks` ends with `_masks`, `_seg` covers `_seg.npy`.
OUTPUT_STEM_SUFFIXES = (
    "_cp_output", "_flows", "_flows_0", "_flows_1", "_flows_2", "_cellprob", "_masks", "_seg",
    "_dP",
)
_GLOB_CHARS = re.compile(r"[*?\[]")
_DIGITS = re.compile(r"(\d+)")


def natural_key(text: str) -> tuple[str | int, ...]:
    """Sort key that orders digit runs by value: ``img2`` before ``img10``."""
    parts = _DIGITS.split(text)
    # split() alternates text/digits starting with text, so equal positions compare equal types.
    return tuple(int(p) if i % 2 else p for i, p in enumerate(parts))


def is_output_name(path: str | os.PathLike[str]) -> bool:
    """True when the file stem ends with a Cellpose/cp3rt output suffix (and is longer)."""
    stem = Path(path).stem
    return any(len(stem) > len(s) and stem.endswith(s) for s in OUTPUT_STEM_SUFFIXES)


def _wanted(path: Path, suffixes: tuple[str, ...]) -> bool:
    return (
        path.is_file()
        and path.suffix.lower() in suffixes
        and not is_partial_file(path)
        and not is_output_name(path)
    )


def find_images(inputs: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Expand files, folders and glob patterns into a de-duplicated, naturally sorted list.

    * a file is taken as given (its extension must be readable);
    * a folder contributes its .tif/.tiff/.flex/.png/.jpg/.jpeg files (not sub-folders);
    * a pattern (``*``, ``?``, ``[``; ``**`` recurses) contributes matching readable files,
      .npy included.
    Folder and pattern results skip Cellpose outputs (stems ending ``_masks``, ``_cp_masks``,
    ``_flows``, ``_cellprob``, ``_cp_output``, ``_seg``...) and cp3rt's unfinished temporary
    files. An input that yields nothing raises :class:`InputError`.
    """
    if not inputs:
        raise InputError("No input was given; name image files, folders or glob patterns.")
    found: list[Path] = []
    for raw in inputs:
        text = os.fspath(raw)
        path = Path(text)
        if path.is_file():
            if path.suffix.lower() not in READABLE_SUFFIXES:
                raise InputError(
                    f"{path} has the unsupported extension '{path.suffix}'; cp3rt reads "
                    f"{', '.join(READABLE_SUFFIXES)}."
                )
            found.append(path)
        elif path.is_dir():
            hits = [p for p in path.iterdir() if _wanted(p, IMAGE_SUFFIXES)]
            if not hits:
                raise InputError(
                    f"Folder {path} contains no input images ({', '.join(IMAGE_SUFFIXES)}, "
                    "Cellpose output files excluded)."
                )
            found.extend(hits)
        elif _GLOB_CHARS.search(text):
            hits = [Path(m) for m in glob.glob(text, recursive=True)]
            hits = [p for p in hits if _wanted(p, READABLE_SUFFIXES)]
            if not hits:
                raise InputError(f"Pattern {text} matches no image files.")
            found.extend(hits)
        else:
            raise InputError(f"{path} does not exist.")
    unique: dict[Path, Path] = {}
    for p in found:
        unique.setdefault(p.resolve(), p)
    return sorted(unique.values(), key=lambda p: natural_key(str(p)))
