"""The run record (issue 18 item 4), library side: ``run_inputs(..., record=...)`` writes one JSON
beside the outputs with the models, parameters, versions and every image; it is replaced whole
(never half written) and says whether the run completed. The CLI side (hashes of a real .onnx,
the printed path, headless lines) is in tests/cli/test_run_record_cli.py."""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import pytest
import tifffile
from scale_testutil import NumpyEngine, blob_image

from cp3rt import Pipeline
from cp3rt.manifest import sha256_file
from cp3rt.runtime import OutputOptions, PipelineConfig, RunConfig, run_inputs
from cp3rt.runtime.batch import run_record as R
from cp3rt.runtime.batch.cancel import Cancel
from cp3rt.runtime.batch.files import ImageOutcome

RUN = RunConfig(channels=(0, 0), diameter=20.0)


@pytest.fixture
def stand_in(monkeypatch):
    def from_config(cls, cfg, run=None):
        return Pipeline.from_engines(NumpyEngine(nchan=2), run=run)

    monkeypatch.setattr(Pipeline, "from_config", classmethod(from_config))


def _images(folder, n=3):
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        tifffile.imwrite(folder / f"im{i}.tif", blob_image((96, 96), 6, i, radius=7)[0])
        paths.append(folder / f"im{i}.tif")
    return paths


def _records(folder):
    return sorted(folder.glob("cp3rt_run_*.json"))


def test_a_run_writes_one_complete_record_naming_every_image(tmp_path, stand_in):
    images = _images(tmp_path / "in")
    (tmp_path / "in" / "bad.tif").write_bytes(b"not a tiff")
    out = tmp_path / "out"
    out.mkdir()
    config = PipelineConfig(segment="cyto3")
    recorder = R.start_run_record(config, None, out, run=RUN, outputs=OutputOptions(out_dir=out),
                                  command=["cp3rt", "run", "in"])
    summary = run_inputs([tmp_path / "in"], config, RUN, OutputOptions(out_dir=out), record=recorder)
    [path] = _records(out)
    assert path == recorder.path
    data = json.loads(path.read_text())
    assert data["schema"] == R.SCHEMA and data["complete"] is True and data["finished"]
    assert data["tool"] == "cp3rt run" and data["command"] == ["cp3rt", "run", "in"]
    assert data["backend"] == "auto" and data["precision"] == "fp32"
    assert data["parameters"]["run"]["diameter"] == 20.0
    assert data["parameters"]["run"]["channels"] == [0, 0]
    assert data["parameters"]["outputs"]["out_dir"] == str(out)
    assert data["parameters"]["pipeline"]["segment"] == "cyto3"
    assert data["versions"]["numpy"] == np.__version__ and data["versions"]["cp3rt"]
    assert data["host"]["hostname"]
    [model] = data["models"]
    assert model["role"] == "segment" and model["engine_backend"] == "numpy"
    by_file = {e["file"]: e for e in data["images"]}
    assert set(by_file) == {str(p) for p in [*images, tmp_path / "in" / "bad.tif"]}
    for p, o in zip(images, sorted((o for o in summary.outcomes if o.status == "done"), key=lambda o: o.path)):
        entry = by_file[str(p)]
        assert entry["status"] == "done" and entry["objects"] == o.n_objects > 0
        assert entry["seconds"] == pytest.approx(sum(o.timings.values()), abs=1e-5)
        assert entry["timings"]["dynamics"] >= 0
    bad = by_file[str(tmp_path / "in" / "bad.tif")]
    assert bad["status"] == "failed" and "bad.tif" in bad["error"]
    assert data["summary"] == {"done": 3, "skipped": 0, "failed": 1, "claimed": 0,
                               "objects": summary.n_objects, "seconds": pytest.approx(summary.seconds, abs=1e-5),
                               "not_started": 0}


def test_a_cancelled_run_leaves_a_record_that_says_so(tmp_path, stand_in):
    _images(tmp_path / "in")
    cancel = Cancel()
    cancel.set("SIGTERM")
    recorder = R.start_run_record(PipelineConfig(), None, tmp_path, run=RUN)
    run_inputs([tmp_path / "in"], PipelineConfig(), RUN, OutputOptions(out_dir=tmp_path / "in"),
               cancel=cancel, record=recorder)
    data = json.loads(recorder.path.read_text())
    assert data["complete"] is False and data["stopped_by"] == "SIGTERM"
    assert data["summary"]["not_started"] == 3


