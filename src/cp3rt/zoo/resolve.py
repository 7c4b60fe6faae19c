"""Turn a model name or path into a local file, downloading into cp3rt's cache if needed.

Order (first hit wins): an existing path; a file shipped inside a package (cp3rt's own
models); ``$CELLPOSE_LOCAL_MODELS_PATH``; ``~/.cellpose/models``; cp3rt's cache; download.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import os
from pathlib import Path, PurePosixPath

from cp3rt._fs import atomic_write_bytes
from cp3rt.defaults import MIN_SIZE_MODEL_BYTES, MIN_WEIGHT_FILE_BYTES
from cp3rt.errors import ModelNotFoundError, WeightFileError
from cp3rt.zoo.download import ProgressFn, download_file, zoo_url
from cp3rt.zoo.locations import Location, find_file, models_cache_dir, search_dirs
from cp3rt.zoo.registry import ZOO, ModelInfo, Registry

SIDECAR_SUFFIX = ".sha256"  # `sha256sum -c` format, written next to each downloaded file


def resolve_weights(
    name_or_path: str | os.PathLike[str],
    *,
    download: bool = True,
    progress: ProgressFn | None = None,
    registry: Registry = ZOO,
) -> Path:
    """Local path of the weight file for a zoo name or an existing file path."""
    path = _existing_path(name_or_path)
    if path is not None:
        return path
    info = _lookup(name_or_path, registry)
    info.check_supported()
    if info.source == "package":
        return _packaged(info)
    return _resolve_basename(
        info.basename,
        what=f"model {info.name!r}",
        min_bytes=MIN_WEIGHT_FILE_BYTES,
        sha256=info.sha256,
        download=download,
        progress=progress,
    )


def resolve_size_model(
    name_or_path: str | os.PathLike[str],
    *,
    download: bool = True,
    progress: ProgressFn | None = None,
    registry: Registry = ZOO,
) -> Path:
    """Local path of the style->diameter size model (§2.4) of a zoo name or a weight file.

    A weight file ``P`` uses ``P_size.npy`` beside it, as in the reference.
    """
    path = _existing_path(name_or_path)
    if path is not None:
        size = path.with_name(path.name + "_size.npy")
        if not size.is_file():
            raise ModelNotFoundError(
                f"weight file {path} has no size model {size.name} beside it; give the diameter."
            )
        return size
    info = _lookup(name_or_path, registry)
    if info.size_model is None:
        raise ModelNotFoundError(
            f"model {info.name!r} has no size model (only cyto3, nuclei, cyto2, cyto and cp3rt_nuclei "
            "do); give the diameter."
        )
    if info.source == "package":  # shipped beside the packaged model
        beside = str(PurePosixPath(info.resource).with_name(info.size_model))
        return _packaged(dataclasses.replace(info, basename=info.size_model, resource=beside))
    return _resolve_basename(
        info.size_model,
        what=f"size model of {info.name!r}",
        min_bytes=MIN_SIZE_MODEL_BYTES,
        sha256=None,
        download=download,
        progress=progress,
    )


def locate(info: ModelInfo) -> Location | None:
    """Where the weights of ``info`` are present locally without downloading, or None."""
    if info.source == "package":
        try:
            return Location("package", _packaged(info))
        except ModelNotFoundError:
            return None
    return find_file(info.basename)


def inventory(role: str | None = None, registry: Registry = ZOO) -> list[tuple[ModelInfo, Location | None]]:
    """Every model (of ``role`` if given) with where its weights are present locally."""
    return [(info, locate(info)) for info in registry if role in (None, info.role)]


def _existing_path(name_or_path: str | os.PathLike[str]) -> Path | None:
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path.resolve()
    return None


def _lookup(name_or_path: str | os.PathLike[str], registry: Registry) -> ModelInfo:
    text = os.fspath(name_or_path)
    if text in registry:
        return registry.get(text)
    if os.sep in text or "/" in text or Path(text).suffix:
        raise ModelNotFoundError(f"weight file {text} does not exist.")
    return registry.get(text)  # raises with close matches


def _packaged(info: ModelInfo) -> Path:
    try:
        resource = importlib.resources.files(info.package).joinpath(info.resource)
    except ModuleNotFoundError as exc:
        raise ModelNotFoundError(f"model {info.name!r}: package {info.package!r} is not installed.") from exc
    if not resource.is_file():
        raise ModelNotFoundError(
            f"model {info.name!r} should ship inside {info.package} as {info.resource}, but the "
            "file is missing; reinstall cp3rt."
        )
    if isinstance(resource, Path):
        return resource
    # Zipped install: copy the file out once into the cache so it has a real path.
    target = models_cache_dir() / info.basename
    if not target.is_file():
        atomic_write_bytes(target, resource.read_bytes())
    return target


def _resolve_basename(
    basename: str,
    *,
    what: str,
    min_bytes: int,
    sha256: str | None,
    download: bool,
    progress: ProgressFn | None,
) -> Path:
    found = find_file(basename)
    if found is not None:
        _check_cached_size(found.path, min_bytes, what)
        return found.path
    target = models_cache_dir() / basename
    if not download:
        looked = ", ".join(str(folder) for _, folder in search_dirs())
        raise ModelNotFoundError(
            f"{what} ({basename}) is not downloaded (looked in {looked}) and downloading is off."
        )
    from filelock import FileLock  # only needed when downloading

    target.parent.mkdir(parents=True, exist_ok=True)
    # The lock makes concurrent processes wait for one download instead of racing.
    with FileLock(str(target) + ".lock"):
        if target.is_file():
            return target
        url = zoo_url(basename)
        digest = download_file(url, target, min_bytes=min_bytes, sha256=sha256, progress=progress)
        if sha256 is None:  # no known hash: record what was fetched (trust on first use)
            atomic_write_bytes(target.with_name(basename + SIDECAR_SUFFIX), f"{digest}  {basename}\n".encode())
    return target


# What torch.save writes: a zip archive (torch >= 1.6, Cellpose v3's files) or, in the legacy
# format, a pickle (protocol 2 and up: 0x80 then the protocol number).
_TORCH_FILE_STARTS = (b"PK\x03\x04",) + tuple(bytes([0x80, p]) for p in range(2, 6))


def check_torch_file(path: str | os.PathLike[str]) -> None:
    """Refuse, without torch, a file that cannot have been written by ``torch.save``: saying
    "not a weight file" beats asking the user to install torch to find that out."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError as exc:
        raise WeightFileError(f"{path}: cannot read the weight file ({exc.strerror or exc}).") from exc
    if not head.startswith(_TORCH_FILE_STARTS):
        seen = f"it starts with bytes {head.hex(' ')}" if head else "it is empty"
        raise WeightFileError(
            f"{path}: not a Cellpose weight file (torch.save writes a zip archive or a pickle; {seen})."
        )


def _check_cached_size(path: Path, min_bytes: int, what: str) -> None:
    size = path.stat().st_size
    if size < min_bytes:
        raise WeightFileError(
            f"{path} ({what}) is only {size} bytes, too small to be a model file; delete it so "
            "it can be downloaded again."
        )
