"""One image file through the pipeline with its axes as the file declares them
(``prep.axes.plan_axes``): declared channels stay channels, a declared Z is the volume's,
each T frame is run on its own and the labels come back as a T-stack (``TYX`` / ``TZYX``)."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from cp3rt.runtime.config import RunConfig
from cp3rt.runtime.result import Result


@dataclasses.dataclass(frozen=True, eq=False)
class FramesResult(Result):
    """The results of every T frame stacked on a first axis; ``axes`` of ``masks``."""

    axes: str = "TYX"

    @functools.cached_property
    def n_objects(self) -> int:  # labels restart in each frame: count per frame
        return int(sum(np.count_nonzero(np.bincount(m.ravel())[1:]) for m in self.masks))


def run_file(pipeline: Any, image: Path, raw: np.ndarray, run: RunConfig,
             progress: Callable[[int, int], None] | None = None) -> Result:
    """``pipeline.run`` on ``raw`` (read from ``image``) as its axes say; a :class:`FramesResult`
    for a file with T frames. A stack that would need planes merged raises InputError."""
    from cp3rt.runtime.io.read import read_axes
    from cp3rt.runtime.prep.declared_axes import plan_axes

    plan = plan_axes(raw.shape, read_axes(image, raw.shape), volume=run.is_volume,
                     channel_axis=run.channel_axis, z_axis=run.z_axis, source=str(image),
                     picked_channels=bool(run.channels and run.channels[0]))
    cfg = run.replace(channel_axis=plan.channel_axis, z_axis=plan.z_axis)
    if plan.frames is None:
        return pipeline.run(raw, run=cfg, progress=progress)
    parts = [pipeline.run(np.take(raw, t, axis=plan.frames), run=cfg, progress=progress)
             for t in range(raw.shape[plan.frames])]
    return stack_frames(parts)


def stack_frames(parts: list[Result]) -> FramesResult:
    """Per-frame results -> one, every array stacked on a new first (T) axis."""
    first = parts[0]
    masks = np.stack([p.masks for p in parts])
    if masks.dtype != np.uint32 and any(p.masks.dtype != masks.dtype for p in parts):
        masks = masks.astype(np.uint32)
    timings: dict[str, float] = {}
    for p in parts:
        for k, v in p.timings.items():
            timings[k] = timings.get(k, 0.0) + v
    restored = None if first.restored is None else np.stack([p.restored for p in parts])
    return FramesResult(
        masks=masks, dP=np.stack([p.dP for p in parts]), cellprob=np.stack([p.cellprob for p in parts]),
        style=np.stack([p.style for p in parts]), restored=restored,
        diameter=float(np.mean([p.diameter for p in parts])), rescale=first.rescale, niter=first.niter,
        timings=timings, axes="T" + ("ZYX" if first.masks.ndim == 3 else "YX"),
    )
