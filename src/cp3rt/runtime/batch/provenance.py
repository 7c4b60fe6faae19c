"""What a run ran on, for its run record (``batch.run_record``): the opened nets with the sha256
of their engine and weight files, package versions and the host. Hashes of a file are computed
once per process (keyed by path, size and modification time)."""

from __future__ import annotations

import dataclasses
import os
import platform
import socket
import threading
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cp3rt._version import __version__
from cp3rt.manifest import sha256_file

if TYPE_CHECKING:  # pragma: no cover
    from cp3rt.runtime.config import PipelineConfig
    from cp3rt.runtime.nets import Net
    from cp3rt.runtime.pipeline import Pipeline

# Distributions whose versions decide results or speed; absent ones are recorded as None.
PACKAGES = ("cp3rt", "numpy", "numba", "llvmlite", "scipy", "onnxruntime", "onnxruntime-gpu",
            "tifffile", "tensorrt", "tensorrt-cu12", "tensorrt-cu13", "torch", "numba-cuda",
            "opencv-python-headless", "zarr", "dask")


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """One opened net: what was asked for, the files it came from and their sha256."""

    role: str  # segment | restore | restore_chan2
    spec: str  # as given: zoo name, weight file or artefact
    source_model: str = ""  # the manifest's source (zoo name or weight-file name)
    engine_backend: str | None = None  # as opened: ort-cpu, ort-cuda, trt, torch, torch-cuda
    artefact: str | None = None  # the file the engine opened (.onnx, .plan; weights for torch)
    artefact_sha256: str | None = None
    weights: str | None = None
    weights_sha256: str | None = None
    precision: str | None = None  # the artefact's (manifest), when it has one



# ---- the nets ----------------------------------------------------------------------
_HASHES: dict[tuple[str, int, int], str] = {}
_HASH_LOCK = threading.Lock()


def file_sha256(path: str | os.PathLike[str] | None) -> str | None:
    """sha256 of a file (cached per path, size and mtime); None for no path or not a file."""
    if path is None or not Path(path).is_file():
        return None
    st = os.stat(path)
    key = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
    with _HASH_LOCK:
        if key not in _HASHES:
            _HASHES[key] = sha256_file(path)
        return _HASHES[key]


def describe_net(net: Net, role: str | None = None) -> ModelInfo:
    """A :class:`ModelInfo` of an opened net (its engine's file and the weights, hashed)."""
    engine = net.engine
    artefact = getattr(engine, "path", None)
    manifest = getattr(engine, "manifest", None)
    return ModelInfo(
        role=role or net.role, spec=os.fspath(net.spec), source_model=net.source_model,
        engine_backend=getattr(engine, "backend", None),
        artefact=os.fspath(artefact) if artefact is not None else None, artefact_sha256=file_sha256(artefact),
        weights=os.fspath(net.weights) if net.weights is not None else None,
        weights_sha256=file_sha256(net.weights),
        precision=getattr(manifest, "precision", None),
    )


def describe_nets(pipeline: Pipeline) -> tuple[ModelInfo, ...]:
    """Every net a Pipeline opened, segment first."""
    pairs = (("segment", pipeline.segment_net), ("restore", pipeline.restore_net),
             ("restore_chan2", pipeline.restore_chan2_net))
    return tuple(describe_net(net, role) for role, net in pairs if net is not None)


def describe_config(config: PipelineConfig) -> tuple[ModelInfo, ...]:
    """The models of ``config`` as resolved here without opening an engine (when other processes
    open them, e.g. cluster workers): ``engine_backend`` is None; a model that cannot be
    resolved without a download keeps only its spec."""
    from cp3rt.artefacts import resolve_model
    from cp3rt.errors import Cp3rtError

    out = []
    for role, spec in (("segment", config.segment), ("restore", config.restore),
                       ("restore_chan2", config.restore_chan2)):
        if spec is None:
            continue
        try:
            src = resolve_model(spec, precision=config.precision, backend=config.backend,
                                cache_root=config.cache_dir, download=False)
        except (Cp3rtError, OSError):
            out.append(ModelInfo(role=role, spec=os.fspath(spec)))
            continue
        out.append(ModelInfo(
            role=role, spec=os.fspath(spec), source_model=src.manifest.source_model if src.manifest else "",
            artefact=os.fspath(src.path), artefact_sha256=file_sha256(src.path),
            weights=os.fspath(src.weights) if src.weights is not None else None,
            weights_sha256=file_sha256(src.weights),
            precision=src.manifest.precision if src.manifest else None))
    return tuple(out)


def package_versions(names: Sequence[str] = PACKAGES) -> dict[str, str | None]:
    """Installed version of each distribution (read from its metadata; nothing is imported)."""
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    out["cp3rt"] = out.get("cp3rt") or __version__
    out["python"] = platform.python_version()
    return out


def host_info() -> dict[str, Any]:
    return {"hostname": socket.gethostname(), "platform": platform.platform(), "machine": platform.machine(),
            "cpu_count": os.cpu_count(), "pid": os.getpid()}
