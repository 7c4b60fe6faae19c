"""Plate fields as Dask tasks: the same labels and per-well CSV as ``run_plate`` in one
process; a worker killed mid-plate loses nothing; done fields are skipped on a re-run."""

from __future__ import annotations

import numpy as np
import pytest
from cluster_testutil import WorkerKiller, wait_for_workers
from scale_testutil import FIELDS, WELLS, write_plate

from cp3rt.distributed import run_plate_on_cluster
from cp3rt.runtime.batch.plates import plate_fields, run_plate
from cp3rt.runtime.config import PipelineConfig, RunConfig
from cp3rt.runtime.io.zarr_io import is_complete, open_lazy
from cp3rt.runtime.pipeline import Pipeline
from cp3rt.runtime.quality.metrics import average_precision

BLOCK = 128
MIN_AP90_SAME = 1.0
RUN = RunConfig(channels=(0, 0), diameter=20.0)


@pytest.fixture(scope="module")
def single(tmp_path_factory, tiny_onnx):
    root = tmp_path_factory.mktemp("plate1") / "plate.ome.zarr"
    write_plate(root)
    cfg = PipelineConfig(segment=str(tiny_onnx), backend="ort")
    with Pipeline.from_config(cfg, run=RUN) as p:
        summary = run_plate(p, root, RUN, block_size=BLOCK)
    assert sum(int(w["objects"]) for w in summary.wells) > 0  # something to compare
    return cfg, root, summary


def _labels(field_path):
    return np.asarray(open_lazy(field_path / "labels" / "cp3rt")[...])


def _assert_same_plate(single_root, single_summary, root, summary):
    assert summary.wells == single_summary.wells and summary.csv.read_bytes() == single_summary.csv.read_bytes()
    for a, b in zip(plate_fields(single_root), plate_fields(root)):
        assert is_complete(b.path)
        la, lb = _labels(a.path), _labels(b.path)
        if la.max() or lb.max():
            assert average_precision(la, lb, [0.9])[0][0] >= MIN_AP90_SAME, b.path


def test_fields_as_tasks_equal_one_process(client, single, tmp_path):
    cfg, root1, s1 = single
    wait_for_workers(client)
    root = tmp_path / "plate.ome.zarr"
    write_plate(root)
    ends = []
    summary = run_plate_on_cluster(client, cfg, root, RUN, block_size=BLOCK, on_event=ends.append)
    assert summary.batch.count("done") == len(WELLS) * FIELDS == len(ends)
    _assert_same_plate(root1, s1, root, summary)
    again = run_plate_on_cluster(client, cfg, root, RUN, block_size=BLOCK)  # resumable: all done
    assert again.batch.count("skipped") == len(WELLS) * FIELDS
    assert again.csv.read_bytes() == summary.csv.read_bytes()


def test_worker_killed_mid_plate_loses_nothing(client, single, tmp_path):
    cfg, root1, s1 = single
    wait_for_workers(client)
    root = tmp_path / "plate.ome.zarr"
    write_plate(root)
    killer = WorkerKiller(client)
    summary = run_plate_on_cluster(client, cfg, root, RUN, block_size=BLOCK, retries=3, on_event=killer)
    killer.assert_killed_mid_run(len(WELLS) * FIELDS)
    # A field the killed worker finished (marker written) before its result got back is redone
    # by the retry as "skipped": its labels are there and complete, which _assert_same_plate checks.
    assert summary.batch.count("done") + summary.batch.count("skipped") == len(WELLS) * FIELDS
    _assert_same_plate(root1, s1, root, summary)


def test_fields_as_tasks_write_an_output_plate_with_out(client, single, tmp_path):
    from cp3rt.runtime.batch.files import OutputOptions

    cfg, root1, s1 = single
    wait_for_workers(client)
    root = tmp_path / "plate.ome.zarr"
    write_plate(root)
    out = tmp_path / "o"
    summary = run_plate_on_cluster(client, cfg, root, RUN, OutputOptions(out_dir=out), block_size=BLOCK)
    assert summary.wells == s1.wells and summary.csv == out / "plate_wells.csv"
    for a, b in zip(plate_fields(root1), plate_fields(root)):
        mirror = out / "plate.ome.zarr" / b.path.relative_to(root)
        assert is_complete(mirror) and not (b.path / "labels").exists()  # the input plate only read
        la, lb = _labels(a.path), _labels(mirror)
        if la.max() or lb.max():
            assert average_precision(la, lb, [0.9])[0][0] >= MIN_AP90_SAME, mirror
