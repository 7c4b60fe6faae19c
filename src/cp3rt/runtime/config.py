"""Frozen settings of a :class:`~cp3rt.runtime.pipeline.Pipeline`: which models (PipelineConfig)
and how to run them on one image (RunConfig). Validated once, here, with messages that name the
field, the value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Any, Literal

from cp3rt import defaults as D
from cp3rt.engines.select import BACKENDS
from cp3rt.errors import ConfigError
from cp3rt.runtime.dynamics.config import DynamicsConfig
from cp3rt.runtime.prep.normalize import NormalizeConfig
from cp3rt.runtime.tiles.options import TileOptions, check_tile_size

Backend = Literal["auto", "ort", "trt", "torch", "torch-cuda", "openvino"]
Precision = Literal["fp32", "fp16", "int8"]
PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "int8")  # int8: calibrated .int8.onnx artefacts only


def _bad(field: str, value: Any, allowed: str) -> ConfigError:
    return ConfigError(f"{field}={value!r} is not allowed; allowed: {allowed}.")


def _finite(field: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _bad(field, value, "a finite number")
    return float(value)


def _model_text(field: str, value: Any, *, optional: bool) -> str | None:
    if value is None and optional:
        return None
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value.strip():
        raise _bad(field, value, "a zoo model name, a weight-file path or an .onnx artefact"
                   + (" (or None)" if optional else ""))
    return value


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """Which nets run and on what.

    ``segment`` / ``restore`` / ``restore_chan2`` are zoo names (``cyto3``, ``denoise_cyto3``),
    weight-file paths or exported ``.onnx`` artefacts. ``restore_chan2`` is the net applied to
    the second (nucleus) channel during restoration; the reference loads it but never applies
    it (§3.11 [bug]) — cp3rt applies it (docs/deviations.md).
    """

    segment: str = D.SEGMENT_MODEL
    restore: str | None = None
    restore_chan2: str | None = None
    backend: Backend = D.BACKEND
    precision: Precision = D.PRECISION
    cache_dir: Path | None = None
    download: bool = True
    compile: bool = False  # torch-cuda only: TorchInductor-compiled nets (cp3rt.engines.compile_cache)
    # CPU threads: the nets' pool on the CPU backends and the dynamics' numba threads (shared out
    # among the images in flight). None: the usable cores. For PCs that share cores with acquisition.
    cpu_threads: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "segment", _model_text("segment", self.segment, optional=False))
        object.__setattr__(self, "restore", _model_text("restore", self.restore, optional=True))
        object.__setattr__(
            self, "restore_chan2", _model_text("restore_chan2", self.restore_chan2, optional=True)
        )
        if self.restore_chan2 is not None and self.restore is None:
            raise ConfigError(
                f"restore_chan2={self.restore_chan2!r} needs restore to be set as well "
                "(it only replaces the net for channel 2 of the restoration)."
            )
        if self.backend not in BACKENDS:
            raise _bad("backend", self.backend, ", ".join(BACKENDS))
        if self.precision == "bf16":  # arithmetic, not a graph: the openvino backend on the fp32 graph
            if self.backend != "openvino":
                raise ConfigError(f"precision='bf16' is OpenVINO's bf16 arithmetic on the fp32 graph; "
                                  f"backend is {self.backend!r}: use backend 'openvino' for it.")
        elif self.precision not in PRECISIONS:
            raise _bad("precision", self.precision, ", ".join(PRECISIONS) + ", bf16 (backend openvino)")
        if self.cache_dir is not None:
            object.__setattr__(self, "cache_dir", Path(self.cache_dir))
        if not isinstance(self.compile, bool):
            raise _bad("compile", self.compile, "True or False")
        if self.cpu_threads is not None and (
                isinstance(self.cpu_threads, bool) or not isinstance(self.cpu_threads, int) or self.cpu_threads < 1):
            raise _bad("cpu_threads", self.cpu_threads, "None (the usable cores) or an integer >= 1")
        if self.compile and self.backend != "torch-cuda":
            raise ConfigError(
                f"compile=True compiles the nets with TorchInductor, which only the 'torch-cuda' backend "
                f"does; backend is {self.backend!r}."
            )


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """How one image is processed (defaults: spec §3.1 / cp3rt.defaults).

    ``diameter`` None or 0 means: estimate it with the model's size model when there is one,
    else use the model's ``diam_mean / diam_labels`` rule (§3.4). ``channels`` follows the
    Cellpose convention ``(cyto, nucleus)`` with 0 = gray/none, 1..3 = R, G, B; None keeps the
    first ``nchan`` channels. ``reference_bugs=True`` reproduces the reference's documented bugs
    (docs/deviations.md) for parity checks only; the stages read it from here (and hand it to the
    dynamics inside ``dynamics()``), it is not passed alongside.
    """

    diameter: float | None = None
    channels: tuple[int, int] | None = None
    channel_axis: int | None = None
    z_axis: int | None = None
    flow_threshold: float = D.FLOW_THRESHOLD
    cellprob_threshold: float = D.CELLPROB_THRESHOLD
    niter: int | None = None
    min_size: int = D.MIN_SIZE
    max_size_fraction: float = D.MAX_SIZE_FRACTION
    tile_overlap: float = D.TILE_OVERLAP
    batch_size: int = D.BATCH_SIZE
    augment: bool = False
    tile_size: int = D.TILE_SIZE  # the reference's bsize; the engines must admit it (nets.check_tile_size)
    resample: bool = True
    interp: bool = True
    normalize: NormalizeConfig | None = dataclasses.field(default_factory=NormalizeConfig)
    estimate_diameter: bool = True
    reference_bugs: bool = False
    # Volumes (§3.9, §3.10): do_3D wins over stitch_threshold, as in the reference.
    do_3D: bool = False
    anisotropy: float | None = None
    stitch_threshold: float = 0.0
    flow3D_smooth: float = 0.0
    # None: "exact" (the field read at the voxel), or the reference's "grid" with reference_bugs
    sampling_3d: Literal["grid", "exact"] | None = None
    # 2-D: every stage between upload and masks on the engines' device (stages.image_device).
    gpu_resident: bool = False

    def __post_init__(self) -> None:
        if self.diameter is not None:
            d = _finite("diameter", self.diameter)
            if d < 0:
                raise _bad("diameter", self.diameter, "None, 0 (automatic) or a number > 0 (pixels)")
            object.__setattr__(self, "diameter", d)
        if self.channels is not None:
            ch = tuple(self.channels)
            if len(ch) != 2 or not all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 3 for c in ch):
                raise _bad("channels", self.channels, "None or two integers in 0..3 (0 = gray/none, 1=R, 2=G, 3=B)")
            object.__setattr__(self, "channels", ch)
        for name in ("channel_axis", "z_axis"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise _bad(name, value, "None or an integer axis index")
        object.__setattr__(self, "flow_threshold", _finite("flow_threshold", self.flow_threshold))
        if self.flow_threshold < 0:
            raise _bad("flow_threshold", self.flow_threshold, ">= 0 (0 disables the flow check)")
        object.__setattr__(
            self, "cellprob_threshold", _finite("cellprob_threshold", self.cellprob_threshold)
        )
        if self.niter is not None and (isinstance(self.niter, bool) or not isinstance(self.niter, int) or self.niter < 0):
            raise _bad("niter", self.niter, "None/0 (automatic) or a positive integer")
        if isinstance(self.min_size, bool) or not isinstance(self.min_size, int):
            raise _bad("min_size", self.min_size, "an integer (<= 0 disables the size filter)")
        frac = _finite("max_size_fraction", self.max_size_fraction)
        if not 0 < frac <= 1:
            raise _bad("max_size_fraction", self.max_size_fraction, "0 < value <= 1")
        lo, hi = D.TILE_OVERLAP_RANGE
        ov = _finite("tile_overlap", self.tile_overlap)
        if not lo <= ov <= hi:
            raise _bad("tile_overlap", self.tile_overlap, f"{lo} <= value <= {hi}")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise _bad("batch_size", self.batch_size, "an integer >= 1")
        check_tile_size(self.tile_size)
        self._check_volume()
        for name in ("augment", "resample", "interp", "estimate_diameter", "reference_bugs", "do_3D", "gpu_resident"):
            if not isinstance(getattr(self, name), bool):
                raise _bad(name, getattr(self, name), "True or False")
        if self.normalize is not None and not isinstance(self.normalize, NormalizeConfig):
            raise _bad("normalize", self.normalize, "a NormalizeConfig or None (no normalisation)")
        if self.reference_bugs and self.normalize is not None and not self.normalize.reference_bugs:
            # one switch for every reference defect, the normalisation's included
            object.__setattr__(self, "normalize", dataclasses.replace(self.normalize, reference_bugs=True))

    def _check_volume(self) -> None:
        if self.anisotropy is not None:
            if _finite("anisotropy", self.anisotropy) <= 0:
                raise _bad("anisotropy", self.anisotropy, "None or a number > 0 (Z step / XY pixel size)")
            object.__setattr__(self, "anisotropy", float(self.anisotropy))
        st = _finite("stitch_threshold", self.stitch_threshold)
        if not 0 <= st <= 1:
            raise _bad("stitch_threshold", self.stitch_threshold, "0 (off) <= value <= 1 (IoU)")
        if _finite("flow3D_smooth", self.flow3D_smooth) < 0:
            raise _bad("flow3D_smooth", self.flow3D_smooth, ">= 0 (0 disables the smoothing)")
        if self.sampling_3d not in (None, "grid", "exact"):
            raise _bad("sampling_3d", self.sampling_3d,
                       "None (exact; grid with reference_bugs), grid (the reference's) or exact")

    @property
    def is_volume(self) -> bool:
        """do_3D or stitching: the input is a (Z, Y, X[, C]) volume."""
        return self.do_3D or self.stitch_threshold > 0

    @property
    def sampling(self) -> Literal["grid", "exact"]:
        """How do_3D dynamics read the flow field (docs/deviations.md row 11): ``sampling_3d`` if
        set, else the reference's half-voxel-off "grid" under ``reference_bugs``, else "exact"."""
        if self.sampling_3d is not None:
            return self.sampling_3d
        return "grid" if self.reference_bugs else "exact"

    @property
    def tiles(self) -> TileOptions:
        """Overlap, batch size, augmentation and tile side, as the tile runners take them."""
        return TileOptions(self.tile_overlap, self.batch_size, self.augment, self.tile_size)

    def dynamics(self, niter: float, output_shape: tuple[int, int] | None, *,
                 min_size: int | None = None) -> DynamicsConfig:
        """The 2-D flows -> masks settings of this run for ``niter`` steps and masks of
        ``output_shape``; the one place a run config becomes a DynamicsConfig (host and device
        path). ``min_size`` overrides the run's (stitching filters sizes once, after joining)."""
        return DynamicsConfig(
            niter=niter, cellprob_threshold=self.cellprob_threshold, flow_threshold=self.flow_threshold,
            min_size=self.min_size if min_size is None else min_size, max_size_fraction=self.max_size_fraction,
            interp=self.interp, output_shape=output_shape, reference_bugs=self.reference_bugs,
        )

    def replace(self, **changes: Any) -> RunConfig:
        """A copy with ``changes`` applied (unknown names raise ConfigError)."""
        fields = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - fields)
        if unknown:
            raise ConfigError(
                f"unknown run setting(s) {', '.join(unknown)}; allowed: {', '.join(sorted(fields))}."
            )
        return dataclasses.replace(self, **changes)
