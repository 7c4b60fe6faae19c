"""The Cellpose v3.1.1.2 model zoo as data: names, file names, roles and runtime metadata (§2).

Torch-free on purpose: `cp3rt models`, weight resolution and the runtime need the metadata
without the export stack. Resolution of the files themselves lives in :mod:`cp3rt.zoo.resolve`.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Literal

from cp3rt.defaults import DIAM_MEAN_CYTO, DIAM_MEAN_NUCLEI
from cp3rt.manifest import Role
from cp3rt.errors import ConfigError, ModelNotFoundError

Architecture = Literal["cpnet", "segformer"]
Source = Literal["zoo", "package"]

_ROLES = ("segment", "restore")
_ARCHITECTURES = ("cpnet", "segformer")
_SOURCES = ("zoo", "package")


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """Everything cp3rt knows about one named model before opening its file.

    ``nchan=None`` means "not documented; read it from the weights". ``source="package"`` models
    ship inside a Python package (``package``) under ``resource`` (path inside that package)
    and are never downloaded.
    """

    name: str
    basename: str
    role: Role
    diam_mean: float
    nchan: int | None
    nout: int
    size_model: str | None = None
    architecture: Architecture = "cpnet"
    notes: str = ""
    source: Source = "zoo"
    package: str = "cp3rt"
    resource: str = ""
    sha256: str | None = None  # known-good hash; None -> trust on first download (sidecar)
    size_sha256: str | None = None  # of a packaged size model (checked by the tests)

    def __post_init__(self) -> None:
        if not self.name or not self.basename:
            raise ConfigError(f"ModelInfo.name/basename must be non-empty, got {self.name!r}/{self.basename!r}.")
        if os.sep in self.basename or "/" in self.basename:
            raise ConfigError(f"ModelInfo.basename {self.basename!r} must be a plain file name.")
        if self.role not in _ROLES:
            raise ConfigError(f"ModelInfo.role is {self.role!r}; allowed: {', '.join(_ROLES)}.")
        if self.architecture not in _ARCHITECTURES:
            raise ConfigError(
                f"ModelInfo.architecture is {self.architecture!r}; allowed: {', '.join(_ARCHITECTURES)}."
            )
        if self.source not in _SOURCES:
            raise ConfigError(f"ModelInfo.source is {self.source!r}; allowed: {', '.join(_SOURCES)}.")
        if self.source == "package" and not self.resource:
            raise ConfigError(f"ModelInfo.resource must name the packaged file of {self.name!r}.")
        if not self.diam_mean > 0:
            raise ConfigError(f"ModelInfo.diam_mean is {self.diam_mean!r}; allowed: > 0.")
        if self.nchan is not None and not 1 <= self.nchan <= 3:
            raise ConfigError(f"ModelInfo.nchan is {self.nchan!r}; allowed: 1..3 or None.")
        if self.nout not in (1, 3):
            raise ConfigError(f"ModelInfo.nout is {self.nout!r}; allowed: 1 (restore) or 3 (segment).")
        if self.sha256 is not None and (len(self.sha256) != 64 or not _is_hex(self.sha256)):
            raise ConfigError(f"ModelInfo.sha256 of {self.name!r} must be 64 hex digits.")

    @property
    def supported(self) -> bool:
        """True if cp3rt can run it (CPnet); segformer models are refused with :meth:`check_supported`."""
        return self.architecture == "cpnet"

    @property
    def upsamples(self) -> bool:
        """Restoration models that enlarge the image (the reference tests for 'upsample' in the path, §3.11)."""
        return "upsample" in self.basename

    def check_supported(self) -> None:
        if not self.supported:
            raise ModelNotFoundError(
                f"model {self.name!r} is not a CPnet ({self.notes or self.architecture}); "
                "cp3rt runs only Cellpose v3 CPnet models."
            )


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdefABCDEF" for c in text)


class Registry:
    """An immutable, ordered collection of :class:`ModelInfo` keyed by name.

    The default registry is :data:`ZOO`; tests and packaged-model code build extended copies
    with :meth:`with_models` instead of mutating global state.
    """

    def __init__(self, models: Iterable[ModelInfo]) -> None:
        by_name: dict[str, ModelInfo] = {}
        for info in models:
            if info.name in by_name:
                raise ConfigError(f"model name {info.name!r} is registered twice.")
            by_name[info.name] = info
        self._by_name = by_name

    def __iter__(self) -> Iterator[ModelInfo]:
        return iter(self._by_name.values())

    def __len__(self) -> int:
        return len(self._by_name)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def names(self) -> tuple[str, ...]:
        return tuple(self._by_name)

    def get(self, name: str) -> ModelInfo:
        """The model called ``name``; ModelNotFoundError with close matches otherwise."""
        try:
            return self._by_name[name]
        except KeyError:
            raise ModelNotFoundError(self._unknown_message(name)) from None

    def find_basename(self, basename: str) -> ModelInfo | None:
        for info in self._by_name.values():
            if info.basename == basename:
                return info
        return None

    def close_matches(self, name: str, n: int = 5) -> list[str]:
        lowered = {k.lower(): k for k in self._by_name}
        hits = difflib.get_close_matches(name.lower(), list(lowered), n=n, cutoff=0.6)
        return [lowered[h] for h in hits]

    def with_models(self, *extra: ModelInfo) -> Registry:
        return Registry([*self._by_name.values(), *extra])

    def _unknown_message(self, name: str) -> str:
        close = self.close_matches(name)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        return (
            f"{name!r} is neither a Cellpose v3 model name nor an existing weight file.{hint} "
            "`cp3rt models` lists the names."
        )


# ---- the v3.1.1.2 zoo ---------------------------------------------------------------------

_TORCH0 = ("cyto", "cyto2", "nuclei")  # names whose file is <name>torch_0 (§2.1)
_SIZE_MODELS = {  # §2.4: only these four have a style -> diameter regression file
    "cyto3": "size_cyto3.npy",
    "nuclei": "size_nucleitorch_0.npy",
    "cyto2": "size_cyto2torch_0.npy",
    "cyto": "size_cytotorch_0.npy",
}
_CP2_STYLE = ("CP", "CPx", "TN1", "TN2", "TN3", "LC1", "LC2", "LC3", "LC4")
_CP3_DATASET = (
    "cyto2_cp3", "tissuenet_cp3", "livecell_cp3", "yeast_PhC_cp3", "yeast_BF_cp3",
    "bact_phase_cp3", "bact_fluor_cp3", "deepbacs_cp3",
)
_RESTORE_TYPES = ("denoise", "deblur", "upsample", "oneclick")
_LOSS_TAGS = {"per": "perceptual", "seg": "segmentation", "rec": "reconstruction"}


def zoo_basename(name: str) -> str:
    """File name of a zoo model (§2.1): cyto/cyto2/nuclei -> '<name>torch_0', else the name."""
    return f"{name}torch_0" if name in _TORCH0 else name


def _segment(name: str, *, nchan: int | None = 2, notes: str = "",
             architecture: Architecture = "cpnet") -> ModelInfo:
    return ModelInfo(
        name=name,
        basename=zoo_basename(name),
        role="segment",
        diam_mean=DIAM_MEAN_NUCLEI if name == "nuclei" else DIAM_MEAN_CYTO,
        nchan=nchan,
        nout=3,
        size_model=_SIZE_MODELS.get(name),
        architecture=architecture,
        notes=notes,
    )


def _restore(name: str, notes: str) -> ModelInfo:
    return ModelInfo(
        name=name,
        basename=name,
        role="restore",
        diam_mean=DIAM_MEAN_NUCLEI if "nuclei" in name else DIAM_MEAN_CYTO,  # §2.3
        nchan=1,
        nout=1,
        notes=notes,
    )


def _segmentation_models() -> list[ModelInfo]:
    models = [
        _segment("cyto3", notes="default model"),
        _segment("nuclei", notes="2nd channel zeros"),
        _segment("cyto2"),
        _segment("cyto"),
    ]
    models += [_segment(n, notes="dataset-specific (Cellpose 3)") for n in _CP3_DATASET]
    models += [_segment(n, notes="Cellpose 2 style model") for n in _CP2_STYLE]
    models += [
        _segment("neurips_cellpose_default", nchan=3, notes="3-channel input"),
        _segment("neurips_grayscale_cyto2", nchan=None, notes="channels read from the weights"),
    ]
    segformer = "not CPnet: segformer/MAnet transformer"
    models += [
        _segment("transformer_cp3", nchan=3, notes=segformer, architecture="segformer"),
        _segment("neurips_cellpose_transformer", nchan=3, notes=segformer, architecture="segformer"),
    ]
    return models


def _restoration_models() -> list[ModelInfo]:
    # Same order as the reference's denoise.MODEL_NAMES (§2.3).
    models = []
    for ctype in ("cyto3", "cyto2", "nuclei"):
        for ntype in _RESTORE_TYPES:
            models.append(_restore(f"{ntype}_{ctype}", "perceptual + segmentation loss"))
            if ctype != "cyto3":
                for tag, loss in _LOSS_TAGS.items():
                    models.append(_restore(f"{ntype}_{tag}_{ctype}", f"ablation: {loss} loss only"))
        if ctype != "cyto3":
            models.append(_restore(f"aniso_{ctype}", "anisotropic deblur/upsample along Y"))
    return models


CP3RT_NUCLEI_SIZE_SHA256 = "2f8fc8effe6d558670a5fa1da414b64f9897e8159cbd32928cbe16133cb3f937"


def _packaged_models() -> list[ModelInfo]:
    """cp3rt's own starter models: exported ONNX artefacts shipped in the wheel (no download)."""
    card = "cp3rt starter model, see assets/models/MODEL_CARD.md"
    return [
        ModelInfo(
            name="cp3rt_nuclei", basename="cp3rt_nuclei.onnx", role="segment",
            diam_mean=DIAM_MEAN_NUCLEI, nchan=2, nout=3, notes=card, source="package",
            resource="assets/models/cp3rt_nuclei.onnx", size_model="cp3rt_nuclei_size.npy",
            size_sha256=CP3RT_NUCLEI_SIZE_SHA256,  # benchmarks/train_size.py
        ),
        ModelInfo(
            name="cp3rt_denoise_nuclei", basename="cp3rt_denoise_nuclei.onnx", role="restore",
            diam_mean=DIAM_MEAN_NUCLEI, nchan=1, nout=1, notes=card, source="package",
            resource="assets/models/cp3rt_denoise_nuclei.onnx",
        ),
    ]


