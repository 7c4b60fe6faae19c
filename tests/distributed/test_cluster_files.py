"""Image files as Dask tasks: a 2-worker LocalCluster gives the single-process masks; a worker
killed mid-run loses and duplicates nothing."""

from __future__ import annotations

import pytest
import tifffile
from cluster_testutil import WorkerKiller, wait_for_workers
from scale_testutil import blob_image

from cp3rt.distributed import parse_cluster, run_distributed
from cp3rt.errors import ConfigError
from cp3rt.runtime.batch.files import OutputOptions, run_batch
from cp3rt.runtime.config import PipelineConfig, RunConfig
from cp3rt.runtime.pipeline import Pipeline
from cp3rt.runtime.quality.metrics import average_precision

MIN_AP90 = 1.0


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_onnx):
    d = tmp_path_factory.mktemp("dist")
    (d / "in").mkdir()
    for i, s in enumerate([(200, 240), (256, 256), (180, 300), (300, 200), (224, 260), (240, 240)]):
        tifffile.imwrite(d / "in" / f"im{i}.tif", blob_image(s, 20, i)[0])
    images = sorted((d / "in").glob("*.tif"))
    cfg = PipelineConfig(segment=str(tiny_onnx), backend="ort")
    run = RunConfig(diameter=30.0, channels=(0, 0))
    with Pipeline.from_config(cfg, run=run) as p:
        single = run_batch(p, images, run, OutputOptions(out_dir=d / "single"))
    return d, images, cfg, run, single


def _same(a, b):
    for x, y in zip(a.outcomes, b.outcomes):
        ma, mb = tifffile.imread(x.outputs[-1]), tifffile.imread(y.outputs[-1])
        assert ma.max() > 0, x.path  # a comparison of empty masks would prove nothing
        assert average_precision(ma, mb, [0.9])[0][0] >= MIN_AP90, x.path


def test_cluster_equals_single_process(setup, client):
    d, images, cfg, run, single = setup
    wait_for_workers(client)
    assert len(client.scheduler_info()["workers"]) == 2
    dist = run_distributed(client, cfg, images, run, OutputOptions(out_dir=d / "dist"))
    assert [o.status for o in dist.outcomes] == ["done"] * len(images)
    _same(single, dist)


def test_worker_killed_mid_run_loses_nothing(setup, client):
    d, images, cfg, run, single = setup
    wait_for_workers(client)
    out = d / "killed"
    killer = WorkerKiller(client)
    dist = run_distributed(client, cfg, images, run, OutputOptions(out_dir=out), retries=3, on_event=killer)
    killer.assert_killed_mid_run(len(images))
    # a file the killed worker wrote before its result got back is "skipped" by the retry
    assert all(o.status in ("done", "skipped") for o in dist.outcomes)
    written = sorted(p.name for p in out.iterdir())
    assert written == sorted(f"{p.stem}_cp_masks.tif" for p in images)  # no partials, no dups
    _same(single, dist)


def test_parse_cluster():
    assert parse_cluster("local") == ("local", None)
    assert parse_cluster("local:3") == ("local", 3)
    assert parse_cluster("tcp://10.0.0.1:8786") == ("tcp", "tcp://10.0.0.1:8786")
    for bad in ("local:0", "ssh://x", "tcp://nohost"):
        with pytest.raises(ConfigError, match="cluster"):
            parse_cluster(bad)
