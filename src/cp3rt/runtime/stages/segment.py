"""Segmentation net stage (§3.4–3.6): resize to the model's scale, tiled inference, resize back."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from cp3rt.runtime.nets import Net
from cp3rt.runtime.prep.diameter_scale import rescale_factor, scaled_size
from cp3rt.runtime.prep.resize import resize_bilinear
from cp3rt.runtime.tiles.infer import run_tiled
from cp3rt.runtime.tiles.options import TileOptions

Progress = Callable[[int, int], None]


@dataclasses.dataclass(frozen=True)
class NetOutput:
    """Flows and logits of the segmentation net, at the image size or (no resample) net size."""

    dP: np.ndarray        # (2, Y, X) float32
    cellprob: np.ndarray  # (Y, X) float32
    style: np.ndarray     # (256,) float32
    rescale: float


def rescale_for(diameter: float | None, net: Net) -> float:
    """§3.4: diam_mean / diameter for a diameter > 0, else diam_mean / diam_labels."""
    return rescale_factor(
        net.diam_mean, diameter=diameter, diam_labels=net.diam_labels, builtin=net.builtin
    )


def run_segment_net(
    image: np.ndarray,
    net: Net,
    *,
    rescale: float,
    resample: bool,
    tiles: TileOptions,
    progress: Progress | None = None,
) -> NetOutput:
    """``image`` (C, Y, X) normalised float32 -> flows/cellprob (§3.5, §3.6)."""
    ly, lx = image.shape[-2:]
    x = image
    if rescale != 1.0:
        x = resize_bilinear(image, scaled_size((ly, lx), rescale))
    y, style = run_tiled(x, net.infer_fn(), nout=3, tiles=tiles, progress=progress)
    if resample and y.shape[-2:] != (ly, lx):
        y = resize_bilinear(y, (ly, lx))
    y = np.asarray(y, dtype=np.float32)
    return NetOutput(
        dP=np.ascontiguousarray(y[:2]),
        cellprob=np.ascontiguousarray(y[2]),
        style=np.asarray(style, dtype=np.float32),
        rescale=rescale,
    )
