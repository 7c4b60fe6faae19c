"""``cp3rt export --precision int8``'s library side: calibrate on the user's images, quantize,
check the masks, write the artefact -- or refuse and write nothing.

1. The fp32 graph of the model (``artefacts.resolve_model``; folded by ``export.int8``) runs the
   real runtime (``runtime.Pipeline``) on the calibration images, behind a recorder that keeps
   every batch of tiles the runtime hands the net: same normalisation, rescale by the diameter,
   padding and tiling as ``cp3rt run``, because it *is* that code. A restore net is run in front
   of the ``segment_with`` net; a segment net behind ``restore_with`` when one is given.
2. Those batches calibrate the int8 QDQ graph (``export.int8.quantize_int8``).
3. The int8 pipeline's masks are matched with the fp32 pipeline's masks on the calibration
   images and on the holdout images (AP@0.5 / AP@0.75, counts summed over the images).
4. Below the bar on either set: ``ExportError`` (one line) and nothing is written. Else the
   ``.int8.onnx`` and its manifest, whose ``calibration`` records files, method and accuracy.

Tools floor: it uses the artefact cache, the engines, the runtime and the (torch-side) export.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from cp3rt import defaults as D
from cp3rt._fs import atomic_write_bytes
from cp3rt._version import __version__
from cp3rt.errors import ConfigError, ExportError, OutputError
from cp3rt.manifest import (
    Calibration, CalibrationFile, EngineManifest, MaskAgreement, manifest_path_for, sha256_file,
)

Say = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class Int8Config:
    """What ``cp3rt export MODEL --precision int8 --calibrate DIR`` was given."""

    model: str
    calibrate: Path
    out_dir: Path
    holdout: Path | None = None
    method: str = D.INT8_METHOD
    activations: str = D.INT8_ACTIVATIONS
    min_ap50: float = D.INT8_MIN_AP50
    min_ap75: float = D.INT8_MIN_AP75
    segment_with: str | None = None
    restore_with: str | None = None
    diameter: float | None = None
    name: str | None = None
    cache_dir: Path | None = None
    keep_fp32: tuple[str, ...] | None = None  # op types not quantized; None: D.INT8_KEEP_FP32 by role

    def __post_init__(self) -> None:
        from cp3rt.export.int8 import ACTIVATIONS, METHODS

        if self.method not in METHODS:
            raise ConfigError(f"method={self.method!r} is not allowed; allowed: {', '.join(METHODS)}.")
        if self.activations not in ACTIVATIONS:
            raise ConfigError(f"activations={self.activations!r} is not allowed; allowed: {', '.join(ACTIVATIONS)}.")
        for field in ("min_ap50", "min_ap75"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise ConfigError(f"{field}={value!r} is not allowed; allowed: a number in [0, 1].")
        if self.diameter is not None and not (math.isfinite(self.diameter) and self.diameter > 0):
            raise ConfigError(f"diameter={self.diameter!r} is not allowed; allowed: a finite number > 0 or None.")
        if self.keep_fp32 is not None:
            object.__setattr__(self, "keep_fp32", tuple(self.keep_fp32))
        if self.name is not None and (not self.name or "/" in self.name or "\\" in self.name):
            raise ConfigError(f"name={self.name!r} is not allowed; give a plain file name without folders.")


@dataclasses.dataclass(frozen=True)
class Int8Result:
    onnx_path: Path
    manifest_path: Path
    manifest: EngineManifest


def export_int8(cfg: Int8Config, say: Say | None = None) -> Int8Result:
    """Calibrate, quantize, check and write (see the module doc); ExportError below the bar."""
    from cp3rt.artefacts import resolve_model
    from cp3rt.export.int8 import folded_fp32_graph, nodes_named, quantize_int8
    from cp3rt.runtime.io import find_images

    say = say or (lambda _msg: None)
    calib = find_images([cfg.calibrate])
    holdout = find_images([cfg.holdout]) if cfg.holdout is not None else []
    calib_files, holdout_files = _files(calib), _files(holdout)
    _check_held_out(calib_files, holdout_files)
    source = resolve_model(cfg.model, precision="fp32", backend="ort", cache_root=cfg.cache_dir)
    manifest = source.manifest
    if manifest is None:  # resolve_model for 'ort' always gives one: cp3rt's bug otherwise
        raise ExportError(f"{cfg.model}: no manifest for its fp32 graph.")
    _check_partner(cfg, manifest.role)
    target = cfg.out_dir / _file_name(cfg.name, manifest.source_model)
    with tempfile.TemporaryDirectory(prefix="cp3rt-int8-") as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        fp32.write_bytes(folded_fp32_graph(source.path, manifest))
        fp32_sha = sha256_file(fp32)
        say(f"running the fp32 {manifest.role} net on {len(calib)} calibration + {len(holdout)} holdout images")
        batches, masks32 = _run_fp32(cfg, fp32, manifest, calib, holdout)
        say(f"calibrating on {sum(len(b) for b in batches)} tiles ({cfg.method}, {cfg.activations} activations)")
        keep, scope = _kept(cfg, manifest.role)
        graph = fp32.read_bytes()
        data = quantize_int8(graph, batches, method=cfg.method, activations=cfg.activations,
                             keep_nodes=nodes_named(graph, keep, scope))
        int8 = Path(tmp) / "int8.onnx"
        int8.write_bytes(data)
        say("running the int8 pipeline on the same images")
        masks8 = _run_pipeline(cfg, int8, dataclasses.replace(manifest, precision="int8"), [*calib, *holdout])
    n = len(calib)
    record = Calibration(
        method=cfg.method, activations=cfg.activations, files=calib_files,
        tiles=sum(len(b) for b in batches), accuracy=agreement(masks32[:n], masks8[:n]),
        min_ap50=float(cfg.min_ap50), min_ap75=float(cfg.min_ap75), holdout=holdout_files,
        holdout_accuracy=agreement(masks32[n:], masks8[n:]) if holdout else None,
        diameter=cfg.diameter, segment_with=cfg.segment_with, restore_with=cfg.restore_with,
        fp32_sha256=fp32_sha, onnxruntime_version=_ort_version(), keep_fp32=keep, keep_scope=scope,
    )
    _check_bar(cfg, manifest.source_model, record)
    out_manifest = dataclasses.replace(
        manifest, precision="int8", artefact_sha256=_sha256(data), onnx_sha256="", onnx_path="",
        calibration=record, cp3rt_version=__version__,
    )
    return _write(target, data, out_manifest)


def agreement(masks_fp32: Sequence[np.ndarray], masks_int8: Sequence[np.ndarray]) -> MaskAgreement:
    """AP@0.5 / AP@0.75 of int8 masks against fp32 masks, TP/FP/FN summed over the images
    (an image where both are empty counts nothing; both empty everywhere is AP 1)."""
    from cp3rt.runtime.quality.metrics import average_precision

    _, tp, fp, fn = average_precision(list(masks_fp32), list(masks_int8), (0.5, 0.75))
    tp, fp, fn = tp.sum(axis=0), fp.sum(axis=0), fn.sum(axis=0)
    denom = tp + fp + fn
    ap = np.where(denom > 0, tp / np.maximum(denom, 1), 1.0)
    return MaskAgreement(
        images=len(masks_fp32), ap50=round(float(ap[0]), 4), ap75=round(float(ap[1]), 4),
        objects_fp32=int(sum(int(m.max()) for m in masks_fp32)),
        objects_int8=int(sum(int(m.max()) for m in masks_int8)),
    )


def _kept(cfg: Int8Config, role: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(op types, node-name scope) left in fp32: the role's default, or the given op types everywhere."""
    if cfg.keep_fp32 is not None:
        return tuple(cfg.keep_fp32), ()
    return tuple(D.INT8_KEEP_FP32[role]), tuple(D.INT8_KEEP_SCOPE[role])


