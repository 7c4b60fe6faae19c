"""ONNX (from ``cp3rt export``) -> TensorRT plan + manifest, one code path for TensorRT 10 and 11.

Build recipe (TensorRT Python API, checked against the 10.x/11.x docs):
``Builder(logger)`` -> ``create_network(strongly typed flags)`` -> ``OnnxParser(network, logger)``
``.parse(bytes)`` (errors via ``num_errors`` / ``get_error(i).desc()``) -> ``create_builder_config()``
with ``builder_optimization_level``, optimisation profiles from ``create_optimization_profile()``
``.set_shape(name, min, opt, max)`` + ``add_optimization_profile``, a timing cache from
``create_timing_cache(blob)`` + ``set_timing_cache(cache, ignore_mismatch)`` -> 
``build_serialized_network(network, config)`` (None on failure; the reasons go to the logger).

Precision comes from the graph (strongly typed): an fp16 plan is built from the fp16 ONNX
export, and no precision builder flag is set (they are rejected with strong typing in 10.x and
removed in 11.x). For fp32 plans TF32 is switched off so that "fp32" means fp32.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cp3rt import defaults as D
from cp3rt._fs import atomic_write_bytes
from cp3rt.manifest import EngineManifest, ShapeRange, manifest_path_for, sha256_file
from cp3rt.engines.tensorrt._trt import (
    TrtEnvironment,
    construct,
    current_environment,
    make_logger,
    strongly_typed_flags,
)
from cp3rt.engines.tensorrt.timing_cache import attach_timing_cache, default_timing_cache, save_timing_cache
from cp3rt.errors import ConfigError, ExportError, IncompatibleEngineError, OutputError

PRECISIONS = ("fp32", "fp16")
PLAN_SUFFIX = ".plan"
INPUT_NAME = "image"
Progress = Callable[[str], None]


def default_shapes(batch: tuple[int, int, int] = D.TRT_BATCH) -> ShapeRange:
    """Batch min:opt:max and tiles from 32 x 32 to 224 x 224 with 224 x 224 as the optimum."""
    return ShapeRange(
        min_batch=batch[0], opt_batch=batch[1], max_batch=batch[2],
        min_hw=(D.MIN_TILE, D.MIN_TILE), opt_hw=(D.TILE_SIZE, D.TILE_SIZE),
        max_hw=(D.TILE_SIZE, D.TILE_SIZE),
    )


def parse_batch(text: str) -> tuple[int, int, int]:
    """``"1:64:256"`` -> (1, 64, 256); ConfigError naming the field and the rule otherwise."""
    parts = str(text).split(":")
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 3 or not 1 <= values[0] <= values[1] <= values[2]:
        raise ConfigError(
            f"batch={text!r} is not allowed; give MIN:OPT:MAX integers with "
            "1 <= MIN <= OPT <= MAX, e.g. 1:64:256."
        )
    return values  # type: ignore[return-value]


@dataclasses.dataclass(frozen=True)
class BuildConfig:
    """How a plan is built. ``timing_cache`` None: the default file in the plan cache folder."""

    precision: str = "fp16"
    shapes: ShapeRange = dataclasses.field(default_factory=default_shapes)
    optimization_level: int = D.TRT_OPT_LEVEL
    workspace_mib: int | None = None   # None: TensorRT's default (the GPU's memory)
    timing_cache: Path | None = None
    device: int = 0

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision={self.precision!r} is not allowed; allowed: fp32, fp16.")
        s = self.shapes
        if not isinstance(s, ShapeRange):
            raise ConfigError(f"shapes={s!r} is not allowed; allowed: a ShapeRange.")
        if not 1 <= s.min_batch <= s.opt_batch <= s.max_batch:
            raise ConfigError(
                f"shapes batch {s.min_batch}:{s.opt_batch}:{s.max_batch} is not allowed; "
                "allowed: 1 <= min <= opt <= max."
            )
        for axis in (0, 1):
            lo, opt, hi = s.min_hw[axis], s.opt_hw[axis], s.max_hw[axis]
            if not (D.NET_HW_MULTIPLE <= lo <= opt <= hi) or any(v % D.NET_HW_MULTIPLE for v in (lo, opt, hi)):
                raise ConfigError(
                    f"shapes tile {'height' if axis == 0 else 'width'} {lo}:{opt}:{hi} is not "
                    f"allowed; allowed: multiples of {D.NET_HW_MULTIPLE} with min <= opt <= max."
                )
        lo, hi = D.TRT_OPT_LEVEL_RANGE
        if isinstance(self.optimization_level, bool) or not isinstance(self.optimization_level, int) \
                or not lo <= self.optimization_level <= hi:
            raise ConfigError(
                f"optimization_level={self.optimization_level!r} is not allowed; allowed: {lo}..{hi}."
            )
        if self.workspace_mib is not None and (not isinstance(self.workspace_mib, int) or self.workspace_mib < 1):
            raise ConfigError(f"workspace_mib={self.workspace_mib!r} is not allowed; allowed: None or an int >= 1.")
        if isinstance(self.device, bool) or not isinstance(self.device, int) or self.device < 0:
            raise ConfigError(f"device={self.device!r} is not allowed; allowed: a GPU index >= 0.")


@dataclasses.dataclass(frozen=True)
class BuildResult:
    plan_path: Path
    manifest_path: Path
    manifest: EngineManifest
    seconds: float
    plan_bytes: int
    timing_cache: Path


def profile_shapes(shapes: ShapeRange, nchan: int) -> list[tuple[tuple[int, ...], ...]]:
    """(min, opt, max) input shapes per optimisation profile.

    Profile 0 is pinned to the optimum tile (224 x 224) so its kernels are chosen for exactly
    the shape nearly every tile has; profile 1, when the range is wider, covers all other tiles
    (small images give one tile of their padded size) with an optimum in the middle of the range.
    """
    b0, b1, b2 = shapes.min_batch, shapes.opt_batch, shapes.max_batch
    oh, ow = shapes.opt_hw
    fixed = ((b0, nchan, oh, ow), (b1, nchan, oh, ow), (b2, nchan, oh, ow))
    if shapes.min_hw == shapes.max_hw == shapes.opt_hw:
        return [fixed]
    mid = tuple(
        max(lo, min(hi, ((lo + hi) // 2) // D.TILE_MULTIPLE * D.TILE_MULTIPLE))
        for lo, hi in zip(shapes.min_hw, shapes.max_hw)
    )
    general = ((b0, nchan, *shapes.min_hw), (b1, nchan, *mid), (b2, nchan, *shapes.max_hw))
    return [fixed, general]


def rebuild_command(manifest: EngineManifest, out_dir: Path | None) -> str:
    """The exact command that rebuilds a plan like ``manifest`` (into ``out_dir`` or the cache)."""
    from cp3rt.zoo import ZOO

    # A zoo name resolves anywhere; a weight file's bare name does not, its ONNX path does.
    source = manifest.source_model
    if source not in ZOO and manifest.onnx_path:
        source = manifest.onnx_path
    s = manifest.shapes
    cmd = (f"cp3rt build {source} --precision {manifest.precision} "
           f"--batch {s.min_batch}:{s.opt_batch}:{s.max_batch}")
    return cmd + (f" --out {out_dir}" if out_dir is not None else "")


def use_environment(environment: tuple[Any, TrtEnvironment] | None, device: int) -> tuple[Any, TrtEnvironment]:
    """``environment`` (described by a caller) or the current one, for GPU ``device``, made the
    calling thread's current device: a plan is built for the device current at build time."""
    if environment is None:
        return current_environment(device)
    if environment[1].device != device:
        raise ConfigError(f"device={device} is not allowed here: the TensorRT environment given "
                          f"describes GPU {environment[1].device}.")
    from cp3rt.engines.tensorrt._cuda import set_device

    set_device(device)
    return environment


