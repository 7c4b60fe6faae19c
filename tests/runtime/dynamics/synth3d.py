"""Synthetic 3-D inputs: ellipsoid label volumes and Cellpose-like 3-D network outputs.

Flows come from the reference's recipe for volumes (the 2-D heat-diffusion flows of every YX,
ZX and ZY slice summed per axis - what a 3-D run's two views per component look like), built
with cp3rt's 2-D ``masks_to_flows`` (bit-identical to the reference's, checked in
test_dynamics_parity) or, in parity tests, with the reference itself.
"""

from __future__ import annotations

import numpy as np


def ellipsoid_cells(shape: tuple[int, int, int], n_cells: int, seed: int = 0,
                    radius: tuple[float, float] = (0.35, 0.55)) -> np.ndarray:
    """About ``n_cells`` ellipsoids on a jittered grid; radii are a fraction of the grid step
    (later cells overwrite), int32 labels 1..n."""
    rng = np.random.default_rng(seed)
    shape = tuple(int(s) for s in shape)
    step = (np.prod(shape) / n_cells) ** (1 / 3)
    axes = [np.arange(step / 2, s, step) for s in shape]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    centres = grid + rng.uniform(-0.25, 0.25, grid.shape) * step
    lab = np.zeros(shape, np.int32)
    zz, yy, xx = np.indices(shape)
    for k, c in enumerate(centres, start=1):
        r = rng.uniform(*radius, 3) * step
        rot = np.linalg.qr(rng.normal(size=(3, 3)))[0]
        d = np.stack([zz - c[0], yy - c[1], xx - c[2]], -1) @ rot
        lab[((d / r) ** 2).sum(-1) <= 1.0] = k
    from cp3rt.runtime.dynamics._labels import renumber_raster

    flat, _ = renumber_raster(lab.reshape(shape[0] * shape[1], shape[2]))
    return flat.reshape(shape)


def flows_3d(masks: np.ndarray) -> np.ndarray:
    """(3, Z, Y, X) float32: sums of the 2-D unit flows of all YX, ZX and ZY slices."""
    from cp3rt.runtime.dynamics import masks_to_flows

    lz, ly, lx = masks.shape
    mu = np.zeros((3, lz, ly, lx), np.float32)
    for z in range(lz):
        if masks[z].max():
            mu[[1, 2], z] += masks_to_flows(masks[z])
    for y in range(ly):
        if masks[:, y].max():
            mu[[0, 2], :, y] += masks_to_flows(masks[:, y])
    for x in range(lx):
        if masks[:, :, x].max():
            mu[[0, 1], :, :, x] += masks_to_flows(masks[:, :, x])
    return mu


def net_outputs_3d(masks: np.ndarray, mu: np.ndarray | None = None, seed: int = 0,
                   flow_noise: float = 0.3, prob_noise: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(dP (3, Z, Y, X), cellprob (Z, Y, X)) float32 like a 3-D run: 5 x flows (+ noise) and a
    cellprob summed over three views (+15 inside / -15 outside, + noise)."""
    rng = np.random.default_rng(seed)
    mu = flows_3d(masks) if mu is None else mu
    dP = (5.0 * mu + rng.normal(0.0, flow_noise, mu.shape)).astype(np.float32)
    cellprob = np.where(masks > 0, 15.0, -15.0) + rng.normal(0.0, prob_noise, masks.shape)
    return dP, cellprob.astype(np.float32)
