"""cp3rt's cache folder: where built artefacts go unless the user names a folder (ground floor).

``$CP3RT_CACHE_DIR`` if set, else the platform user cache folder (``~/.cache/cp3rt`` on Linux).
Every part that writes there keeps its own subfolder: ``models/`` (downloaded weight files,
:mod:`cp3rt.zoo.locations`), ``onnx/`` (exports, :mod:`cp3rt.artefacts`), ``plans/`` (TensorRT
plans and timing caches, :mod:`cp3rt.engines.tensorrt`) and ``torch-compile/`` (Inductor's
compiled kernels, :mod:`cp3rt.engines.compile_cache`). It sits on the ground floor because the
zoo, the engines and the artefact cache all need the root and none of them owns it.
"""

from __future__ import annotations

import os
from pathlib import Path

from cp3rt.defaults import ENV_CACHE_DIR


def cache_dir() -> Path:
    """cp3rt's cache root: ``$CP3RT_CACHE_DIR`` if set, else the platform user cache folder."""
    env = os.environ.get(ENV_CACHE_DIR)
    if env:
        return Path(env).expanduser()
    import platformdirs  # imported here: only the parts that write to the cache need it

    return Path(platformdirs.user_cache_dir("cp3rt", appauthor=False))
