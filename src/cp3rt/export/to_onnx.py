"""Export a Cellpose v3 weight file to a single-file ONNX graph plus its JSON manifest (§1.8).

The artefact has one input ``image`` (B, nchan, H, W) float32 with symbolic B, H, W, and the
outputs ``flows`` (B, 3, H, W) + ``style`` (B, 256) for segmentation nets or ``restored``
(B, 1, H, W) for restoration nets. ``precision="fp16"`` carries fp16 weights and compute in the
graph itself (see :mod:`cp3rt.export.fp16`); inputs and outputs stay float32 either way.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
from pathlib import Path

import onnx

from cp3rt._fs import atomic_write_bytes
from cp3rt._version import __version__
from cp3rt.defaults import (
    EXPORT_PRECISION,
    MAX_TILE_SIZE,
    ONNX_OPSET,
    ONNX_OPSET_RANGE,
)
from cp3rt.errors import ConfigError, ExportError, OutputError
from cp3rt.export._trace import role_for, trace_to_onnx
from cp3rt.export._verify import verify_against_torch
from cp3rt.manifest import EngineManifest, ShapeRange, manifest_path_for
from cp3rt.models.cpnet import CPnet
from cp3rt.models.fold import fold_batchnorm
from cp3rt.models.weights import WeightFile, load_cpnet, read_weight_file
from cp3rt.zoo.registry import runtime_diameters

PRECISIONS = ("fp32", "fp16")


@dataclasses.dataclass(frozen=True)
class ExportResult:
    """Where the artefact went and how far it is from the torch net (empty if not verified)."""

    onnx_path: Path
    manifest_path: Path
    manifest: EngineManifest
    max_abs_error: dict[str, float]


def export_onnx(
    weights: WeightFile | str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    precision: str = EXPORT_PRECISION,
    opset: int = ONNX_OPSET,
    name: str | None = None,
    source_model: str | None = None,
    diam_mean: float | None = None,
    diam_labels: float | None = None,
    verify: bool = True,
    fold_bn: bool = True,
) -> ExportResult:
    """Export ``weights`` to ``out_dir/<name>.onnx`` and its manifest ``<name>.onnx.json``.

    Diameters: an explicit argument wins (callers pass the zoo's name-based value for built-in
    models, whose stored diam_mean the reference ignores), then the file's value, then the
    name-based default of ``source_model`` for both (§1.5). With ``verify`` the graph is run on
    onnxruntime CPU against the torch net before anything is written; ExportError above
    ``VERIFY_TOLERANCE`` (see ``cp3rt.export._verify``). ``fold_bn`` exports the net with its
    BatchNorms folded into convolutions and style layers (:mod:`cp3rt.models.fold`): the same
    function with fewer passes over the activations, for every runtime that reads the graph.
    """
    _check_options(precision, opset, name)
    wf = weights if isinstance(weights, WeightFile) else read_weight_file(weights)
    source = source_model or wf.path.name
    role = role_for(wf.nout)
    d_mean, d_labels = _diameters(wf, source_model, role, diam_mean, diam_labels)
    net = load_cpnet(wf)
    data = _graph_bytes(net, role, precision, opset, source, wf.sha256, fold_bn)
    errors = verify_against_torch(data, net, role, precision) if verify else {}
    manifest = EngineManifest(
        role=role,  # type: ignore[arg-type]
        source_model=source,
        source_sha256=wf.sha256,
        nchan=wf.nchan,
        nout=wf.nout,
        diam_mean=d_mean,
        diam_labels=d_labels,
        precision=precision,  # type: ignore[arg-type]
        opset=opset,
        # H/W are dynamic axes: any tile side up to MAX_TILE_SIZE (--tile-size), 224 the optimum.
        shapes=ShapeRange(max_hw=(MAX_TILE_SIZE, MAX_TILE_SIZE)),
        artefact_sha256=hashlib.sha256(data).hexdigest(),
    )
    onnx_path, manifest_path = _write(Path(out_dir) / _file_name(name, source, precision), data, manifest)
    return ExportResult(onnx_path, manifest_path, manifest, errors)


def _diameters(wf: WeightFile, source_model: str | None, role: str, diam_mean: float | None,
               diam_labels: float | None) -> tuple[float, float]:
    """(diam_mean, diam_labels) of the manifest: an explicit argument, else the zoo's rule."""
    # The zoo owns the §1.5 rules (name-based diam_mean for built-ins, file values for paths).
    zoo_mean, zoo_labels = runtime_diameters(
        source_model or wf.path, wf.diam_mean, wf.diam_labels, role=role
    )
    return _diameter("diam_mean", diam_mean, zoo_mean), _diameter("diam_labels", diam_labels, zoo_labels)


def _graph_bytes(net: CPnet, role: str, precision: str, opset: int, source: str, sha256: str,
                 fold_bn: bool) -> bytes:
    """The traced (folded, fp16 when asked), annotated and checked graph, serialised."""
    model = trace_to_onnx(fold_batchnorm(net) if fold_bn else net, role, opset)
    if precision == "fp16":
        from cp3rt.export.fp16 import convert_to_fp16

        model = convert_to_fp16(model)
    _annotate(model, role=role, precision=precision, source=source, sha256=sha256, fold_bn=fold_bn)
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"the exported graph of {source} fails the ONNX checker: {exc}") from exc
    return model.SerializeToString()


def _write(onnx_path: Path, data: bytes, manifest: EngineManifest) -> tuple[Path, Path]:
    try:
        atomic_write_bytes(onnx_path, data)
        manifest_path = manifest.write(manifest_path_for(onnx_path))
    except OSError as exc:
        raise OutputError(f"cannot write the export to {onnx_path.parent}: {exc}") from exc
    return onnx_path, manifest_path


def _check_options(precision: str, opset: int, name: str | None) -> None:
    if precision not in PRECISIONS:
        raise ConfigError(
            f"precision={precision!r} is not allowed; use one of {', '.join(PRECISIONS)}."
        )
    lo, hi = ONNX_OPSET_RANGE
    if not isinstance(opset, int) or isinstance(opset, bool) or not lo <= opset <= hi:
        raise ConfigError(f"opset={opset!r} is not allowed; use an integer from {lo} to {hi}.")
    if name is not None and (not name or "/" in name or "\\" in name or name in (".", "..")):
        raise ConfigError(f"name={name!r} is not allowed; give a plain file name without folders.")


def _diameter(field: str, given: float | None, default: float) -> float:
    if given is not None:
        if not (isinstance(given, (int, float)) and math.isfinite(given) and given > 0):
            raise ConfigError(f"{field}={given!r} is not allowed; use a finite number > 0.")
        return float(given)
    return float(default)


def _file_name(name: str | None, source: str, precision: str) -> str:
    if name is None:
        return f"{Path(source).name}.{precision}.onnx"
    return name if name.endswith(".onnx") else f"{name}.onnx"


def _annotate(
    model: onnx.ModelProto, *, role: str, precision: str, source: str, sha256: str, fold_bn: bool
) -> None:
    """Self-description inside the file, so an artefact separated from its manifest is traceable."""
    model.producer_name = "cp3rt"
    model.producer_version = __version__
    model.doc_string = f"Cellpose v3 CPnet ({role}, {precision}) exported from {source} by cp3rt"
    for key, value in {
        "cp3rt.role": role,
        "cp3rt.precision": precision,
        "cp3rt.source_model": source,
        "cp3rt.source_sha256": sha256,
        "cp3rt.fold_bn": str(fold_bn).lower(),
    }.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
