"""Shared fixtures for the training tests: tiny nets, tiny synthetic data sets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from cp3rt.train.synth import SynthNuclei, synth_nuclei

# One intra-op thread for the whole session, set at import, before any torch op has run:
# tiny nets gain nothing from two threads, and on a shared 2-core machine the training tests
# ran 20-50x slower when the count was lowered later in a process that had already used two.
torch.set_num_threads(1)

TINY_NBASE = (8, 16, 32, 64)   # smallest width that still has the 4 levels of CPnet
SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def write_synth_set(folder: Path, n: int, *, seed: int, shape=(96, 96), layout="folders") -> None:
    """``n`` synthetic image/mask pairs as ``images/`` + ``masks/`` or ``<name>_masks.tif``."""
    rng = np.random.default_rng(seed)
    settings = SynthNuclei(shape=shape, diameter=(10.0, 16.0))
    if layout == "folders":
        (folder / "images").mkdir(parents=True, exist_ok=True)
        (folder / "masks").mkdir(parents=True, exist_ok=True)
    else:
        folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        img, msk = synth_nuclei(rng, settings)
        if layout == "folders":
            tifffile.imwrite(folder / "images" / f"s{i:02d}.tif", img)
            tifffile.imwrite(folder / "masks" / f"s{i:02d}.tif", msk)
        else:
            tifffile.imwrite(folder / f"s{i:02d}.tif", img)
            tifffile.imwrite(folder / f"s{i:02d}_masks.tif", msk)


@pytest.fixture(scope="session")
def synth_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("synth")
    write_synth_set(folder, 6, seed=0)
    return folder


@pytest.fixture(scope="session")
def tiny_segmenter(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised 2-channel tiny segmentation weight file (diam_mean 17)."""
    from cp3rt.train.segnet import SEG_NOUT, new_net

    path = tmp_path_factory.mktemp("seg") / "tiny_seg"
    new_net(2, TINY_NBASE, SEG_NOUT, 17.0, seed=3).save(path)
    return path
