"""Huge-image blocks: seam-free labels (objects placed across seams stay one object), blocks
== one piece by matching, globally unique consecutive labels, geometry and merge rules."""

from __future__ import annotations

import numpy as np
import pytest
from scale_testutil import NumpyEngine, blob_image

from cp3rt import Pipeline
from cp3rt.errors import ConfigError, InputError
from cp3rt.runtime.batch.blocks import BlockGrid, global_lowhigh, matching_pairs, segment_blocks
from cp3rt.runtime.config import RunConfig
from cp3rt.runtime.prep.normalize import NormalizeConfig
from cp3rt.runtime.quality.metrics import average_precision

MIN_AP90 = 0.99        # blocks vs one piece (issue 6)
MAX_SPLIT_FRACTION = 0.0  # no true object may come out in two labels
BLOCK = 256
DIAM = 30.0


def _seam_image(shape=(700, 650), seed=3):
    """Blobs on every seam line and crossing (plus random ones)."""
    rng = np.random.default_rng(seed)
    seams = [BLOCK * k for k in range(1, 3)]
    centres = [(s + rng.uniform(-4, 4), x) for s in seams for x in np.arange(30, shape[1] - 30, 40.0)]
    centres += [(y, s + rng.uniform(-4, 4)) for s in seams for y in np.arange(50, shape[0] - 30, 40.0)]
    centres += [(sy, sx) for sy in seams for sx in seams]
    centres = np.array(centres)
    # drop centres that would touch another (keep objects separable)
    keep = []
    for c in centres:
        if all(np.hypot(*(c - k)) > 22 for k in keep):
            keep.append(c)
    return blob_image(shape, 0, seed, centres=np.array(keep))


def _one_piece(image, lowhigh):
    run = RunConfig(diameter=DIAM, normalize=NormalizeConfig(lowhigh=lowhigh))
    with Pipeline.from_engines(NumpyEngine()) as p:
        return p.run(image, run=run).masks


def _blocks(image, nchan=1, **kw):
    out = np.zeros(image.shape[-2:], np.uint32)
    with Pipeline.from_engines(NumpyEngine(nchan=nchan)) as p:
        summary = segment_blocks(p, image, out, diameter=DIAM, block_size=BLOCK, **kw)
    return out, summary


def test_objects_across_seams_are_one_object_and_match_one_piece():
    image, truth = _seam_image()
    out, summary = _blocks(image)
    assert summary.n_blocks == 9 and summary.halo >= 2 * DIAM
    whole = _one_piece(image, summary.lowhigh)
    ap = average_precision(whole, out, [0.9])[0][0]
    assert ap >= MIN_AP90, f"AP@0.9 blocks vs one piece {ap:.4f} < {MIN_AP90}"
    # each true object: its pixels carry one block label (no split across a seam)
    split = 0
    for k in range(1, int(truth.max()) + 1):
        labs = out[truth == k]
        labs = labs[labs > 0]
        if labs.size and np.unique(labs).size > 1:
            split += 1
    assert split / truth.max() <= MAX_SPLIT_FRACTION, f"{split} of {truth.max()} objects split at a seam"
    # globally unique, consecutive labels
    ids = np.unique(out[out > 0])
    assert ids.tolist() == list(range(1, summary.n_objects + 1))


def test_channels_first_input_and_chunked_like_access():
    image, _ = _seam_image((400, 300), seed=5)
    stacked = np.stack([image, image // 2])  # (C, Y, X)
    out, summary = _blocks(stacked, nchan=2)
    assert len(summary.lowhigh) == 2 and summary.n_objects > 10


def test_matching_pairs_iou_rule():
    a = np.zeros((10, 10), np.uint32)
    b = np.zeros((10, 10), np.uint32)
    a[0:4, 0:4] = 1
    b[0:4, 0:3] = 7   # IoU 12/16 = 0.75 with a=1
    a[6:10, 6:10] = 2
    b[6:7, 6:10] = 3  # IoU 4/16 = 0.25
    assert matching_pairs(a, b, 0.5) == [(1, 7)]
    assert sorted(matching_pairs(a, b, 0.2)) == [(1, 7), (2, 3)]


def test_grid_geometry_and_validation():
    grid = BlockGrid.for_diameter((600, 300), 20.0, block_size=256)
    assert grid.halo == 40 and grid.counts == (3, 2)
    cores = np.zeros((600, 300), int)
    for b in grid.blocks:
        y0, y1, x0, x1 = b.core
        cores[y0:y1, x0:x1] += 1
        assert b.ext[0] == max(0, y0 - 40) and b.ext[3] == min(300, x1 + 40)
    assert (cores == 1).all()
    assert len(grid.neighbour_pairs()) == 3 * 1 + 2 * 2 + 2 * 2  # horizontal, vertical, 2 diagonals per row pair
    with pytest.raises(ConfigError, match="diameter"):
        BlockGrid.for_diameter((100, 100), 0)
    with pytest.raises(ConfigError, match="halo_diameters"):
        BlockGrid.for_diameter((100, 100), 10, halo_diameters=1.5)
    with pytest.raises(ConfigError, match="block_size"):
        BlockGrid((100, 100), 10, 0)
    with pytest.raises(InputError, match="output"):
        with Pipeline.from_engines(NumpyEngine()) as p:
            segment_blocks(p, np.zeros((100, 100)), np.zeros((50, 50), np.uint32), diameter=10)


def test_global_lowhigh_matches_percentiles_on_small_images():
    img = np.random.default_rng(0).random((2, 64, 80)).astype(np.float32)
    got = global_lowhigh(img, nchan=2)
    for c in range(2):
        np.testing.assert_allclose(got[c], np.percentile(img[c], (1, 99)), rtol=1e-6)


@pytest.mark.parametrize("norm", [None, NormalizeConfig(lowhigh=(0.0, 120_000.0))], ids=["no-normalisation", "given-lowhigh"])
def test_a_normalisation_that_needs_no_image_is_kept_by_the_blocks(norm):
    """No normalisation, or a fixed lowhigh (a whole screen on one intensity scale), is the
    caller's: blocks must equal one piece run with it (they used to normalise by the whole
    image's percentiles whatever the run said)."""
    image, _ = _seam_image()
    run = RunConfig(diameter=DIAM, normalize=norm)
    out, summary = _blocks(image, run=run)
    with Pipeline.from_engines(NumpyEngine()) as p:
        whole = p.run(image, run=run).masks
    assert summary.lowhigh == (norm.lowhigh if norm is not None else None)
    ap = average_precision(whole, out, [0.9])[0][0]
    assert ap >= MIN_AP90, f"AP@0.9 blocks vs one piece {ap:.4f} < {MIN_AP90}"


def test_tiled_normalisation_is_refused_in_blocks_with_the_reason():
    image, _ = _seam_image()
    with pytest.raises(ConfigError, match=r"tile_norm_blocksize=100 .*block layout"):
        _blocks(image, run=RunConfig(diameter=DIAM, normalize=NormalizeConfig(tile_norm_blocksize=100)))
