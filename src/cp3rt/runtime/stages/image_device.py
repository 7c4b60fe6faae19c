"""One 2-D image, (restore ->) segment, with every stage between upload and masks on the GPU.

The device counterpart of ``stages.image.run_image`` for engines with ``infer_device``
(torch-CUDA; the torch engine on the CPU is the stand-in CI tests it with). host: axes ->
(C, Y, X) float32 and one upload; device: percentile normalisation, resize, tiles, net, blend,
resize back and the dynamics (numba-cuda); host: the label image, plus flows and style for the
Result (a few MB). On a CPU tensor the dynamics run on the host.

Exactness against the host path: normalisation, tiles and blend are bit-identical, the nets see
the same tiles, the dynamics are element for element the CPU's; only the bilinear resize rounds
differently (``prep.resize_device.RESIZE_TOLERANCE``), so at rescale 1 the masks are identical.

Covered: whole-image percentile normalisation, no augment, a given diameter or the model's own
rule (no size model), restoration of one channel by a non-upsampling model. Anything else is
refused with the reason (``check_device_path``), and the Pipeline then runs the host path.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from cp3rt.errors import ConfigError
from cp3rt.runtime.config import RunConfig
from cp3rt.runtime.dynamics import DynamicsConfig, niter_for
from cp3rt.runtime.nets import Net, Nets
from cp3rt.runtime.prep.axes import to_cyx
from cp3rt.runtime.prep.diameter_scale import scaled_size
from cp3rt.runtime.prep.normalize import NormalizeConfig, check_finite
from cp3rt.runtime.prep.normalize_device import normalize_on_device
from cp3rt.runtime.prep.resize_device import resize_on_device
from cp3rt.runtime.result import Result, StageTimer
from cp3rt.runtime.stages.restore import prune_channels, restore_rescale
from cp3rt.runtime.stages.segment import rescale_for
from cp3rt.runtime.tiles.on_device import net_over_tiles


@dataclasses.dataclass(frozen=True)
class DeviceOutput:
    """What one image gives on the device path (host arrays)."""

    masks: np.ndarray
    dP: np.ndarray
    cellprob: np.ndarray
    style: np.ndarray
    rescale: float
    niter: float
    restored: np.ndarray | None


def check_device_path(cfg: RunConfig, seg: Net, restore: Net | None) -> None:
    """Refuse what the device path does not do, naming the setting; ``None`` when it can run."""
    for net in (seg, restore):
        if net is not None and not net.engine.device_resident:
            raise ConfigError(f"the GPU-resident path needs engines that keep tensors on the device "
                              f"(backend torch-cuda); {net.spec!r} runs on {net.engine.backend}.")
    norm = cfg.normalize
    if norm is not None and norm != NormalizeConfig(percentiles=norm.percentiles):
        raise ConfigError("the GPU-resident path normalises with whole-image percentiles only; "
                          "lowhigh, invert, tiled or filtered normalisation run on the host path.")
    if cfg.augment:
        raise ConfigError("the GPU-resident path does not augment tiles; augment runs on the host path.")
    if not cfg.diameter and cfg.estimate_diameter:
        raise ConfigError("the GPU-resident path does not estimate diameters; give the diameter "
                          "(or estimate_diameter=False for the model's own rule).")
    if restore is not None and restore.upsamples:
        raise ConfigError("the GPU-resident path does not run upsampling restoration models; they run on the host path.")


def run_image_on_device(raw: np.ndarray, seg: Net, cfg: RunConfig, *, restore: Net | None = None) -> DeviceOutput:
    """Masks (uint16/uint32) of ``raw`` with ``seg`` (after ``restore``) on ``seg.engine.device``."""
    import torch

    check_device_path(cfg, seg, restore)
    diameter = cfg.diameter if cfg.diameter else None
    image = to_cyx(raw, channels=cfg.channels, channel_axis=cfg.channel_axis, z_axis=cfg.z_axis,
                   nchan=None if restore is not None else seg.nchan)
    check_finite(image)
    x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).to(seg.engine.device)  # the one upload
    restored = None
    if restore is not None:
        x = _restore_one_channel(x, restore, diameter, cfg)
        restored = x.cpu().numpy()
        if seg.nchan > 1:  # restored channel 0 = cytoplasm, no nucleus channel (§3.12)
            x = torch.cat([x, x.new_zeros((seg.nchan - 1, *x.shape[1:]))])
        x = normalize_on_device(x)  # the restored image is re-normalised with defaults (§3.12)
    elif cfg.normalize is not None:
        x = normalize_on_device(x, *cfg.normalize.percentiles)
    rescale = rescale_for(diameter, seg)
    ly, lx = x.shape[-2:]
    xs = resize_on_device(x, scaled_size((ly, lx), rescale)) if rescale != 1.0 else x
    y, style = net_over_tiles(xs, seg.engine, "flows", cfg.tiles)
    if cfg.resample and tuple(y.shape[-2:]) != (ly, lx):
        y = resize_on_device(y, (ly, lx))
    dP, cellprob = y[:2].contiguous(), y[2].contiguous()
    niter = niter_for(rescale, cfg.resample, cfg.niter)
    masks = _masks(dP, cellprob, cfg.dynamics(niter, tuple(image.shape[-2:])))
    return DeviceOutput(masks=masks, dP=dP.cpu().numpy(), cellprob=cellprob.cpu().numpy(),
                        style=np.asarray(style, dtype=np.float32), rescale=float(rescale), niter=float(niter),
                        restored=restored)


def run_image_resident(nets: Nets, raw: np.ndarray, cfg: RunConfig, timer: StageTimer) -> Result:
    """``stages.image.run_image``'s contract on the device path. The device queues its stages
    without waiting, so the whole image is timed as "segment" (the dynamics as "dynamics" would
    need a synchronisation in between)."""
    if cfg.is_volume:
        raise ConfigError("the GPU-resident path segments 2-D images; volumes run on the host path.")
    if nets.restore_chan2 is not None:
        raise ConfigError("the GPU-resident path restores one channel; restore_chan2 runs on the host path.")
    with timer.stage("segment"):
        out = run_image_on_device(raw, nets.segment, cfg, restore=nets.restore)
    return Result(masks=out.masks, dP=out.dP, cellprob=out.cellprob, style=out.style, restored=out.restored,
                  diameter=float(nets.segment.diam_mean / out.rescale), rescale=out.rescale,
                  niter=int(out.niter), timings=timer.seconds())


def _masks(dP: Any, cellprob: Any, config: DynamicsConfig) -> np.ndarray:
    if dP.is_cuda:
        import torch

        from cp3rt.runtime.dynamics.cuda import compute_masks_cuda

        return compute_masks_cuda(dP, cellprob, config, stream=torch.cuda.current_stream(dP.device))
    from cp3rt.runtime.dynamics.api import compute_masks_with

    return compute_masks_with(dP.numpy(), cellprob.numpy(), config)


def _restore_one_channel(x: Any, restore: Net, diameter: float | None, cfg: RunConfig) -> Any:
    """§3.11 for one channel: normalise, resize to the model's scale, tiles, resize back."""
    x = prune_channels(x, cfg.channels)  # the host's rule: channel 1 alone when the last is flat or not asked for
    if x.shape[0] > 1:
        raise ConfigError("the GPU-resident path restores one channel; two-channel restoration runs on the host path.")
    ly, lx = x.shape[-2:]
    if cfg.normalize is not None:
        x = normalize_on_device(x, *cfg.normalize.percentiles)
    rescale = restore_rescale(restore, diameter)
    xs = resize_on_device(x, scaled_size((ly, lx), rescale)) if rescale != 1.0 else x
    y, _ = net_over_tiles(xs, restore.engine, "restored", cfg.tiles)
    return resize_on_device(y, (ly, lx)) if tuple(y.shape[-2:]) != (ly, lx) else y
