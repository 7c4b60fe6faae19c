"""Restoration stage (§3.11): per-channel normalise -> resize -> tiled 1-output net -> resize back.

Fixed by default (docs/deviations.md), reproduced with ``reference_bugs=True``:
* upsampling models: the image is enlarged once to the model's scale; the reference resizes it
  a second time by the same factor before the net (§3.11 step 3);
* a second-channel (nuclei) net, when given, restores channel 2; the reference loads it and
  never applies it (§3.11 step 5).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from cp3rt import defaults as D
from cp3rt.runtime.config import RunConfig
from cp3rt.runtime.nets import Net
from cp3rt.runtime.prep.diameter_scale import check_diameter, scaled_size
from cp3rt.runtime.prep.normalize import NormalizeConfig, normalize_image
from cp3rt.runtime.prep.resize import resize_bilinear
from cp3rt.runtime.tiles.infer import run_tiled
from cp3rt.runtime.tiles.options import TileOptions

Progress = Callable[[int, int], None]
MIN_UPSAMPLE_DIAMETER = 3.0  # below this the reference does not pre-upsample (§3.11 step 2)


@dataclasses.dataclass(frozen=True)
class Restored:
    image: np.ndarray   # (C', Y', X') float32, normalised units, unclipped
    ratio: float        # pre-upsampling factor (1.0 unless an upsampling model enlarged the image)


def restore_image(
    image: np.ndarray,
    net: Net,
    cfg: RunConfig,
    *,
    diameter: float | None,
    chan2_net: Net | None = None,
    progress: Progress | None = None,
) -> Restored:
    """Restore a raw (C, Y, X) float32 image channel by channel (§3.11) with the run's
    normalisation, channels, tiles (never augmented) and ``reference_bugs``."""
    diam_mean = net.diam_mean
    if diameter is not None:  # refused here, before the restoration net runs at that scale
        check_diameter(diameter, diam_mean=diam_mean)
    ratio = 1.0
    if net.upsamples and diameter is not None and MIN_UPSAMPLE_DIAMETER <= diameter < diam_mean:
        ratio = diam_mean / diameter
        image = resize_bilinear(image, scaled_size(image.shape[-2:], ratio))
    rescale = restore_rescale(net, diameter)
    if ratio != 1.0 and not cfg.reference_bugs:
        rescale = 1.0  # the image is already at the model's scale
    image = prune_channels(image, cfg.channels)
    tiles = dataclasses.replace(cfg.tiles, augment=False)
    out = np.empty(image.shape, dtype=np.float32)
    for c in range(image.shape[0]):
        # Channel 2 (nucleus) runs at rescale * 30/17, with or without a nuclei net (§3.11).
        rescale_c = rescale * D.NUCLEUS_CHANNEL_RESCALE if c == 1 else rescale
        use = chan2_net if (c == 1 and chan2_net is not None and not cfg.reference_bugs) else net
        out[c] = _restore_channel(image[c : c + 1], use, rescale=rescale_c, normalize=cfg.normalize,
                                  tiles=tiles, progress=progress)
    return Restored(out, ratio)


def restore_rescale(net: Net, diameter: float | None) -> float:
    """The factor a restoration net's input is resized by: diam_mean / diameter, 1 without one
    (a sub-pixel diameter is a ConfigError, see prep.diameter_scale)."""
    if diameter is None or diameter <= 0:
        return 1.0
    return net.diam_mean / check_diameter(diameter, diam_mean=net.diam_mean)


def prune_channels(image: Any, channels: tuple[int, int] | None, *, axis: int = 0) -> Any:
    """Keep only channel 1 (along ``axis``) if the last channel is flat or no nucleus channel
    was asked for (§3.11). Arrays and torch tensors alike: the device path prunes with it too."""
    lead = (slice(None),) * axis
    if image.shape[axis] > 1:
        last = image[(*lead, -1)]
        if float(last.max() - last.min()) < D.MIN_PERCENTILE_RANGE or (
            channels is not None and channels[-1] == 0
        ):
            return image[(*lead, slice(0, 1))]
    return image


def _restore_channel(
    channel: np.ndarray,
    net: Net,
    *,
    rescale: float,
    normalize: NormalizeConfig | None,
    tiles: TileOptions,
    progress: Progress | None,
) -> np.ndarray:
    ly, lx = channel.shape[-2:]
    x = normalize_image(channel, normalize) if normalize is not None else channel
    if rescale != 1.0:
        x = resize_bilinear(x, scaled_size((ly, lx), rescale))
    y, _ = run_tiled(x, net.infer_fn(), nout=1, tiles=tiles, progress=progress)
    if y.shape[-2:] != (ly, lx):
        y = resize_bilinear(y, (ly, lx))
    return np.asarray(y[0], dtype=np.float32)
