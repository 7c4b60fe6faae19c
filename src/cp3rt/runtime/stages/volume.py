"""One volume through the stages, the 3-D counterpart of ``stages.image``: ``do_3D`` (orthogonal
views + 3-D dynamics, §3.9/§4.9) or ``stitch_threshold > 0`` (2-D masks per plane stitched by
IoU, §3.10/§4.8).

The Result carries 3-D arrays: masks (Z, Y, X); dP (3, Z, Y, X) with do_3D, (2, Z, Y, X) when
stitching; cellprob (Z, Y, X); restored (Z', C, Y, X) or None. ``style`` is the reference's:
with do_3D the per-plane styles of the last (ZY) view, when stitching one style per plane.
Without a diameter the model's diam_mean / diam_labels rule is used (no size-model estimate:
the reference's size model does not run on volumes either).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from cp3rt.errors import InputError
from cp3rt.runtime.config import RunConfig
from cp3rt.runtime.dynamics import compute_masks_3d, compute_masks_with, fill_holes_3d, niter_for
from cp3rt.runtime.dynamics._labels import label_dtype
from cp3rt.runtime.prep.axes import to_cyx
from cp3rt.runtime.prep.normalize import check_finite, normalize_image
from cp3rt.runtime.result import Result, StageTimer
from cp3rt.runtime.stages.after_restore import channels_after_restore, normalize_after_restore
from cp3rt.runtime.stages.restore_volume import restore_volume
from cp3rt.runtime.stages.segment import rescale_for, run_segment_net
from cp3rt.runtime.stages.segment_volume import run_net_3d
from cp3rt.runtime.stages.stitch_planes import stitch3d

if TYPE_CHECKING:  # pragma: no cover
    from cp3rt.runtime.nets import Nets

Progress = Callable[[int, int], None]


def _to_zcyx(raw: np.ndarray, cfg: RunConfig, nchan: int | None) -> np.ndarray:
    vol = to_cyx(raw, channels=cfg.channels, channel_axis=cfg.channel_axis, z_axis=cfg.z_axis,
                 nchan=nchan, do_3D=True)
    if vol.ndim != 4:
        raise InputError(f"a volume (Z, Y, X[, C]) is needed for do_3D/stitching; got shape {raw.shape}.")
    check_finite(vol)
    return vol


def run_volume(nets: Nets, raw: np.ndarray, cfg: RunConfig, timer: StageTimer, progress: Progress | None) -> Result:
    seg = nets.segment
    with timer.stage("normalize"):
        vol = _to_zcyx(raw, cfg, None if nets.restore is not None else seg.nchan)
    lz, _, ly, lx = vol.shape
    restored, norm, anisotropy = None, cfg.normalize, cfg.anisotropy
    if nets.restore is not None:
        with timer.stage("restore"):
            restored = restore_volume(vol, nets.restore, cfg, progress=progress)
        vol = to_cyx(restored, channels=channels_after_restore(cfg.channels), channel_axis=1,
                     z_axis=0, nchan=seg.nchan, do_3D=True)
        norm = normalize_after_restore(cfg)
        if restored.shape[0] != lz:  # axial restoration already made the volume isotropic
            anisotropy = None

    with timer.stage("normalize"):
        if norm is not None:
            # do_3D always normalises over the whole stack; stitching follows norm3D (§3.3)
            vol = normalize_image(vol, dataclasses.replace(norm, norm3D=True) if cfg.do_3D else norm)
    rescale = rescale_for(cfg.diameter or None, seg)
    niter = niter_for(rescale, cfg.resample, cfg.niter)
    if cfg.do_3D:
        masks, dP, cellprob, style = _do_3d(vol, seg, rescale, anisotropy, niter, cfg, (lz, ly, lx),
                                            timer, progress)
    else:
        masks, dP, cellprob, style = _stitched(vol, seg, rescale, niter, cfg, timer, progress)
    return Result(
        masks=masks, dP=dP, cellprob=cellprob, style=style, restored=restored,
        diameter=float(seg.diam_mean / rescale), rescale=float(rescale), niter=int(niter),
        timings=timer.seconds(),
    )


def _do_3d(vol, seg, rescale, anisotropy, niter, cfg: RunConfig, shape, timer: StageTimer, progress):
    with timer.stage("segment"):
        out = run_net_3d(vol, seg.infer_fn(), rescale=rescale, anisotropy=anisotropy, resample=cfg.resample,
                         tiles=cfg.tiles, flow3D_smooth=cfg.flow3D_smooth, progress=progress,
                         reference_bugs=cfg.reference_bugs)
    with timer.stage("dynamics"):
        masks = compute_masks_3d(
            out.dP, out.cellprob, niter=niter, cellprob_threshold=cfg.cellprob_threshold,
            min_size=cfg.min_size, max_size_fraction=cfg.max_size_fraction, interp=cfg.interp,
            output_shape=shape, reference_bugs=cfg.reference_bugs, sampling=cfg.sampling,
        )
    return masks, out.dP, out.cellprob, out.style


def _stitched(vol, seg, rescale, niter, cfg: RunConfig, timer: StageTimer, progress):
    lz, _, ly, lx = vol.shape
    # min_size is applied once, to the stitched volume (§3.10)
    per_plane = cfg.dynamics(niter, (ly, lx), min_size=-1 if lz > 1 else cfg.min_size)
    planes, dPs, probs, styles = [], [], [], []
    for z in range(lz):
        with timer.stage("segment"):
            out = run_segment_net(vol[z], seg, rescale=rescale, resample=cfg.resample, tiles=cfg.tiles,
                                  progress=progress)
        with timer.stage("dynamics"):
            planes.append(compute_masks_with(out.dP, out.cellprob, per_plane))
        dPs.append(out.dP)
        probs.append(out.cellprob)
        styles.append(out.style)
    with timer.stage("dynamics"):
        masks = np.stack(planes)
        if lz > 1:
            masks = stitch3d(masks, cfg.stitch_threshold, reference_bugs=cfg.reference_bugs)
            masks = fill_holes_3d(masks.astype(np.int32), cfg.min_size, cfg.reference_bugs)
        masks = masks.astype(label_dtype(int(masks.max()) if masks.size else 0), copy=False)
    return masks, np.stack(dPs, axis=1), np.stack(probs), np.stack(styles)