def test_the_record_is_never_half_written(tmp_path, monkeypatch):
    """A write that dies midway (here: the disk fills while writing) leaves the previous whole
    record in place and no temporary file; the run is not stopped by it (``errors`` says why)."""
    recorder = R.start_run_record(PipelineConfig(), None, tmp_path, flush_seconds=0)
    assert not recorder.path.exists()  # nothing before the first image
    recorder.add(ImageOutcome(tmp_path / "a.tif", "done", 3, {"dynamics": 0.5}))
    before = recorder.path.read_bytes()
    assert json.loads(before)["images"][0]["objects"] == 3

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    recorder.add(ImageOutcome(tmp_path / "b.tif", "done", 4, {"dynamics": 0.5}))
    assert len(recorder.errors) == 1 and "No space left" in recorder.errors[0]
    with pytest.raises(OSError):
        recorder.write()
    monkeypatch.undo()
    assert recorder.path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [recorder.path.name]
    recorder.finish()
    assert [e["file"] for e in json.loads(recorder.path.read_text())["images"]] == [
        str(tmp_path / "a.tif"), str(tmp_path / "b.tif")]


def test_two_runs_started_in_one_second_write_two_records(tmp_path):
    """Two runs sharing a folder (issue 13) may start in the same second: the second to write
    takes the next name instead of replacing the first one's record."""
    first = R.start_run_record(PipelineConfig(), None, tmp_path)
    second = R.start_run_record(PipelineConfig(), None, tmp_path)
    second.record = dataclasses.replace(second.record, started=first.record.started)
    second.path = first.path  # both chose the name while it was free
    first.write()
    assert second.write() != first.path and second.path.name.endswith("-2.json")
    second.write()  # later writes replace its own file
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([first.path.name, second.path.name])
    assert R.record_path(tmp_path, base=second.path).name.endswith("-3.json")
    assert R.record_path(tmp_path, "cp3rt watch").name.startswith("cp3rt_watch_")


def test_describe_config_hashes_the_artefact_and_its_weights(tmp_path):
    """Without an engine (cluster runs): the files are resolved and hashed as they are."""
    from cp3rt.manifest import EngineManifest

    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"onnx bytes")
    EngineManifest(role="segment", source_model="cyto3", source_sha256="1" * 64, nchan=2, nout=3,
                   diam_mean=30.0, diam_labels=30.0, precision="fp32", opset=17).write(tmp_path / "m.onnx.json")
    [info] = R.describe_config(PipelineConfig(segment=str(onnx), backend="ort"))
    assert info.artefact_sha256 == sha256_file(onnx) and info.source_model == "cyto3"
    assert info.engine_backend is None


def test_a_cluster_run_records_the_models_as_resolved_here(tmp_path):
    """The workers open the nets, so the record names the files this process resolves (no
    engine is opened here) with their sha256, and every image the cluster reports."""
    from pathlib import Path

    from cp3rt.runtime.batch.files import BatchSummary

    model = Path(__file__).resolve().parents[2] / "src" / "cp3rt" / "assets" / "models" / "cp3rt_nuclei.onnx"
    images = _images(tmp_path / "in", 2)

    class Cluster:
        def run_files(self, config, paths, run, outputs, *, on_event=None):
            return BatchSummary(tuple(ImageOutcome(p, "done", 5, {"segment": 0.1}) for p in paths), 0.2)

    config = PipelineConfig(segment=str(model), backend="ort")
    recorder = R.start_run_record(config, None, tmp_path, run=RUN)
    run_inputs(images, config, RUN, OutputOptions(out_dir=tmp_path), cluster=Cluster(), record=recorder)
    data = json.loads(recorder.path.read_text())
    [info] = data["models"]
    assert info["artefact"] == str(model) and info["artefact_sha256"] == sha256_file(model)
    assert info["engine_backend"] is None  # opened by the workers
    assert [e["objects"] for e in data["images"]] == [5, 5] and data["complete"] is True


def test_images_finishing_on_many_threads_are_all_recorded(tmp_path):
    """The streaming runner ends images on worker threads: every add lands, each write is whole."""
    import threading

    recorder = R.start_run_record(PipelineConfig(), None, tmp_path, flush_seconds=0)

    def worker(k):
        for i in range(25):
            recorder.add(ImageOutcome(tmp_path / f"t{k}_{i}.tif", "done", i, {"dynamics": 0.01}))
            json.loads(recorder.path.read_text())  # whatever is there now parses

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(json.loads(recorder.path.read_text())["images"]) == 100
    assert [p.name for p in tmp_path.iterdir()] == [recorder.path.name]


