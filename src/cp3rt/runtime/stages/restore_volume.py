"""Restoration of volumes before 3-D segmentation (§3.11 on stacks, plus anisotropic models).

* Ordinary restoration models (denoise/deblur/oneclick) restore every YX plane, after one
  percentile normalisation over the whole stack per channel - what the reference's
  ``DenoiseModel.eval`` does with a stack.
* ``aniso_*`` models were trained to undo blur and undersampling along image *rows*. With
  ``anisotropy > 1`` cp3rt applies them where that degradation is in a volume - the axial
  planes: the stack is first resized bilinearly in Z by ``anisotropy``, then every ZX plane
  and every ZY plane (Z as rows) is restored and the two restored volumes are averaged. The
  volume that comes out is isotropic (Z' = int(Z * anisotropy) planes) and is segmented with
  anisotropy 1. This follows the Cellpose3 paper's description of anisotropic restoration;
  cellpose 3.1.1.2 itself has no such code path (its ``DenoiseModel.eval`` restores the YX
  planes of a stack whatever the model), so there is no oracle to compare against.

Upsampling models are refused for volumes (the reference would enlarge each YX plane only,
leaving Z behind).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from cp3rt import defaults as D
from cp3rt.errors import ConfigError
from cp3rt.runtime.config import RunConfig
from cp3rt.runtime.nets import Net
from cp3rt.runtime.prep.diameter_scale import scaled_size
from cp3rt.runtime.prep.normalize import normalize_image
from cp3rt.runtime.prep.resize import resize_bilinear, resize_volume
from cp3rt.runtime.stages.restore import prune_channels, restore_rescale
from cp3rt.runtime.tiles.infer import run_tiled_stack
from cp3rt.runtime.tiles.options import TileOptions

Progress = Callable[[int, int], None]


def is_aniso(net: Net) -> bool:
    return "aniso" in " ".join(filter(None, [str(net.spec), net.source_model]))


def _restore_planes(planes: np.ndarray, net: Net, rescale: float, tiles: TileOptions,
                    progress: Progress | None) -> np.ndarray:
    """(P, H, W) normalised planes -> restored (P, H, W) through the 1-output net (§3.11 _eval)."""
    h, w = planes.shape[1:]
    x = planes[:, np.newaxis]
    if rescale != 1.0:
        size = scaled_size((h, w), rescale)
        x = np.stack([resize_bilinear(p, size) for p in x])
    y, _ = run_tiled_stack(x, net.infer_fn(), nout=1, tiles=tiles, progress=progress)
    if y.shape[-2:] != (h, w):
        y = np.stack([resize_bilinear(p, (h, w)) for p in y])
    return y[:, 0]


def restore_volume(volume: np.ndarray, net: Net, cfg: RunConfig, *, progress: Progress | None = None) -> np.ndarray:
    """Raw (Z, C, Y, X) float32 -> restored (Z', C', Y, X) float32 in normalised units, with the
    run's diameter, anisotropy, normalisation, channels and tiles (never augmented)."""
    if net.upsamples:
        raise ConfigError(
            f"restore model {net.spec!r} is an upsampling model; volumes (do_3D / stitching) "
            "take denoise, deblur, oneclick or aniso models."
        )
    rescale = restore_rescale(net, cfg.diameter or None)
    vol = prune_channels(np.asarray(volume, np.float32), cfg.channels, axis=1)
    if cfg.normalize is not None:
        # one percentile pair per channel over the whole stack (norm3D), as the reference
        vol = normalize_image(vol, dataclasses.replace(cfg.normalize, norm3D=True))
    anisotropy = cfg.anisotropy
    tiles = dataclasses.replace(cfg.tiles, augment=False)
    axial = is_aniso(net) and anisotropy is not None and anisotropy > 1.0
    if axial:
        lz, _, ly, lx = vol.shape
        vol = resize_volume(vol, (int(lz * anisotropy), ly, lx))
    out = np.empty(vol.shape, np.float32)
    for c in range(vol.shape[1]):
        rescale_c = rescale * D.NUCLEUS_CHANNEL_RESCALE if c == 1 else rescale
        chan = vol[:, c]
        if axial:
            zx = _restore_planes(np.ascontiguousarray(chan.transpose(1, 0, 2)), net, rescale_c,
                                 tiles, progress)  # (Y, Z', X)
            zy = _restore_planes(np.ascontiguousarray(chan.transpose(2, 0, 1)), net, rescale_c,
                                 tiles, progress)  # (X, Z', Y)
            out[:, c] = 0.5 * (zx.transpose(1, 0, 2) + zy.transpose(1, 2, 0))
        else:
            out[:, c] = _restore_planes(chan, net, rescale_c, tiles, progress)
    return out
