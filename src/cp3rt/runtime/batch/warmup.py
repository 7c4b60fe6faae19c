"""``warmup``: everything a first image would wait for, done ahead (``cp3rt warmup``, for an
install script or a service's start): the models resolved (a weight file exported to ONNX once
into the cache), the engines opened (TensorRT plans built through the plan cache, or loaded from
it), and every numba kernel of the pipeline compiled into numba's on-disk cache.

The kernels are compiled by running what a run runs, not by naming signatures: synthetic images
through the opened Pipeline (2-D at two scales, so the image is resized up, down and by the exact
2x shrink; a volume in 3-D and plane by plane with stitching), the dynamics on flows of known
discs and balls (so seeds, filling and the flow check always have masks to work on), and the
outlines every picture uses. What compiled is read back from numba's cache index
(``batch.kernel_cache``), before and after.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from cp3rt.runtime.batch.kernel_cache import KernelState, cache_location, kernel_states
from cp3rt.runtime.batch.provenance import ModelInfo, describe_nets
from cp3rt.runtime.config import PipelineConfig, RunConfig
from cp3rt.runtime.pipeline import Pipeline

IMAGE_SIDE = 320  # > 256: the one-pass percentile kernel runs from 65536 pixels on
VOLUME_SHAPE = (20, 80, 80)


@dataclasses.dataclass(frozen=True)
class WarmupStep:
    name: str
    seconds: float


@dataclasses.dataclass(frozen=True)
class WarmupReport:
    """What ``warmup`` did: the nets it opened, each step's seconds, and the kernels it compiled
    (``compiled``), found compiled already (``already``) or could not leave on disk (``cold``:
    e.g. a read-only install without ``NUMBA_CACHE_DIR``)."""

    models: tuple[ModelInfo, ...]
    steps: tuple[WarmupStep, ...]
    compiled: tuple[str, ...]
    already: tuple[str, ...]
    cold: tuple[str, ...]
    kernel_cache: str

    @property
    def seconds(self) -> float:
        return sum(s.seconds for s in self.steps)


def warmup(config: PipelineConfig | None = None, *, volumes: bool = True,
           on_step: Callable[[str], None] | None = None) -> WarmupReport:
    """Open ``config``'s nets and compile every kernel (see the module docstring); ``volumes``
    False leaves out the 3-D kernels. ``on_step(name)`` is called as each step starts."""
    config = config or PipelineConfig()
    before = {s.name: s for s in kernel_states(volume=volumes)}
    steps: list[WarmupStep] = []

    @contextmanager
    def step(name: str) -> Iterator[None]:
        if on_step is not None:
            on_step(name)
        t = time.perf_counter()
        yield
        steps.append(WarmupStep(name, time.perf_counter() - t))

    with step("engines (resolve, export, build or load)"):
        pipeline = Pipeline.from_config(config, run=RunConfig())
    with pipeline:
        models = describe_nets(pipeline)
        with step("2-D image (normalise, resize, tiles, blend, dynamics)"):
            _run_images(pipeline)
        with step("2-D dynamics, outlines and matching on known discs"):
            _known_discs()
        if volumes:
            with step("volume (3-D dynamics, plane stitching)"):
                _run_volume(pipeline)
            with step("3-D dynamics on known balls"):
                _known_balls()
    after = kernel_states(volume=volumes)
    return WarmupReport(
        models=models, steps=tuple(steps),
        compiled=tuple(s.name for s in after if s.warm and not _was_warm(before, s)),
        already=tuple(s.name for s in after if _was_warm(before, s)),
        cold=tuple(s.name for s in after if not s.warm), kernel_cache=cache_location(),
    )


def _was_warm(before: dict[str, KernelState], state: KernelState) -> bool:
    return state.name in before and before[state.name].warm


def _discs(shape: tuple[int, ...], n: int, radius: float, seed: int) -> np.ndarray:
    """A label image of ``n`` discs (2-D) or balls (3-D) of ``radius``, well inside ``shape``."""
    rng = np.random.default_rng(seed)
    grid = np.indices(shape, dtype=np.float32)
    labels = np.zeros(shape, np.uint16)
    for k in range(1, n + 1):
        centre = [rng.uniform(radius + 2, s - radius - 2) for s in shape]
        dist2 = sum((g - c) ** 2 for g, c in zip(grid, centre))
        labels[(dist2 <= radius**2) & (labels == 0)] = k
    return labels


def _image_of(labels: np.ndarray, seed: int) -> np.ndarray:
    """Bright smooth objects on a dim noisy background, uint16 like a camera's."""
    rng = np.random.default_rng(seed)
    img = np.where(labels > 0, 3000.0, 400.0) + rng.normal(0, 60, labels.shape)
    return np.clip(img, 0, 65535).astype(np.uint16)


