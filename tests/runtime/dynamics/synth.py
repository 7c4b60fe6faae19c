"""Synthetic inputs for the dynamics tests and benchmark: label images and Cellpose-like outputs.

Flows are built from label images with the reference's own recipe (heat diffusion, x5), so the
"network output" is realistic in shape; cellprob is +5 inside / -5 outside; both get mild
seeded Gaussian noise.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[3] / ".." / "shared" / "data"


def ellipse_cells(shape: tuple[int, int], n_cells: int, seed: int = 0,
                  radius: tuple[float, float] = (6.0, 11.0)) -> np.ndarray:
    """About ``n_cells`` touching elliptical cells on a jittered grid (later cells overwrite)."""
    rng = np.random.default_rng(seed)
    ly, lx = shape
    step = np.sqrt(ly * lx / n_cells)
    cy, cx = np.meshgrid(np.arange(step / 2, ly, step), np.arange(step / 2, lx, step), indexing="ij")
    centres = np.stack([cy.ravel(), cx.ravel()], 1) + rng.uniform(-0.3, 0.3, (cy.size, 2)) * step
    lab = np.zeros(shape, np.int32)
    for k, (y, x) in enumerate(centres, start=1):
        ry, rx = rng.uniform(*radius, 2) * step / 20.0
        th = rng.uniform(0, np.pi)
        r = int(np.ceil(max(ry, rx))) + 1
        y0, y1 = max(0, int(y) - r), min(ly, int(y) + r + 1)
        x0, x1 = max(0, int(x) - r), min(lx, int(x) + r + 1)
        if y0 >= y1 or x0 >= x1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1]
        u = (yy - y) * np.cos(th) + (xx - x) * np.sin(th)
        v = -(yy - y) * np.sin(th) + (xx - x) * np.cos(th)
        lab[y0:y1, x0:x1][(u / ry) ** 2 + (v / rx) ** 2 <= 1.0] = k
    return lab


def net_outputs(masks: np.ndarray, seed: int = 0, flow_noise: float = 0.3,
                prob_noise: float = 1.0, weak_fraction: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """(dP float32 (2,Y,X), cellprob float32 (Y,X)) as a network trained on ``masks`` might give.

    ``weak_fraction`` of the labels get flows scaled by 0.3: the dynamics still converge there,
    but the flow QC rejects those masks (error ~0.49 > 0.4), leaving gaps in the labels.
    Flows come from cp3rt's masks_to_flows, which test_dynamics_parity checks to be
    bit-identical to the reference's (it is ~15x faster, which keeps the suite short).
    """
    from cp3rt.runtime.dynamics import masks_to_flows

    rng = np.random.default_rng(seed)
    mu = masks_to_flows(masks)
    if weak_fraction > 0:
        labels = np.unique(masks[masks > 0])
        weak = rng.choice(labels, int(round(weak_fraction * labels.size)), replace=False)
        mu *= np.where(np.isin(masks, weak), 0.3, 1.0)
    dP = (5.0 * mu + rng.normal(0.0, flow_noise, mu.shape)).astype(np.float32)
    cellprob = (np.where(masks > 0, 5.0, -5.0) + rng.normal(0.0, prob_noise, masks.shape))
    return dP, cellprob.astype(np.float32)


def with_small_cells(lab: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Add ``n`` 3x4 cells (12 px: enough end points for a seed, below min_size 15)."""
    rng = np.random.default_rng(seed)
    lab = lab.copy()
    nxt = int(lab.max()) + 1
    for _ in range(n):
        y, x = rng.integers(2, lab.shape[0] - 6), rng.integers(2, lab.shape[1] - 6)
        lab[y - 1:y + 4, x - 1:x + 5] = 0  # a background frame keeps it a separate object
        lab[y:y + 3, x:x + 4] = nxt
        nxt += 1
    return lab


def read_mask(dataset: str, name: str | None = None) -> np.ndarray:
    import tifffile

    folder = DATA / dataset / "masks"
    files = sorted(folder.glob("*.tif"))
    path = folder / name if name else files[0]
    return tifffile.imread(path)
