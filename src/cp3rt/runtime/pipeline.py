"""Pipeline: optional restoration -> segmentation -> dynamics, for one 2-D image at a time.

Engines are opened once per Pipeline and reused for every image; close it (or use it as a
context manager) to free them. The library never prints: progress goes through a callback
``progress(done_tiles, total_tiles)``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from cp3rt import defaults as D
from cp3rt.errors import ConfigError, DownloadError, InputError, ModelNotFoundError
from cp3rt.runtime.config import PipelineConfig, RunConfig
from cp3rt.runtime.dynamics.threads import cap_kernel_threads
from cp3rt.runtime.nets import Net, Nets, check_tile_size, find_size_model, net_from_engine, open_net
from cp3rt.runtime.result import Result, StageTimer
from cp3rt.runtime.stages.image import run_image
from cp3rt.runtime.stages.image_device import run_image_resident
from cp3rt.runtime.stages.volume import run_volume

if TYPE_CHECKING:  # pragma: no cover
    from cp3rt.engines.base import Engine

__all__ = ["Pipeline", "PipelineConfig", "Result", "RunConfig"]

Progress = Callable[[int, int], None]


class Pipeline:
    """Restore (optional) and segment images with Cellpose v3 nets outside PyTorch.

    ``Pipeline(segment="cyto3", restore="denoise_cyto3", backend="auto", diameter=25)``:
    model specs are zoo names, weight files or exported ``.onnx`` artefacts; keyword arguments
    that are :class:`RunConfig` fields set the defaults of every :meth:`run`.
    """

    def __init__(
        self,
        segment: str | os.PathLike[str] = D.SEGMENT_MODEL,
        restore: str | os.PathLike[str] | None = None,
        *,
        restore_chan2: str | os.PathLike[str] | None = None,
        backend: str = D.BACKEND,
        precision: str = D.PRECISION,
        cache_dir: str | os.PathLike[str] | None = None,
        download: bool = True,
        compile: bool = False,
        cpu_threads: int | None = None,
        run: RunConfig | None = None,
        **run_settings: Any,
    ) -> None:
        config = PipelineConfig(
            segment=segment, restore=restore, restore_chan2=restore_chan2, backend=backend,
            precision=precision, cache_dir=Path(cache_dir) if cache_dir is not None else None,
            download=download, compile=compile, cpu_threads=cpu_threads,
        )
        self._init(config, (run or RunConfig()).replace(**run_settings))

    @classmethod
    def from_config(cls, config: PipelineConfig, run: RunConfig | None = None) -> Pipeline:
        self = cls.__new__(cls)
        self._init(config, run or RunConfig())
        return self

    @classmethod
    def from_engines(
        cls,
        segment: Engine,
        restore: Engine | None = None,
        *,
        restore_chan2: Engine | None = None,
        run: RunConfig | None = None,
        cpu_threads: int | None = None,
    ) -> Pipeline:
        """A Pipeline around engines opened elsewhere (any object with the Engine protocol and
        a manifest). The Pipeline takes ownership: ``close()`` closes them. ``cpu_threads``
        caps the dynamics' numba threads (the engines' own threads were set by their opener)."""
        self = cls.__new__(cls)
        self._setup(PipelineConfig(segment=_label(segment), restore=_label(restore) if restore else None,
                                   restore_chan2=_label(restore_chan2) if restore_chan2 else None,
                                   cpu_threads=cpu_threads),
                    run or RunConfig())
        for attr, engine, role in (("segment_net", segment, "segment"), ("restore_net", restore, "restore"),
                                   ("restore_chan2_net", restore_chan2, "restore")):
            net = net_from_engine(_label(engine), role, engine) if engine is not None else None
            if net is not None:
                self._nets.append(net)
            setattr(self, attr, net)
        return self

    def _setup(self, config: PipelineConfig, run: RunConfig) -> None:
        self.config = config
        self.run_config = run
        self._nets: list[Net] = []
        self._size_model: Any = None
        self._size_model_loaded = False

    def _init(self, config: PipelineConfig, run: RunConfig) -> None:
        if run.gpu_resident and config.backend not in RESIDENT_BACKENDS:
            # Refused before any engine opens or any file is read, not once per image.
            raise ConfigError(
                f"gpu_resident=True keeps tensors on the engines' device, which backend "
                f"{config.backend!r} cannot; use --backend torch-cuda (or torch, on the CPU)."
            )
        self._setup(config, run)
        try:
            self.segment_net = self._open(config.segment, "segment")
            self.restore_net = self._open(config.restore, "restore") if config.restore else None
            self.restore_chan2_net = (
                self._open(config.restore_chan2, "restore") if config.restore_chan2 else None
            )
            check_tile_size(self.nets(), run.tile_size)  # refused before any file is read
        except BaseException:
            self.close()
            raise

    def _open(self, spec: str, role: str) -> Net:
        net = open_net(spec, role, self.config)
        self._nets.append(net)
        return net

    # ---- lifetime ------------------------------------------------------------------------
    def close(self) -> None:
        nets, self._nets = self._nets, []
        for net in nets:
            net.close()

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ---- running -------------------------------------------------------------------------
    def run(
        self,
        image: np.ndarray | str | os.PathLike[str],
        *,
        progress: Progress | None = None,
        run: RunConfig | None = None,
        **overrides: Any,
    ) -> Result:
        """Segment one 2-D image (array or file path), or a volume with a volume run config
        (do_3D / stitch_threshold); ``overrides`` are RunConfig fields."""
        if not self._nets:
            raise InputError("this Pipeline is closed; create a new one.")
        cfg = (run or self.run_config).replace(**overrides) if overrides else (run or self.run_config)
        timer = StageTimer()
        with timer.stage("read"):
            raw = _load(image)
        if isinstance(image, (str, os.PathLike)):
            cfg = _file_axes(image, raw, cfg)
        cap_kernel_threads(self.config.cpu_threads)
        return run_stages(self.nets(), raw, cfg, timer, progress)

    def nets(self) -> Nets:
        """The opened nets, as the stages take them."""
        return Nets(self.segment_net, self.restore_net, self.restore_chan2_net, self.size_model)

    def size_model(self) -> Any:
        """The segmentation model's size model (loaded on first use), or None."""
        if not self._size_model_loaded:
            try:
                self._size_model = find_size_model(self.segment_net, download=self.config.download)
            except (DownloadError, ModelNotFoundError) as exc:
                raise type(exc)(
                    f"{str(exc).rstrip('.')}; the diameter estimate needs it - give the object "
                    "diameter instead (--diameter D, or diameter=D)."
                ) from exc
            self._size_model_loaded = True
        return self._size_model