def read_onnx_manifest(onnx_path: Path) -> tuple[EngineManifest, str]:
    """The export's manifest and the ONNX file's sha256 (they must agree)."""
    sidecar = manifest_path_for(onnx_path)
    if not onnx_path.is_file():
        raise IncompatibleEngineError(f"{onnx_path}: ONNX file not found.")
    if not sidecar.is_file():
        raise IncompatibleEngineError(
            f"{onnx_path}: its manifest {sidecar.name} is missing; re-export with `cp3rt export`."
        )
    manifest = EngineManifest.read(sidecar)
    digest = sha256_file(onnx_path)
    if manifest.artefact_sha256 and manifest.artefact_sha256 != digest:
        raise IncompatibleEngineError(
            f"{sidecar.name} describes another file than {onnx_path.name} (sha256 differs); "
            f"re-export with: cp3rt export {manifest.source_model} --precision {manifest.precision}"
        )
    return manifest, digest


def build_plan(
    onnx_path: str | os.PathLike[str],
    plan_path: str | os.PathLike[str],
    config: BuildConfig = BuildConfig(),
    *,
    progress: Progress | None = None,
    environment: tuple[Any, TrtEnvironment] | None = None,
) -> BuildResult:
    """Build ``plan_path`` (+ ``<plan>.json`` manifest) from an exported ONNX file."""
    onnx_path, plan_path = Path(onnx_path), Path(plan_path)
    trt, env = use_environment(environment, config.device)
    onnx_manifest, onnx_sha = read_onnx_manifest(onnx_path)
    if onnx_manifest.precision != config.precision:
        raise ConfigError(
            f"precision={config.precision!r} needs the {config.precision} ONNX export, but "
            f"{onnx_path.name} is {onnx_manifest.precision} (strongly typed plans take their "
            f"precision from the graph); export with --precision {config.precision}."
        )
    say = progress or (lambda _msg: None)
    logger = make_logger(trt, lambda sev, msg: say(f"TensorRT {sev}: {msg}") if sev in ("ERROR", "WARNING", "INTERNAL_ERROR") else None)
    builder = construct(trt, "Builder", logger)
    # The parser owns the weights the network points at: it must live until the build is done.
    network, _parser = _parse(trt, builder, logger, onnx_path, env)
    _check_network_input(network, onnx_manifest, onnx_path)
    bconf = _builder_config(trt, builder, logger, config, onnx_manifest.nchan)
    cache_path = config.timing_cache or default_timing_cache(env)
    cache = attach_timing_cache(bconf, cache_path, say, logger)
    say(f"building {plan_path.name} ({config.precision}, TensorRT {env.tensorrt_version}, {env.gpu_name})")
    t0 = time.perf_counter()
    serialized = builder.build_serialized_network(network, bconf)
    seconds = time.perf_counter() - t0
    if serialized is None:
        raise ExportError(
            f"TensorRT {env.tensorrt_version} could not build a plan from {onnx_path.name}: "
            f"{logger.error_text('the builder returned no plan')}."
        )
    data = bytes(serialized)
    save_timing_cache(cache, cache_path)
    manifest = dataclasses.replace(
        onnx_manifest, shapes=config.shapes, artefact_sha256=_sha256(data), onnx_sha256=onnx_sha,
        onnx_path=os.fspath(onnx_path.resolve()), tensorrt_version=env.tensorrt_version, gpu_name=env.gpu_name,
        compute_capability=env.compute_capability,
    )
    manifest_path = _write_plan(plan_path, data, manifest)
    return BuildResult(plan_path, manifest_path, manifest, seconds, len(data), cache_path)


