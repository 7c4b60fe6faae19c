"""Blocks of a huge image as Dask tasks: the same labels as ``segment_blocks`` in one process,
a killed worker changes nothing, the scratch folder goes away, `cp3rt run --cluster` uses it."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from cluster_testutil import WorkerKiller, wait_for_workers
from scale_testutil import blob_image

from cp3rt.cli.app import main
from cp3rt.distributed import segment_blocks_on_cluster
from cp3rt.runtime.batch.blocks import segment_blocks
from cp3rt.runtime.batch.blocks.lazy import open_plane
from cp3rt.runtime.config import PipelineConfig, RunConfig
from cp3rt.runtime.pipeline import Pipeline
from cp3rt.runtime.quality.metrics import average_precision

DIAM, BLOCK = 30.0, 192
MIN_AP90_SAME = 1.0  # same blocks, same engine, same merge: only where the work runs differs
RUN = RunConfig(diameter=DIAM, channels=(0, 0))


@pytest.fixture(scope="module")
def scene(tmp_path_factory, tiny_onnx):
    d = tmp_path_factory.mktemp("cblocks")
    image, _ = blob_image((520, 470), 110, 4, radius=8)
    path = d / "big.tif"
    tifffile.imwrite(path, image)
    cfg = PipelineConfig(segment=str(tiny_onnx), backend="ort")
    single = np.zeros(image.shape, np.uint32)
    with Pipeline.from_config(cfg, run=RUN) as p:
        summary = segment_blocks(p, image, single, diameter=DIAM, block_size=BLOCK)
        nchan = p.segment_net.nchan
    assert summary.n_blocks == 9 and summary.n_objects > 10  # a 3x3 grid with real seams
    return d, path, cfg, nchan, single


def _on_cluster(client, scene, out_name, **kw):
    d, path, cfg, nchan, _ = scene
    out = np.zeros(tifffile.imread(path).shape, np.uint32)
    folder = d / out_name
    folder.mkdir()
    summary = segment_blocks_on_cluster(client, cfg, path, open_plane(path), out, nchan=nchan, diameter=DIAM,
                                        run=RUN, scratch_parent=folder, block_size=BLOCK, **kw)
    assert list(folder.iterdir()) == []  # scratch (local labels, frames) removed
    return out, summary


def _assert_same(single, got):
    assert np.array_equal(np.unique(got), np.arange(int(got.max()) + 1))  # global labels 1..N
    assert int(got.max()) == int(single.max())
    assert average_precision(single, got, [0.9])[0][0] >= MIN_AP90_SAME


def test_blocks_as_tasks_equal_one_process(client, scene):
    wait_for_workers(client)
    steps = []
    got, summary = _on_cluster(client, scene, "same", progress=lambda d, n: steps.append((d, n)))
    _assert_same(scene[4], got)
    assert summary.n_blocks == 9 and steps[-1] == (18, 18)


def test_worker_killed_during_blocks_changes_nothing(client, scene):
    wait_for_workers(client)
    killer = WorkerKiller(client)
    got, summary = _on_cluster(client, scene, "killed", retries=3, progress=killer)
    killer.assert_killed_mid_run(2 * summary.n_blocks)
    _assert_same(scene[4], got)


@pytest.mark.slow
def test_cli_cluster_runs_huge_tiff_in_block_tasks(scene, tmp_path):
    d, path, cfg, _, single = scene
    args = ["run", str(path), "--model", cfg.segment, "--backend", "ort", "--diameter", str(DIAM), "--blocks",
            "--block-size", str(BLOCK), "--cluster", "local:2", "--out", str(tmp_path)]
    assert main(args) == 0
    got = tifffile.imread(tmp_path / "big_cp_masks.tif")
    _assert_same(single, got)
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("cp3rt_run_")) == ["big_cp_masks.tif"]
