"""Cellpose training augmentation (spec §7.3): flip, rotation, rescale and crop in one affine warp.

Arrays are channel-first. Label stacks are ``[cellprob, flowY, flowX]``: the first channel is
warped with nearest neighbour, the flows bilinearly and then their vectors are rotated with the
image so they keep pointing at the same object centre. All randomness comes from the numpy
``Generator`` passed in, so a run is reproducible from its seed (and its checkpointed state).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from cp3rt.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Warp:
    """``out = scale * R(theta) @ (p - centre_in) + centre_out`` in (y, x) pixel coordinates.

    ``flip`` mirrors the last axis before the warp. ``theta`` turns the image counter-clockwise
    as displayed (x right, y down), i.e. R = [[cos, sin], [-sin, cos]] on (y, x) vectors.
    """

    scale: float
    theta: float
    flip: bool
    centre_in: tuple[float, float]
    centre_out: tuple[float, float]
    out_shape: tuple[int, int]

    def rotation(self) -> np.ndarray:
        c, s = np.cos(self.theta), np.sin(self.theta)
        return np.array([[c, s], [-s, c]])

    def apply(self, arr: np.ndarray, order: int) -> np.ndarray:
        """Warp every channel of ``arr`` (C, H, W) into ``out_shape`` with zero borders."""
        if self.flip:
            arr = arr[..., ::-1]
        # scipy maps output -> input coordinates: the inverse of the forward map.
        inv = self.rotation().T / self.scale
        offset = np.asarray(self.centre_in) - inv @ np.asarray(self.centre_out)
        out = np.empty((arr.shape[0], *self.out_shape), dtype=np.float32)
        for c in range(arr.shape[0]):
            ndimage.affine_transform(
                np.ascontiguousarray(arr[c], dtype=np.float32), inv, offset=offset,
                output_shape=self.out_shape, output=out[c], order=order, mode="constant", cval=0.0,
            )
        return out

    def apply_labels(self, labels: np.ndarray) -> np.ndarray:
        """Warp ``[cellprob, flowY, flowX]``: nearest for cellprob, bilinear + rotation for flows."""
        prob = self.apply(labels[:1], order=0)
        flows = labels[1:3].astype(np.float32, copy=True)
        if self.flip:
            flows[1] = -flows[1]  # mirroring x reverses the x component
        flows = self.apply(flows, order=1)
        return np.concatenate([prob, rotate_flows(flows, self.theta)], axis=0)


def rotate_flows(flows: np.ndarray, theta: float) -> np.ndarray:
    """Rotate (flowY, flowX) vectors by the same rotation as :class:`Warp` (spec §7.3 formula)."""
    c, s = np.cos(theta), np.sin(theta)
    fy, fx = flows[0], flows[1]
    return np.stack([c * fy + s * fx, -s * fy + c * fx]).astype(np.float32)


def place(
    rng: np.random.Generator,
    in_shape: tuple[int, int],
    out_shape: tuple[int, int],
    *,
    scale: float,
    theta: float = 0.0,
    flip: bool = False,
) -> Warp:
    """A warp with the given scale/angle/flip and a random crop offset (the only draw here)."""
    size_in = np.asarray(in_shape, dtype=np.float64)
    size_out = np.asarray(out_shape, dtype=np.float64)
    # Random translation, only as far as the scaled image is larger than the output.
    slack = np.maximum(0.0, size_in * scale - size_out)
    shift = (rng.random(2) - 0.5) * slack
    return Warp(
        scale=float(scale), theta=float(theta), flip=bool(flip),
        centre_in=tuple(float(v) for v in (size_in - 1) / 2),
        centre_out=tuple(float(v) for v in (size_out - 1) / 2 + shift),
        out_shape=(int(out_shape[0]), int(out_shape[1])),
    )


def random_rotate_and_resize(
    images: Sequence[np.ndarray],
    labels: Sequence[np.ndarray] | None,
    rng: np.random.Generator,
    *,
    rescale: Sequence[float] | None = None,
    scale_range: float = 0.5,
    out_size: int = 224,
    rotate: bool = True,
    flip: bool = True,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Augment a batch: returns images (B, C, S, S), labels (B, 3, S, S) or None, and scales (B,).

    Per image: flip (p 0.5), angle U(0, 2 pi), scale ``(1 - r/2) + r * U`` divided by
    ``rescale[i]`` (``r = clip(scale_range, 0, 2)``), then a random crop offset.
    """
    if labels is not None and len(labels) != len(images):
        raise ConfigError(f"labels has {len(labels)} entries but images has {len(images)}.")
    r = float(np.clip(scale_range, 0.0, 2.0))
    nimg = len(images)
    nchan = images[0].shape[0]
    out_imgs = np.zeros((nimg, nchan, out_size, out_size), np.float32)
    out_lbls = np.zeros((nimg, 3, out_size, out_size), np.float32) if labels is not None else None
    scales = np.zeros(nimg, np.float64)
    for n, img in enumerate(images):
        do_flip = bool(rng.random() > 0.5) if flip else False
        theta = float(rng.random() * 2 * np.pi) if rotate else 0.0
        scale = (1.0 - r / 2) + r * float(rng.random())
        if rescale is not None:
            scale /= float(rescale[n])
        warp = place(
            rng, img.shape[-2:], (out_size, out_size), scale=scale, theta=theta, flip=do_flip
        )
        out_imgs[n] = warp.apply(img, order=1)
        if out_lbls is not None and labels is not None:
            out_lbls[n] = warp.apply_labels(labels[n])
        scales[n] = scale
    return out_imgs, out_lbls, scales