def test_a_killed_writers_temporary_record_files_are_removed_by_the_next_run(tmp_path):
    """SIGKILL during a record write leaves ``.cp3rt_run_<t>.json.<pid>@<host>.<rnd>.part.json``:
    the next record started in that folder removes it when that pid is gone on this host, and
    leaves a live writer's, another host's and an untagged (older) one alone."""
    import socket
    import subprocess
    import sys

    host = socket.gethostname()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    dead_pid = int(gone.stdout)
    record = "cp3rt_run_20261206T011250Z.json"
    dead = tmp_path / f".{record}.{dead_pid}@{host}.k2x_9a.part.json"
    dead_later = tmp_path / f".cp3rt_run_20261206T011250Z-2.json.{dead_pid}@{host}.q1.part.json"
    live = tmp_path / f".{record}.{os.getpid()}@{host}.a1b2.part.json"
    elsewhere = tmp_path / f".{record}.{dead_pid}@not-{host}.a1b2.part.json"
    untagged = tmp_path / f".{record}.a1b2c3.part.json"
    image_partial = tmp_path / f".x_cp_masks.tif.{dead_pid}@{host}.a1.part.tif"  # claims guard those
    for p in (dead, dead_later, live, elsewhere, untagged, image_partial):
        p.write_text("{")
    R.start_run_record(PipelineConfig(), None, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        p.name for p in (live, elsewhere, untagged, image_partial))


def test_a_records_temporary_files_carry_their_writer(tmp_path, monkeypatch):
    """Both kinds of record write (the first publish and the later replacements) name their
    temporary file after this process, so that the test above's cleanup can find them."""
    from cp3rt.runtime.batch.record_files import RECORD_PARTIAL, writer_tag

    seen = []
    real_mkstemp = R.tempfile.mkstemp

    def spy(*args, **kw):
        fd, name = real_mkstemp(*args, **kw)
        seen.append(os.path.basename(name))
        return fd, name

    monkeypatch.setattr("tempfile.mkstemp", spy)
    recorder = R.start_run_record(PipelineConfig(), None, tmp_path, flush_seconds=0.0)
    recorder.write()
    recorder.write()
    assert len(seen) == 2 and all(RECORD_PARTIAL.match(n) and f".{writer_tag()}." in n for n in seen), seen


def test_a_growing_record_is_rewritten_less_often(tmp_path, monkeypatch):
    """A long watch must not spend its time rewriting its record: the interval grows with the
    time a write takes (FLUSH_COST_FACTOR x), and finish() always writes the last word."""
    now = [1000.0]
    monkeypatch.setattr(R, "time", type("Clock", (), {"monotonic": staticmethod(lambda: now[0])}))
    recorder = R.start_run_record(PipelineConfig(), None, tmp_path, flush_seconds=2.0)

    def add_and_count(name, at):
        now[0] = at
        recorder.add(ImageOutcome(tmp_path / name, "done", 1, {"dynamics": 0.5}))
        return len(json.loads(recorder.path.read_text())["images"])

    assert add_and_count("a.tif", 1000.0) == 1  # the first image: written at once
    recorder._write_seconds = 1.0  # as if that write had taken a second
    assert add_and_count("b.tif", 1003.0) == 1  # past flush_seconds, not past 50 x 1 s
    assert add_and_count("c.tif", 1000.0 + R.FLUSH_COST_FACTOR) == 3
    recorder.finish()
    assert len(json.loads(recorder.path.read_text())["images"]) == 3


def test_record_text_is_the_indented_json_with_one_line_per_image():
    head = {"tool": "cp3rt run", "parameters": {"run": {"diameter": 17.0}}, "summary": None}
    entries = [{"file": "a.tif", "objects": 3, "timings": {"dynamics": 0.5}}, {"file": "b\"c.tif", "error": None}]
    text = R.record_json(head, entries)
    assert json.loads(text) == {**head, "images": entries}
    assert json.loads(R.record_json(head, [])) == {**head, "images": []}
    lines = text.splitlines()
    assert [json.loads(line.strip().rstrip(",")) for line in lines[-4:-2]] == entries