def _parse(trt: Any, builder: Any, logger: Any, onnx_path: Path, env: TrtEnvironment) -> tuple[Any, Any]:
    """(strongly typed network, the parser that filled it) from the ONNX file."""
    network = builder.create_network(strongly_typed_flags(trt))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = [str(parser.get_error(i).desc()) for i in range(parser.num_errors)]
        raise ExportError(
            f"TensorRT {env.tensorrt_version} cannot parse {onnx_path.name}: "
            f"{'; '.join(errors) or logger.error_text('no reason given')}."
        )
    return network, parser


def _builder_config(trt: Any, builder: Any, logger: Any, config: BuildConfig, nchan: int) -> Any:
    """Optimisation level, precision flags, workspace limit and the optimisation profiles."""
    bconf = builder.create_builder_config()
    bconf.builder_optimization_level = config.optimization_level
    if config.precision == "fp32":
        bconf.clear_flag(trt.BuilderFlag.TF32)  # TF32 would round fp32 convs to 10-bit mantissas
    if config.workspace_mib is not None:
        bconf.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, config.workspace_mib << 20)
    for low, opt, high in profile_shapes(config.shapes, nchan):
        profile = builder.create_optimization_profile()
        profile.set_shape(INPUT_NAME, low, opt, high)
        if bconf.add_optimization_profile(profile) < 0:
            raise ExportError(f"TensorRT rejected the optimisation profile {low} .. {high}: "
                              f"{logger.error_text('invalid profile')}.")
    return bconf


def _write_plan(plan_path: Path, data: bytes, manifest: EngineManifest) -> Path:
    try:
        atomic_write_bytes(plan_path, data)
        return manifest.write(manifest_path_for(plan_path))
    except OSError as exc:
        raise OutputError(f"cannot write the plan to {plan_path.parent}: {exc}") from exc


def _check_network_input(network: Any, manifest: EngineManifest, onnx_path: Path) -> None:
    names = [network.get_input(i).name for i in range(network.num_inputs)]
    if names != [INPUT_NAME]:
        raise ExportError(
            f"{onnx_path.name} has inputs {names}; a cp3rt export has exactly one input "
            f"'{INPUT_NAME}' - re-export with `cp3rt export {manifest.source_model}`."
        )
    shape = tuple(network.get_input(0).shape)
    if len(shape) != 4 or shape[1] != manifest.nchan:
        raise ExportError(
            f"{onnx_path.name} input '{INPUT_NAME}' has shape {shape}; expected "
            f"(-1, {manifest.nchan}, -1, -1) from its manifest."
        )


def _sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()