RESIDENT_BACKENDS = ("torch-cuda", "torch")  # engines with infer_device


class ImageRunner(Protocol):
    """What runs one image for the batch runners: a Pipeline, or a view of one whose engine
    calls share batches with other images (``batch.stream.StreamingView``)."""

    config: PipelineConfig
    restore_net: Net | None

    def run(self, image: np.ndarray, *, progress: Progress | None = None, run: RunConfig | None = None) -> Result: ...


def run_stages(nets: Nets, raw: np.ndarray, cfg: RunConfig, timer: StageTimer | None = None,
               progress: Progress | None = None) -> Result:
    """One image through the stages: the GPU-resident 2-D path when asked for, the 3-D path for
    a volume run config, else the 2-D one; each stage's seconds go to ``timer`` (a new one if None)."""
    timer = timer or StageTimer()
    check_tile_size(nets, cfg.tile_size)
    if cfg.gpu_resident:
        return run_image_resident(nets, raw, cfg, timer)
    stage = run_volume if cfg.is_volume else run_image
    return stage(nets, raw, cfg, timer, progress)


def _label(engine: Any) -> str:
    manifest = getattr(engine, "manifest", None)
    return manifest.source_model if manifest is not None else type(engine).__name__


def _file_axes(path: str | os.PathLike[str], raw: np.ndarray, cfg: RunConfig) -> RunConfig:
    """A file's channels / Z as the file declares them (``prep.axes.plan_axes``); planes it does
    not declare as channels are refused, and so are T frames (one result per call)."""
    from cp3rt.runtime.io.read import read_axes
    from cp3rt.runtime.prep.declared_axes import plan_axes

    plan = plan_axes(raw.shape, read_axes(path, raw.shape), volume=cfg.is_volume,
                     channel_axis=cfg.channel_axis, z_axis=cfg.z_axis, source=os.fspath(path),
                     picked_channels=bool(cfg.channels and cfg.channels[0]))
    if plan.frames is not None:
        raise InputError(
            f"{os.fspath(path)} has {raw.shape[plan.frames]} T frames; Pipeline.run segments one "
            "image: use cp3rt.runtime.run_inputs (or cp3rt run) for a T-stack of labels, or pass "
            "one frame as an array.")
    return cfg.replace(channel_axis=plan.channel_axis, z_axis=plan.z_axis)


def _load(image: np.ndarray | str | os.PathLike[str]) -> np.ndarray:
    if isinstance(image, (str, os.PathLike)):
        from cp3rt.runtime.io import read_image

        return read_image(image)
    if not isinstance(image, np.ndarray):
        try:
            image = np.asarray(image)
        except Exception as exc:  # noqa: BLE001 - anything unconvertible is a user input error
            raise InputError(f"image of type {type(image).__name__} is not an array: {exc}.") from exc
    return image
