"""Where TorchInductor keeps what it compiled for the torch-CUDA engines: built once, reused.

Compiling the nets costs 12-20 s per tile shape on an H200 (benchmarks/results/gpu_net.md) and
must not be paid on every start of an acquisition PC. Inductor caches its compiled graphs and
Triton kernels on disk by itself (keyed by the graph, the shapes and the dtypes); cp3rt points
that cache at a folder of its own cache root, one per (GPU, compute capability, torch, CUDA,
precision), like TensorRT plans, and writes a manifest there saying what it was built for. A
folder built on another GPU or torch is never read: a new key is a new folder.

A user who set ``TORCHINDUCTOR_CACHE_DIR`` keeps it (their setting wins, and cp3rt says nothing).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from cp3rt._fs import atomic_write_bytes
from cp3rt._version import __version__

ENV_INDUCTOR_CACHE = "TORCHINDUCTOR_CACHE_DIR"
MANIFEST_NAME = "cp3rt-compile-cache.json"


def compile_key(torch: Any, device: Any, precision: str) -> str:
    """``nvidia-h200-sm90-torch2.11.0-cuda13.0-fp16``: what compiled code is valid for."""
    props = torch.cuda.get_device_properties(device)
    gpu = re.sub(r"[^a-z0-9]+", "-", props.name.lower()).strip("-")
    return f"{gpu}-sm{props.major}{props.minor}-torch{torch.__version__.split('+')[0]}-cuda{torch.version.cuda}-{precision}"


def use_compile_cache(torch: Any, device: Any, precision: str, root: Path | None = None) -> Path:
    """Point Inductor at cp3rt's cache folder for this key (unless the user chose one); return it."""
    if os.environ.get(ENV_INDUCTOR_CACHE):
        return Path(os.environ[ENV_INDUCTOR_CACHE])
    if root is None:
        from cp3rt.cache import cache_dir

        root = cache_dir()
    key = compile_key(torch, device, precision)
    folder = Path(root) / "torch-compile" / key
    folder.mkdir(parents=True, exist_ok=True)
    manifest = folder / MANIFEST_NAME
    if not manifest.is_file():
        props = torch.cuda.get_device_properties(device)
        atomic_write_bytes(manifest, json.dumps({
            "key": key, "gpu_name": props.name, "compute_capability": f"{props.major}.{props.minor}",
            "torch": torch.__version__, "cuda": torch.version.cuda, "precision": precision,
            "cp3rt_version": __version__,
        }, indent=1).encode())
    # Inductor reads the variable each time it looks for its cache, so this takes effect for the
    # compilations that follow in this process.
    os.environ[ENV_INDUCTOR_CACHE] = os.fspath(folder)
    return folder
