"""Model spec -> the file an engine opens.

A spec is a zoo name (``cyto3``), a weight-file path, or an exported ``.onnx`` artefact:

* an existing ``.onnx`` path is used as it is;
* a zoo name or weight path is exported once into cp3rt's cache, keyed by the sha256 of the
  weights and the precision (``<cache>/onnx/<sha256[:20]>-<precision>/``), under a file lock and
  with an atomic rename of the finished folder, so concurrent runs export once and a killed
  export leaves nothing that looks finished;
* the torch backend runs the weights themselves, so no export happens for it.

The export code needs torch; it is imported only when an export is really needed, so the
runtime stays torch-free when the artefact is already cached or given.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from cp3rt.manifest import EngineManifest, manifest_path_for, sha256_file
from cp3rt.errors import (
    BackendUnavailableError,
    ConfigError,
    IncompatibleEngineError,
    InternalError,
    ModelNotFoundError,
)

ONNX_SUFFIX = ".onnx"
PLAN_SUFFIXES = (".plan", ".engine")  # built TensorRT engines, also used as they are
WEIGHT_BACKENDS = ("torch", "torch-cuda")  # run the weight file itself: nothing to export
_SUBDIR = "onnx"
_KEY_CHARS = 20  # of the weights' sha256: collisions are not a practical concern at 80 bits


@dataclasses.dataclass(frozen=True)
class ModelSource:
    """What an engine opens for one model spec.

    ``path`` is the ``.onnx`` artefact, or the weight file for the torch backend. ``weights`` is
    the weight file when known (None for a given .onnx). ``manifest`` describes the artefact
    (None for the torch backend, which reads the weights directly).
    """

    spec: str
    path: Path
    weights: Path | None
    manifest: EngineManifest | None
    exported: bool = False  # True if this call ran the export


def is_onnx_artefact(spec: str | os.PathLike[str]) -> bool:
    return Path(spec).suffix.lower() == ONNX_SUFFIX


def is_built_artefact(spec: str | os.PathLike[str]) -> bool:
    """An exported .onnx or a built TensorRT plan: opened as it is."""
    return is_onnx_artefact(spec) or Path(spec).suffix.lower() in PLAN_SUFFIXES


def artefact_dir(
    weights_sha256: str, precision: str, zoo_name: str | None = None, cache_root: Path | None = None
) -> Path:
    """Cache folder of the artefact exported from weights with this hash at this precision.

    A zoo name is part of the key because it changes the manifest: built-in models get their
    name-based diam_mean, the same file given by path keeps the file's value (§1.5).
    """
    if cache_root is None:
        from cp3rt.cache import cache_dir

        cache_root = cache_dir()
    kind = zoo_name if zoo_name is not None else "file"
    return Path(cache_root) / _SUBDIR / f"{weights_sha256[:_KEY_CHARS]}-{precision}-{kind}"


def resolve_model(
    spec: str | os.PathLike[str],
    *,
    precision: str = "fp32",
    backend: str = "auto",
    cache_root: Path | None = None,
    download: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> ModelSource:
    """Find (and if needed export) what the engine for ``spec`` opens. See the module docstring."""
    text = os.fspath(spec)
    if is_built_artefact(text):
        return _checked_precision(_given_artefact(text, backend), precision)
    if precision == "int8":
        raise ConfigError(
            f"precision int8 needs a calibrated graph, which cp3rt does not make on the fly: run "
            f"`cp3rt export {text} --precision int8 --calibrate DIR --out engines/` on a handful "
            f"of your images, then pass the engines/<name>.int8.onnx it writes as the model."
        )
    from cp3rt.zoo import resolve_weights

    weights = Path(resolve_weights(text, download=download, progress=progress))
    if is_built_artefact(weights):
        # A name can stand for a shipped artefact (cp3rt's packaged starter models).
        return _given_artefact(os.fspath(weights), backend)
    if backend in WEIGHT_BACKENDS:
        # The torch engines take the spec itself: a zoo name keeps its name-based diam_mean.
        return ModelSource(text, Path(text), weights, None)
    return _cached_or_exported(text, weights, precision=precision, cache_root=cache_root)


def _given_artefact(text: str, backend: str) -> ModelSource:
    path = Path(text).expanduser()
    if backend in WEIGHT_BACKENDS:
        raise ConfigError(
            f"backend={backend!r} runs weight files, but {path} is an exported artefact; "
            "pass the weight file or choose backend 'auto'."
        )
    if not path.is_file():
        raise ModelNotFoundError(f"{path}: model artefact not found.")
    mpath = manifest_path_for(path)
    if not mpath.is_file():
        raise IncompatibleEngineError(
            f"{path}: its manifest {mpath.name} is missing next to it; re-export with "
            f"`cp3rt export <model> --out {path.parent}`."
        )
    return ModelSource(text, path, None, EngineManifest.read(mpath))


def _checked_precision(source: ModelSource, precision: str) -> ModelSource:
    """A given artefact carries its precision; asking for int8 and getting another is refused."""
    have = source.manifest.precision if source.manifest is not None else None
    if precision == "int8" and have != "int8":
        raise ConfigError(
            f"precision int8 was asked for, but {source.path.name} is a {have} graph; pass the "
            "<name>.int8.onnx that `cp3rt export MODEL --precision int8 --calibrate DIR` writes."
        )
    return source


def _find_in(folder: Path) -> ModelSource | None:
    """The finished artefact in a cache folder, or None if the folder is absent/incomplete."""
    if not folder.is_dir():
        return None
    onnx = sorted(p for p in folder.glob(f"*{ONNX_SUFFIX}") if not p.name.startswith("."))
    if len(onnx) != 1 or not manifest_path_for(onnx[0]).is_file():
        return None
    return ModelSource("", onnx[0], None, EngineManifest.read(manifest_path_for(onnx[0])))


def _cached_or_exported(
    text: str, weights: Path, *, precision: str, cache_root: Path | None
) -> ModelSource:
    from cp3rt.zoo import ZOO

    zoo_name = text if text in ZOO else None
    final = artefact_dir(sha256_file(weights), precision, zoo_name, cache_root)
    found = _find_in(final)
    if found is not None:
        return dataclasses.replace(found, spec=text, weights=weights)
    export_onnx = _export_function(text, precision, final, weights)
    import filelock

    final.parent.mkdir(parents=True, exist_ok=True)
    with filelock.FileLock(str(final) + ".lock"):
        found = _find_in(final)  # another process may have finished while we waited
        if found is not None:
            return dataclasses.replace(found, spec=text, weights=weights)
        if final.exists():  # an incomplete folder: not ours to keep (we hold the lock)
            shutil.rmtree(final)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".part", dir=final.parent))
        try:
            export_onnx(
                weights, tmp, precision=precision,
                source_model=zoo_name or weights.name,
                diam_mean=ZOO.get(zoo_name).diam_mean if zoo_name else None,
            )
            os.replace(tmp, final)
        except BaseException:
            with contextlib.suppress(OSError):
                shutil.rmtree(tmp)
            raise
    found = _find_in(final)
    if found is None:  # the exporter returned without writing what it promises: cp3rt's bug
        raise InternalError(
            f"export of {text!r} finished but {final} holds no single .onnx with its manifest."
        )
    return dataclasses.replace(found, spec=text, weights=weights, exported=True)


def cached_artefact(
    spec: str | os.PathLike[str], *, precision: str = "fp32", cache_root: Path | None = None
) -> ModelSource | None:
    """What :func:`resolve_model` would open for ``spec`` when it is here already, without a
    download or an export: a given artefact as it is, a weight file's export from the cache, or
    None when the next ``resolve_model`` exports it (``cp3rt run`` says so first). A zoo file not
    downloaded yet raises as ``resolve_weights(download=False)`` does."""
    text = os.fspath(spec)
    if is_built_artefact(text):
        return _given_artefact(text, "auto")
    from cp3rt.zoo import ZOO, resolve_weights

    weights = Path(resolve_weights(text, download=False))
    if is_built_artefact(weights):
        return _given_artefact(os.fspath(weights), "auto")
    found = _find_in(artefact_dir(sha256_file(weights), precision, text if text in ZOO else None, cache_root))
    return dataclasses.replace(found, spec=text, weights=weights) if found is not None else None


def _export_function(text: str, precision: str, final: Path, weights: Path) -> Callable[..., object]:
    """The torch-side exporter, or a clear error saying how to get an artefact without torch.
    A file that cannot be a weight file is refused first, by its content: no torch is needed."""
    from cp3rt.zoo.resolve import check_torch_file

    check_torch_file(weights)
    try:
        from cp3rt._lazy import require

        require("torch", "exporting a Cellpose weight file to ONNX")
        module = require("cp3rt.export", "exporting a Cellpose weight file to ONNX")
        return module.export_onnx
    except (BackendUnavailableError, AttributeError) as exc:
        raise BackendUnavailableError(
            f"no exported ONNX artefact for {text!r} ({precision}) in {final}, and exporting one "
            f"needs torch, which cannot be imported here; run `cp3rt export {text} --precision "
            f"{precision} --out DIR` where `pip install 'cp3rt[export]'` is installed, then pass "
            "the .onnx file it writes as the model."
        ) from exc
