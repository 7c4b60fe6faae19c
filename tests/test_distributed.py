"""Dask cluster runs: a 2-worker LocalCluster (processes, loopback) gives the single-process
masks; a worker killed mid-run loses and duplicates nothing."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile

sys.path.insert(0, str(Path(__file__).resolve().parent / "runtime"))
from scale_testutil import blob_image, export_tiny_onnx  # noqa: E402

from cp3rt.distributed import close_client, open_client, parse_cluster, run_distributed  # noqa: E402
from cp3rt.errors import ConfigError  # noqa: E402
from cp3rt.runtime.batch import OutputOptions, run_batch  # noqa: E402
from cp3rt.runtime.metrics import average_precision  # noqa: E402
from cp3rt.runtime.pipeline import Pipeline  # noqa: E402
from cp3rt.runtime.run_config import PipelineConfig, RunConfig  # noqa: E402

MIN_AP90 = 1.0


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("dist")
    onnx = export_tiny_onnx(d / "net")
    (d / "in").mkdir()
    for i, s in enumerate([(200, 240), (256, 256), (180, 300), (300, 200), (224, 260), (240, 240)]):
        tifffile.imwrite(d / "in" / f"im{i}.tif", blob_image(s, 20, i)[0])
    images = sorted((d / "in").glob("*.tif"))
    cfg = PipelineConfig(segment=str(onnx), backend="ort")
    run = RunConfig(diameter=30.0, channels=(0, 0))
    with Pipeline.from_config(cfg, run=run) as p:
        single = run_batch(p, images, run, OutputOptions(out_dir=d / "single"))
    client = open_client("local:2")
    yield d, images, cfg, run, single, client
    close_client(client)


def _same(a, b):
    for x, y in zip(a.outcomes, b.outcomes):
        ma, mb = tifffile.imread(x.outputs[-1]), tifffile.imread(y.outputs[-1])
        assert average_precision(ma, mb, [0.9])[0][0] >= MIN_AP90, x.path


def test_cluster_equals_single_process(setup):
    d, images, cfg, run, single, client = setup
    assert len(client.scheduler_info()["workers"]) == 2
    dist = run_distributed(client, cfg, images, run, OutputOptions(out_dir=d / "dist"))
    assert [o.status for o in dist.outcomes] == ["done"] * len(images)
    _same(single, dist)


@pytest.mark.slow
def test_worker_killed_mid_run_loses_nothing(setup):
    d, images, cfg, run, single, client = setup
    many = images * 1  # same files, own output folder
    pids = list(client.run(os.getpid).values())
    out = d / "killed"
    import threading

    def killer():
        time.sleep(1.5)
        os.kill(pids[0], signal.SIGKILL)

    t = threading.Thread(target=killer)
    t.start()
    dist = run_distributed(client, cfg, many, run, OutputOptions(out_dir=out), retries=3)
    t.join()
    assert all(o.status == "done" for o in dist.outcomes)
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