ZOO = Registry([*_segmentation_models(), *_restoration_models(), *_packaged_models()])


def runtime_diameters(
    name_or_path: str | os.PathLike[str],
    file_diam_mean: float | None,
    file_diam_labels: float | None,
    *,
    role: Role = "segment",
    registry: Registry = ZOO,
) -> tuple[float, float]:
    """(diam_mean, diam_labels) the runtime uses for a model, following the reference (§1.5, §2.3).

    * a zoo name: diam_mean by name (the file's value is ignored), diam_labels from the file;
    * a segmentation file path: both from the file; a file named ``nucleitorch_0`` counts as
      the built-in nuclei model (diam_mean 17), as in the reference;
    * a restoration file path: 30, whatever the file says (the reference's DenoiseModel never
      reads diam_mean from a file);
    * a missing key falls back to the name-based value (the zoo model with that file name,
      else 30). The reference falls back to 30 on CPU even for nuclei; cp3rt deliberately uses
      the name-based value (spec §1.5 recommendation).
    """
    text = os.fspath(name_or_path)
    if text in registry:
        info = registry.get(text)
        return info.diam_mean, _or(file_diam_labels, info.diam_mean)
    if role == "restore":
        return DIAM_MEAN_CYTO, _or(file_diam_labels, DIAM_MEAN_CYTO)
    if Path(text).name == zoo_basename("nuclei"):
        return DIAM_MEAN_NUCLEI, _or(file_diam_labels, DIAM_MEAN_NUCLEI)
    by_file = registry.find_basename(Path(text).name)
    fallback = by_file.diam_mean if by_file is not None else DIAM_MEAN_CYTO
    diam_mean = _or(file_diam_mean, fallback)
    return diam_mean, _or(file_diam_labels, diam_mean)


def _or(value: float | None, default: float) -> float:
    return float(default) if value is None else float(value)
