"""EngineManifest: the JSON sidecar written next to every exported/built artefact (ground floor).

It says what the artefact is (role, source weights, shapes, precision) and what it was built
for (TensorRT version, GPU), so that a stale or foreign artefact is refused before use with the
exact command that rebuilds it.

Ground floor (imports only errors, _fs and _version): the export writes manifests, the engines
and the artefact cache read them and the zoo names their roles, so it sits below all of them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Literal

from cp3rt._fs import atomic_write_bytes
from cp3rt._version import __version__
from cp3rt.errors import IncompatibleEngineError

SCHEMA_VERSION = 1
MANIFEST_SUFFIX = ".json"

Role = Literal["segment", "restore"]
Precision = Literal["fp32", "fp16", "int8"]


@dataclasses.dataclass(frozen=True)
class CalibrationFile:
    """One image the int8 graph was calibrated or checked on: its file name and sha256."""

    name: str
    sha256: str


@dataclasses.dataclass(frozen=True)
class MaskAgreement:
    """The int8 pipeline's masks against the fp32 pipeline's on some images: AP at IoU 0.5 and
    0.75 from the true/false positives and misses summed over the images (fp32 masks = truth)."""

    images: int
    ap50: float
    ap75: float
    objects_fp32: int
    objects_int8: int


@dataclasses.dataclass(frozen=True)
class Calibration:
    """How an int8 graph was made and how well its masks keep the fp32 ones (int8 manifests only).

    ``method``: minmax | entropy | percentile; ``activations``: u8 (asymmetric) or s8 (symmetric,
    zero point 0); weights are always symmetric int8 per output channel, QDQ format.
    ``segment_with`` / ``restore_with``: the fp32 net the masks were made with behind / in front
    of the calibrated one. ``accuracy`` is on the calibration images, ``holdout_accuracy`` on
    the --holdout images (None without them); ``min_ap50`` / ``min_ap75`` the bar both passed.
    """

    method: str
    activations: str
    files: tuple[CalibrationFile, ...]
    tiles: int
    accuracy: MaskAgreement
    min_ap50: float
    min_ap75: float
    holdout: tuple[CalibrationFile, ...] = ()
    holdout_accuracy: MaskAgreement | None = None
    diameter: float | None = None
    segment_with: str | None = None
    restore_with: str | None = None
    fp32_sha256: str = ""        # the fp32 graph that was quantized
    onnxruntime_version: str = ""
    keep_fp32: tuple[str, ...] = ()  # op types left in fp32 (not quantized) ...
    keep_scope: tuple[str, ...] = ()  # ... in the nodes whose names contain one of these (all: empty)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibration:
        data = dict(data)
        for key in ("files", "holdout"):
            data[key] = tuple(CalibrationFile(**f) for f in data.get(key) or ())
        data["keep_fp32"] = tuple(data.get("keep_fp32") or ())
        data["keep_scope"] = tuple(data.get("keep_scope") or ())
        data["accuracy"] = MaskAgreement(**data["accuracy"])
        if data.get("holdout_accuracy") is not None:
            data["holdout_accuracy"] = MaskAgreement(**data["holdout_accuracy"])
        return cls(**data)


@dataclasses.dataclass(frozen=True)
class ShapeRange:
    """Inclusive bounds of the dynamic input dims (batch, height, width) and the optimum."""

    min_batch: int = 1
    opt_batch: int = 8
    max_batch: int = 64
    min_hw: tuple[int, int] = (32, 32)
    opt_hw: tuple[int, int] = (224, 224)
    max_hw: tuple[int, int] = (224, 224)

    def contains(self, batch: int, height: int, width: int) -> bool:
        return (
            self.min_batch <= batch <= self.max_batch
            and self.min_hw[0] <= height <= self.max_hw[0]
            and self.min_hw[1] <= width <= self.max_hw[1]
        )


@dataclasses.dataclass(frozen=True)
class EngineManifest:
    """Frozen description of one artefact (ONNX file or TensorRT plan)."""

    role: Role
    source_model: str            # zoo name or file name of the weights
    source_sha256: str           # sha256 of the weight file
    nchan: int
    nout: int
    diam_mean: float
    diam_labels: float
    precision: Precision
    opset: int
    shapes: ShapeRange = ShapeRange()
    artefact_sha256: str = ""    # sha256 of the .onnx / .plan this manifest describes
    onnx_sha256: str = ""        # for plans: the ONNX they were built from
    onnx_path: str = ""          # for plans: where that ONNX was (the rebuild command names it)
    tensorrt_version: str | None = None
    gpu_name: str | None = None
    compute_capability: str | None = None  # "9.0"
    calibration: Calibration | None = None  # int8 graphs: calibration data, method, mask accuracy
    cp3rt_version: str = __version__
    schema_version: int = SCHEMA_VERSION

    # ---- (de)serialisation -------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        if data["calibration"] is None:  # fp32/fp16 manifests stay what older cp3rt versions read
            del data["calibration"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EngineManifest:
        if data.get("schema_version") != SCHEMA_VERSION:
            raise IncompatibleEngineError(
                f"manifest schema version {data.get('schema_version')!r} is not "
                f"{SCHEMA_VERSION}; re-export the model with this cp3rt."
            )
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - fields
        if unknown:
            raise IncompatibleEngineError(f"manifest has unknown fields {sorted(unknown)}.")
        data = dict(data)
        shapes = data.pop("shapes", None) or {}
        shapes = ShapeRange(
            **{k: tuple(v) if isinstance(v, list) else v for k, v in shapes.items()}
        )
        calibration = data.pop("calibration", None)
        try:
            calibration = Calibration.from_dict(calibration) if calibration is not None else None
        except (TypeError, KeyError) as exc:
            raise IncompatibleEngineError(f"manifest has an unreadable calibration record ({exc}).") from exc
        return cls(shapes=shapes, calibration=calibration, **data)

    def write(self, path: str | os.PathLike[str]) -> Path:
        path = Path(path)
        atomic_write_bytes(path, (json.dumps(self.to_dict(), indent=2) + "\n").encode())
        return path

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> EngineManifest:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise IncompatibleEngineError(f"{path}: cannot read manifest ({exc}).") from exc
        if not isinstance(data, dict):
            raise IncompatibleEngineError(f"{path}: manifest is not a JSON object.")
        return cls.from_dict(data)

    # ---- identity and compatibility -----------------------------------------------------
    def cache_key(self) -> str:
        """Short stable key of everything that makes an artefact reusable (not its own hash)."""
        ident = {
            "role": self.role,
            "source_sha256": self.source_sha256,
            "precision": self.precision,
            "opset": self.opset,
            "shapes": dataclasses.asdict(self.shapes),
            "onnx_sha256": self.onnx_sha256,
            "tensorrt_version": self.tensorrt_version,
            "compute_capability": self.compute_capability,
            "schema_version": self.schema_version,
        }
        if self.gpu_name is not None:
            # TensorRT plans: TensorRT loads a plan built on another GPU model of the same compute
            # capability (with a warning), tuned for the wrong chip; the model is part of the key.
            # Artefacts without a GPU (ONNX) keep the key they always had.
            ident["gpu_name"] = self.gpu_name
        blob = json.dumps(ident, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def check_compatible(
        self,
        *,
        rebuild_command: str,
        tensorrt_version: str | None = None,
        compute_capability: str | None = None,
    ) -> None:
        """Raise IncompatibleEngineError (with ``rebuild_command``) if built for something else."""
        problems = []
        if self.schema_version != SCHEMA_VERSION:
            problems.append(f"schema {self.schema_version} != {SCHEMA_VERSION}")
        if tensorrt_version is not None and self.tensorrt_version not in (None, tensorrt_version):
            problems.append(f"TensorRT {self.tensorrt_version} != installed {tensorrt_version}")
        if compute_capability is not None and self.compute_capability not in (
            None,
            compute_capability,
        ):
            problems.append(
                f"GPU compute capability {self.compute_capability} != this GPU's "
                f"{compute_capability}"
            )
        if problems:
            raise IncompatibleEngineError(
                f"engine for {self.source_model} was built for another setup "
                f"({'; '.join(problems)}); rebuild with: {rebuild_command}"
            )


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks (weight files are ~26 MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def manifest_path_for(artefact: str | os.PathLike[str]) -> Path:
    """``model.onnx`` -> ``model.onnx.json``."""
    artefact = Path(artefact)
    return artefact.with_name(artefact.name + MANIFEST_SUFFIX)
