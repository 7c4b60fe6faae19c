"""Stand-ins for the huge-volume tests: a numpy 'net' whose flows fade at blob peaks (one sink
per blob in 3-D), and volumes of ellipsoid blobs placed across the Z, Y and X block seams."""

from __future__ import annotations

import numpy as np
from scale_testutil import NumpyEngine

DIAM, BLOCK = 10.0, 64  # blob diameter (halo 20 px) and Y/X block side of the scenes


def soft_gradient_net(x: np.ndarray) -> dict[str, np.ndarray]:
    """Flows up the intensity gradient that fade to 0 at a blob's peak (like trained flows at a
    cell centre), so every blob has one sink; foreground where the input is bright. It sees 2-D
    planes of the YX / ZX / ZY views; per plane the gradient of an ellipsoid blob is its own."""
    gy, gx = np.gradient(x[:, 0], axis=(1, 2))
    norm = np.sqrt(gy**2 + gx**2 + 0.1**2)
    flows = np.stack([5 * gy / norm, 5 * gx / norm, 8 * (x[:, 0] - 0.3)], axis=1)
    return {"flows": flows.astype(np.float32), "style": np.full((x.shape[0], 256), 1 / 16, np.float32)}


class SoftEngine(NumpyEngine):
    def _run(self, feeds):
        self.batches.append(len(feeds["image"]))
        return soft_gradient_net(feeds["image"])


def blob_volume(shape, centres, radius=5.0, anisotropy=1.0):
    """uint16 volume of smooth bright ellipsoids (radius/anisotropy planes tall), their labels."""
    zz, yy, xx = np.indices(shape, dtype=np.float32)
    img = np.zeros(shape, np.float32)
    labels = np.zeros(shape, np.uint32)
    best = np.full(shape, np.inf, np.float32)
    for k, (cz, cy, cx) in enumerate(centres, start=1):
        d2 = ((zz - cz) * anisotropy) ** 2 + (yy - cy) ** 2 + (xx - cx) ** 2
        img = np.maximum(img, np.exp(-d2 / (2 * (radius * 0.6) ** 2)))
        inside = (d2 <= radius**2) & (d2 < best)
        labels[inside], best[inside] = k, d2[inside]
    return (img * 60000).astype(np.uint16), labels


def seam_volume(anisotropy=1.0, seed=0, z_layers=2):
    """Blobs centred on the Z, Y and X seam planes (and a corner where they meet), plus some
    elsewhere; ``z_layers`` x 2 x 2 blocks of (20/anisotropy, 64, 64). Returns the volume, its
    true labels and the Z block size."""
    block_z = int(20 / anisotropy)
    shape = (z_layers * block_z, 128, 128)
    seams = (list(range(block_z, shape[0], block_z)), [BLOCK], [BLOCK])
    rng = np.random.default_rng(seed)
    lo = np.array([6 / anisotropy, 6, 6])
    cand = [np.array([seams[0][0], BLOCK, BLOCK], float)]
    for _ in range(3000):
        c = rng.uniform(lo, np.array(shape) - lo)
        axis = rng.integers(0, 4)
        if axis < 3:  # on a seam plane, within 2 voxels
            c[axis] = rng.choice(seams[axis]) + rng.uniform(-2, 2)
        cand.append(c)
    keep: list[np.ndarray] = []
    for c in cand:
        if all(np.sqrt((((c - k) * [anisotropy, 1, 1]) ** 2).sum()) > 14 for k in keep):
            keep.append(c)
    # peaks on voxels: a peak between two voxels gives the stand-in two sinks (one blob, two
    # labels, in one piece too), and which of the two wins a tie is float32 rounding
    vol, truth = blob_volume(shape, np.round(keep), anisotropy=anisotropy)
    return vol, truth, block_z