def _check_partner(cfg: Int8Config, role: str) -> None:
    if role == "restore" and cfg.segment_with is None:
        raise ConfigError(
            f"{cfg.model} is a restoration net: its int8 masks are those of restore -> segment; "
            "name the segmentation model with --segment-with MODEL."
        )
    if role == "restore" and cfg.restore_with is not None:
        raise ConfigError("--restore-with is for segmentation nets; this model is a restoration net.")
    if role == "segment" and cfg.segment_with is not None:
        raise ConfigError("--segment-with is for restoration nets; this model segments itself.")


class _Recorder:
    """An engine that passes every batch to ``engine`` and keeps a copy while ``on``."""

    def __init__(self, engine: object) -> None:
        self._engine = engine
        self.batches: list[np.ndarray] = []
        self.on = True

    def __getattr__(self, name: str) -> object:  # backend, manifest, inputs, outputs, close ...
        return getattr(self._engine, name)

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        if self.on:
            self.batches.append(np.array(batch, dtype=np.float32, copy=True))
        return self._engine.infer(batch)  # type: ignore[attr-defined]

    def infer_many(self, batches: Iterable[np.ndarray]) -> Iterator[dict[str, np.ndarray]]:
        return (self.infer(b) for b in batches)


def _run_fp32(cfg: Int8Config, fp32: Path, manifest: EngineManifest, calib: list[Path],
              holdout: list[Path]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(recorded tile batches of the calibration images, fp32 masks of calibration + holdout)."""
    recorder: list[_Recorder] = []

    def wrap(engine: object) -> object:
        recorder.append(_Recorder(engine))
        return recorder[0]

    masks = _run_pipeline(cfg, fp32, manifest, calib, wrap=wrap)
    recorder[0].on = False
    masks += _run_pipeline(cfg, fp32, manifest, holdout) if holdout else []
    return recorder[0].batches, masks


def _run_pipeline(cfg: Int8Config, graph: Path, manifest: EngineManifest, files: list[Path],
                  wrap: Callable[[object], object] = lambda e: e) -> list[np.ndarray]:
    """Masks of ``files`` with ``graph`` as the model's net (wrapped by ``wrap``) and the fp32
    partner net, through the runtime's own Pipeline."""
    from cp3rt.artefacts import resolve_model
    from cp3rt.engines.ort import OrtEngine
    from cp3rt.runtime import Pipeline, RunConfig

    own = OrtEngine(graph)
    own.manifest = manifest
    partner_spec = cfg.segment_with if manifest.role == "restore" else cfg.restore_with
    partner = None
    if partner_spec is not None:
        partner = OrtEngine(resolve_model(partner_spec, precision="fp32", backend="ort",
                                          cache_root=cfg.cache_dir).path)
    pair = (partner, wrap(own)) if manifest.role == "restore" else (wrap(own), partner)
    with Pipeline.from_engines(pair[0], pair[1], run=RunConfig(diameter=cfg.diameter)) as pipe:  # type: ignore[arg-type]
        return [np.asarray(pipe.run(f).masks) for f in files]


def _check_bar(cfg: Int8Config, model: str, record: Calibration) -> None:
    for label, acc in (("calibration", record.accuracy), ("holdout", record.holdout_accuracy)):
        if acc is not None and (acc.ap50 < cfg.min_ap50 or acc.ap75 < cfg.min_ap75):
            raise ExportError(
                f"int8 {model} ({cfg.method}, {cfg.activations}) misses the accuracy bar on the "
                f"{label} images: AP@0.5 {acc.ap50:.3f} (bar {cfg.min_ap50:g}), AP@0.75 "
                f"{acc.ap75:.3f} (bar {cfg.min_ap75:g}) against the fp32 masks; nothing written "
                "(try another --calibration-method or more calibration images)."
            )


def _check_held_out(calib: tuple[CalibrationFile, ...], holdout: tuple[CalibrationFile, ...]) -> None:
    seen = {f.sha256: f.name for f in calib}
    for f in holdout:
        if f.sha256 in seen:
            raise ConfigError(
                f"holdout image {f.name} is also a calibration image ({seen[f.sha256]}, same "
                "content); held-out images must not be used for calibration."
            )


def _files(paths: list[Path]) -> tuple[CalibrationFile, ...]:
    return tuple(CalibrationFile(p.name, sha256_file(p)) for p in paths)


def _file_name(name: str | None, source: str) -> str:
    if name is None:
        return f"{Path(source).name}.int8.onnx"
    return name if name.endswith(".onnx") else f"{name}.onnx"


def _sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def _ort_version() -> str:
    import onnxruntime

    return str(onnxruntime.__version__)


def _write(target: Path, data: bytes, manifest: EngineManifest) -> Int8Result:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(target, data)
        mpath = manifest.write(manifest_path_for(target))
    except OSError as exc:
        raise OutputError(f"cannot write the int8 export to {target.parent}: {exc}") from exc
    return Int8Result(target, mpath, manifest)
