"""Open one model spec as an engine plus the metadata the pipeline needs (diameters, channels,
whether it upsamples, its size model)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cp3rt import defaults as D
from cp3rt.errors import ConfigError, IncompatibleEngineError

if TYPE_CHECKING:  # pragma: no cover
    from cp3rt.engines.base import Engine
    from cp3rt.manifest import EngineManifest
    from cp3rt.runtime.config import PipelineConfig
    from cp3rt.zoo import SizeModel

STYLE_OUTPUT = "style"
OUTPUT_FOR_ROLE = {"segment": "flows", "restore": "restored"}


class EngineInfer:
    """The tiling runner's ``infer`` over an engine, and ``many`` over its ``infer_many``:
    TensorRT and torch-CUDA keep one batch on the device while the next is staged, so host-side
    cutting and stitching overlap the GPU; the other engines run the batches one by one."""

    def __init__(self, engine: Engine, out_name: str) -> None:
        self._engine, self._out = engine, out_name

    def _pair(self, out: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
        return out[self._out], out.get(STYLE_OUTPUT)

    def __call__(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        return self._pair(self._engine.infer(np.ascontiguousarray(batch, dtype=np.float32)))

    def many(self, batches: Iterable[np.ndarray]) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        staged = (np.ascontiguousarray(b, dtype=np.float32) for b in batches)
        return (self._pair(out) for out in self._engine.infer_many(staged))


@dataclasses.dataclass(eq=False)
class Net:
    """An opened engine and what the pipeline must know about its model."""

    spec: str
    role: str
    engine: Engine
    nchan: int
    diam_mean: float
    diam_labels: float
    upsamples: bool
    weights: Path | None
    builtin: bool  # a zoo name: float64 rescale arithmetic, else float32 (§3.4)
    source_model: str = ""  # the manifest's source (zoo name or weight-file name)

    def infer_fn(self) -> EngineInfer:
        """``tiles (B, C, h, w) float32 -> (y (B, nout, h, w), style (B, 256) | None)``."""
        return EngineInfer(self.engine, OUTPUT_FOR_ROLE[self.role])

    def close(self) -> None:
        self.engine.close()


def _no_size_model() -> None:
    return None


@dataclasses.dataclass(frozen=True)
class Nets:
    """The opened nets one image goes through: what the stages get instead of a Pipeline.

    ``size_model`` is a callable because the size model is loaded on first use (only a run
    without a diameter needs it) by whoever owns the nets.
    """

    segment: Net
    restore: Net | None = None
    restore_chan2: Net | None = None
    size_model: Callable[[], SizeModel | None] = _no_size_model


# Backends whose net runs on a CPU thread pool that PipelineConfig.cpu_threads sizes ("auto" may
# pick onnxruntime on the CPU; on TensorRT the option is not used).
CPU_THREADED_BACKENDS = ("auto", "ort", "openvino", "torch")


def open_net(spec: str, role: str, cfg: PipelineConfig) -> Net:
    """Resolve/export ``spec`` (see cp3rt.artefacts), open its engine and check its role."""
    from cp3rt.artefacts import resolve_model
    from cp3rt.engines import open_engine

    # openvino's bf16 is arithmetic on the fp32 graph.
    graph = "fp32" if cfg.backend == "openvino" and cfg.precision == "bf16" else cfg.precision
    source = resolve_model(
        spec, precision=graph, backend=cfg.backend, cache_root=cfg.cache_dir,
        download=cfg.download,
    )
    # torch-cuda runs the weights at a chosen precision, openvino the graph in a chosen arithmetic;
    # the other backends take it from the graph.
    extra = ({"precision": cfg.precision, "compile": cfg.compile, "cache_dir": cfg.cache_dir}
             if cfg.backend == "torch-cuda" else {"precision": cfg.precision} if cfg.backend == "openvino" else {})
    if cfg.cpu_threads is not None and cfg.backend in CPU_THREADED_BACKENDS:
        extra["threads"] = cfg.cpu_threads
    engine = open_engine(source.path, backend=cfg.backend, **extra)
    try:
        manifest = engine.manifest if engine.manifest is not None else source.manifest
        return net_from_engine(spec, role, engine, manifest=manifest, weights=source.weights,
                               where=os.fspath(source.path))
    except BaseException:
        engine.close()
        raise


def net_from_engine(
    spec: str,
    role: str,
    engine: Engine,
    *,
    manifest: EngineManifest | None = None,
    weights: Path | None = None,
    where: str = "",
) -> Net:
    """Wrap an opened engine; its manifest supplies diameters and channels."""
    from cp3rt.zoo import ZOO

    manifest = manifest if manifest is not None else engine.manifest
    if manifest is None:
        raise IncompatibleEngineError(f"engine for {spec!r} carries no manifest (diameters, channels).")
    if manifest.role != role:
        raise ConfigError(
            f"{spec!r} is a {manifest.role} model but was given as the {role} model; "
            f"{'use --restore for it' if manifest.role == 'restore' else 'use --model for it'}."
        )
    names = " ".join(filter(None, [os.fspath(spec), where, manifest.source_model]))
    return Net(
        spec=spec,
        role=role,
        engine=engine,
        nchan=int(manifest.nchan),
        diam_mean=float(manifest.diam_mean),
        diam_labels=float(manifest.diam_labels),
        # The reference decides by the substring in the model path (§3.11).
        upsamples=role == "restore" and "upsample" in names,
        weights=weights,
        builtin=os.fspath(spec) in ZOO or (weights is None and manifest.source_model in ZOO),
        source_model=manifest.source_model,
    )


def find_size_model(net: Net, *, download: bool) -> SizeModel | None:
    """The style -> diameter model of a segmentation net (§2.4), or None if it has none.

    Zoo models with a size model (also when given as an exported artefact of the zoo model)
    and weight files with ``<file>_size.npy`` beside them have one; if such a file is
    registered but cannot be fetched the error propagates (no silent change of the rule).
    """
    from cp3rt.zoo import ZOO, SizeModel, resolve_size_model

    name = os.fspath(net.spec)
    if name not in ZOO and net.builtin and net.source_model in ZOO:
        name = net.source_model
    if name in ZOO:
        if ZOO.get(name).size_model is None:
            return None
        return SizeModel.from_file(resolve_size_model(name, download=download))
    candidates = [Path(name)] + ([net.weights] if net.weights is not None else [])
    for path in candidates:
        size = path.with_name(path.name + "_size.npy")
        if size.is_file():
            return SizeModel.from_file(size)
    return None


def check_tile_size(nets: Nets, tile_size: int) -> None:
    """Refuse, in one line, a tile side that an engine does not admit: larger than the tiles of
    its manifest's shape range (an ONNX export declares what its dynamic axes were exported for;
    a TensorRT plan, its optimisation profiles) or than a fixed height/width of its input."""
    for net in (nets.segment, nets.restore, nets.restore_chan2):
        if net is None:
            continue
        manifest = getattr(net.engine, "manifest", None)
        limits = [] if manifest is None else list(manifest.shapes.max_hw)
        inputs = getattr(net.engine, "inputs", ())
        if inputs and len(inputs[0].shape) == 4:
            limits += [d for d in inputs[0].shape[2:] if d is not None]
        if limits and tile_size > min(limits):
            plan = manifest is not None and manifest.tensorrt_version is not None
            how = (f" (cp3rt builds TensorRT plans for tiles up to {D.TILE_SIZE})" if plan else
                   f", or re-export it with this cp3rt (cp3rt export {net.source_model or net.spec}), "
                   f"whose exports admit tiles up to {D.MAX_TILE_SIZE}")
            raise ConfigError(
                f"tile_size={tile_size} is larger than the {net.role} engine {os.fspath(net.spec)!r} "
                f"admits (tiles up to {min(limits)} px a side); use a tile size <= {min(limits)}{how}."
            )
