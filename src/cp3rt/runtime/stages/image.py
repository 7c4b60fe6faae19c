"""One 2-D image through the stages: axes -> (restore) -> normalise -> (size estimate) -> net -> dynamics.

``run_image`` is the body of ``Pipeline.run`` for a 2-D run config; ``stages.volume.run_volume``
is its 3-D counterpart.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from cp3rt.errors import InputError
from cp3rt.runtime.config import RunConfig
from cp3rt.runtime.dynamics import compute_masks_with, niter_for
from cp3rt.runtime.prep.axes import to_cyx
from cp3rt.runtime.prep.normalize import check_finite, normalize_image
from cp3rt.runtime.result import Result, StageTimer
from cp3rt.runtime.stages.after_restore import channels_after_restore, normalize_after_restore
from cp3rt.runtime.stages.restore import restore_image
from cp3rt.runtime.stages.segment import NetOutput, rescale_for, run_segment_net

if TYPE_CHECKING:  # pragma: no cover
    from cp3rt.runtime.nets import Net, Nets

Progress = Callable[[int, int], None]


def run_image(nets: Nets, raw: np.ndarray, cfg: RunConfig, timer: StageTimer, progress: Progress | None) -> Result:
    seg = nets.segment
    with timer.stage("normalize"):
        # The restoration keeps every channel (nchan None), the segmentation net takes nchan (§3.2).
        image = _to_2d(raw, cfg, None if nets.restore is not None else seg.nchan)
    diameter = cfg.diameter if cfg.diameter else None
    restored = None
    seg_norm = cfg.normalize
    if nets.restore is not None:
        with timer.stage("restore"):
            rest = restore_image(image, nets.restore, cfg, diameter=diameter, chan2_net=nets.restore_chan2,
                                 progress=progress)
        restored = rest.image
        with timer.stage("normalize"):
            image = to_cyx(restored, channels=channels_after_restore(cfg.channels), channel_axis=0,
                           nchan=seg.nchan)
            seg_norm = normalize_after_restore(cfg)
        if rest.ratio > 1.0:  # upsampled: objects now have the restore model's diameter (§3.12)
            diameter = nets.restore.diam_mean

    with timer.stage("normalize"):
        x = normalize_image(image, seg_norm) if seg_norm is not None else image
    shape = tuple(image.shape[-2:])
    del image  # the un-normalised copy is not needed again: one image less in memory per worker
    if diameter is None and cfg.estimate_diameter and nets.size_model() is not None:
        with timer.stage("segment"):
            diameter = _estimate_diameter(x, seg, nets.size_model(), cfg)
    rescale = rescale_for(diameter, seg)
    with timer.stage("segment"):
        out = _net(x, seg, rescale, cfg, cfg.resample, progress)
    with timer.stage("dynamics"):
        niter = niter_for(rescale, cfg.resample, cfg.niter)
        masks = compute_masks_with(out.dP, out.cellprob, cfg.dynamics(niter, shape))
    return Result(
        masks=masks, dP=out.dP, cellprob=out.cellprob, style=out.style, restored=restored,
        diameter=float(seg.diam_mean / rescale), rescale=float(rescale), niter=int(niter),
        timings=timer.seconds(),
    )


def _to_2d(raw: np.ndarray, cfg: RunConfig, nchan: int | None) -> np.ndarray:
    image = to_cyx(raw, channels=cfg.channels, channel_axis=cfg.channel_axis, z_axis=cfg.z_axis, nchan=nchan)
    if image.ndim != 3:
        raise InputError(
            f"the pipeline segments 2-D images, but this input is a stack of shape {raw.shape}; "
            "pass one plane at a time (or set channel_axis/z_axis)."
        )
    check_finite(image)  # also when normalisation is off: NaN would poison tiles and dynamics
    return image


def _net(x: np.ndarray, seg: Net, rescale: float, cfg: RunConfig, resample: bool,
         progress: Progress | None) -> NetOutput:
    return run_segment_net(x, seg, rescale=rescale, resample=resample, tiles=cfg.tiles, progress=progress)


def _estimate_diameter(x: np.ndarray, seg: Net, size_model, cfg: RunConfig) -> float:
    """§2.4 two-step estimate: style -> d_style, segment at that scale, median mask diameter."""
    from cp3rt.runtime.quality.metrics import diameters

    style_out = _net(x, seg, rescale_for(None, seg), cfg, False, None)
    d_style = float(size_model.estimate_diameter(style_out.style))
    # The reference's second pass uses default thresholds, resample=False and interp=False.
    probe = dataclasses.replace(
        RunConfig(), resample=False, interp=False, reference_bugs=cfg.reference_bugs,
        tile_overlap=cfg.tile_overlap, batch_size=cfg.batch_size,
    )
    rescale = seg.diam_mean / d_style
    out = _net(x, seg, rescale, probe, False, None)
    niter = niter_for(rescale, False)
    diam = diameters(compute_masks_with(out.dP, out.cellprob, probe.dynamics(niter, tuple(x.shape[-2:]))))
    return float(diam) if diam > 0 and np.isfinite(diam) else float(seg.diam_mean)