def _run_images(pipeline: Pipeline) -> None:
    labels = _discs((IMAGE_SIDE, IMAGE_SIDE), 24, 12.0, seed=1)
    image = _image_of(labels, seed=2)
    diam = pipeline.segment_net.diam_mean
    for diameter in (0.75 * diam, 2.0 * diam):  # resized up; the exact 2x shrink
        pipeline.run(image, diameter=diameter, channels=(0, 0))


def _run_volume(pipeline: Pipeline) -> None:
    labels = _discs(VOLUME_SHAPE, 6, 6.0, seed=3)
    volume = _image_of(labels, seed=4)
    diam = pipeline.segment_net.diam_mean
    pipeline.run(volume, do_3D=True, diameter=0.75 * diam, channels=(0, 0), z_axis=0)
    pipeline.run(volume, stitch_threshold=0.25, diameter=0.75 * diam, channels=(0, 0), z_axis=0)


def _known_discs() -> None:
    from cp3rt.runtime.dynamics import compute_masks, masks_to_flows
    from cp3rt.runtime.io.render import masks_to_outlines
    from cp3rt.runtime.quality.labels import label_overlap

    labels = _discs((160, 160), 10, 10.0, seed=5)
    flows = (5.0 * masks_to_flows(labels)).astype(np.float32)
    cellprob = np.where(labels > 0, 6.0, -6.0).astype(np.float32)
    for shape in (None, (200, 200)):  # and the nearest resize of masks to the image's size
        masks = compute_masks(flows, cellprob, niter=200, output_shape=shape)
    compute_masks(flows, cellprob, niter=200, interp=False)  # RunConfig(interp=False)
    compute_masks(flows, cellprob, niter=0)  # no steps: the pixels themselves
    masks_to_outlines(masks)  # overlays, --outlines, --rois
    label_overlap(masks, masks)  # cp3rt eval's matching


def _known_balls() -> None:
    from cp3rt.runtime.dynamics import compute_masks_3d

    labels = _discs((24, 48, 48), 4, 7.0, seed=6)
    grid = np.indices(labels.shape, dtype=np.float32)
    flows = np.zeros((3, *labels.shape), np.float32)
    for k in range(1, int(labels.max()) + 1):  # unit vectors to each ball's centre, x5
        inside = labels == k
        centre = [g[inside].mean() for g in grid]
        vec = np.stack([c - g for g, c in zip(grid, centre)])
        norm = np.sqrt((vec**2).sum(0)) + 1e-6
        flows[:, inside] = (5.0 * vec / norm)[:, inside]
    cellprob = np.where(labels > 0, 6.0, -6.0).astype(np.float32)
    for sampling in ("exact", "grid"):
        compute_masks_3d(flows, cellprob, niter=200, sampling=sampling)


def first_use_work(config: PipelineConfig) -> tuple[str, ...]:
    """What opening ``config``'s nets will do here for the first time, in words (``cp3rt run``
    says it before it starts): a weight file exported to ONNX, a TensorRT plan built for this
    GPU. Both are cached afterwards, and ``cp3rt warmup`` does them ahead. Nothing is done here."""
    from cp3rt.artefacts import WEIGHT_BACKENDS, cached_artefact
    from cp3rt.errors import Cp3rtError

    work = []
    for spec in (s for s in (config.segment, config.restore, config.restore_chan2) if s):
        if config.backend in WEIGHT_BACKENDS:
            continue
        try:
            source = cached_artefact(spec, precision=config.precision, cache_root=config.cache_dir)
        except (Cp3rtError, OSError):  # not downloaded yet: the download reports itself
            continue
        if source is None:
            work.append(f"exporting {spec} to ONNX ({config.precision}; first use, cached for later runs; "
                        "`cp3rt warmup` does this ahead)")
        elif config.backend in ("trt", "auto") and _plan_missing(source.path, source.manifest):
            work.append(f"building a TensorRT plan for {spec} (first use on this GPU, minutes; cached for "
                        "later runs; `cp3rt warmup --backend trt` does this ahead)")
    return tuple(work)


def _plan_missing(onnx: Path, manifest: Any) -> bool:
    """True when TensorRT and a GPU are here and the plan cache has no valid plan for ``onnx``."""
    if onnx.suffix.lower() != ".onnx" or manifest is None:
        return False
    from cp3rt.errors import Cp3rtError, IncompatibleEngineError

    try:
        from cp3rt.engines.tensorrt import BuildConfig, PlanCache

        PlanCache().get(onnx, BuildConfig(precision=manifest.precision), build=False)
    except IncompatibleEngineError:
        return True
    except (Cp3rtError, ImportError, OSError):
        return False  # no TensorRT or no GPU here: auto takes onnxruntime, trt refuses in one line
    return False
