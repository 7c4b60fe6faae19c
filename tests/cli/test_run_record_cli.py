"""``cp3rt run``'s run record and headless output (issue 18 item 4): every run writes
``cp3rt_run_<UTC>.json`` beside its outputs (models with the sha256 of the files that ran,
backend, precision, every parameter, package versions, host, per image status / objects /
seconds) and prints where the outputs and the record went; with stdout not a terminal each image
is one plain log line; a run killed at any moment leaves a record that parses.

The model is the shipped cp3rt_nuclei ONNX (no torch, no download)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import tifffile
from bad_corpus import MODEL, crops, env_for

from cp3rt.cli.app import main
from cp3rt.manifest import sha256_file

RUN = ["--model", str(MODEL), "--diameter", "17", "--backend", "ort"]


def _crops(folder: Path, n: int, size: int = 96) -> list[Path]:
    return crops(folder, n, size)


def _cp3rt(*args: object, workdir: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "cp3rt.cli.app", *map(str, args)], env=env_for(workdir),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _record(folder: Path) -> tuple[Path, dict]:
    [path] = sorted(folder.glob("cp3rt_run_*.json"))
    return path, json.loads(path.read_text())


def test_the_record_names_models_hashes_parameters_and_every_image(tmp_path, capsys):
    images = _crops(tmp_path / "in", 2)
    (tmp_path / "in" / "broken.tif").write_bytes(b"II*\x00" + bytes(100))
    out = tmp_path / "out"
    assert main(["run", str(tmp_path / "in"), *RUN, "--flow-threshold", "0.5", "--table", "csv", "--out", str(out)]) == 1
    printed = capsys.readouterr().out
    path, record = _record(out)
    assert f"outputs: {out}" in printed and f"run record: {path}" in printed
    assert record["complete"] is True and record["tool"] == "cp3rt run"
    [model] = record["models"]
    assert model["artefact"] == str(MODEL) and model["artefact_sha256"] == sha256_file(MODEL)
    assert model["engine_backend"] == "ort-cpu" and model["role"] == "segment" and model["precision"] == "fp32"
    assert record["backend"] == "ort" and record["precision"] == "fp32"
    params = record["parameters"]
    assert params["run"]["diameter"] == 17.0 and params["run"]["flow_threshold"] == 0.5
    assert params["outputs"]["table"] == "csv" and params["inputs"] == [str(tmp_path / "in")]
    assert record["versions"]["onnxruntime"] == onnxruntime.__version__
    assert record["versions"]["numpy"] == np.__version__ and record["versions"]["numba"]
    assert record["host"]["hostname"] and record["command"][:3] == ["cp3rt", "run", str(tmp_path / "in")]
    entries = {Path(e["file"]).name: e for e in record["images"]}
    assert set(entries) == {"img00.tif", "img01.tif", "broken.tif"}
    for img in images:
        e = entries[img.name]
        masks = tifffile.imread(out / f"{img.stem}_cp_masks.tif")
        assert e["status"] == "done" and e["objects"] == len(np.unique(masks)) - 1 > 0
        assert e["seconds"] > 0 and set(e["timings"]) >= {"segment", "dynamics", "write"} and e["diameter"] == 17.0
    assert entries["broken.tif"]["status"] == "failed" and "broken.tif" in entries["broken.tif"]["error"]
    assert entries["broken.tif"]["diameter"] is None
    assert record["summary"]["done"] == 2 and record["summary"]["failed"] == 1

    # a second run skips both: a record of its own, no second writer of the first
    assert main(["run", str(tmp_path / "in" / "img00.tif"), *RUN, "--out", str(out)]) == 0
    records = sorted(out.glob("cp3rt_run_*.json"))
    assert len(records) == 2 and json.loads(path.read_text()) == record
    second = json.loads(records[1].read_text() if records[0] == path else records[0].read_text())
    assert [e["status"] for e in second["images"]] == ["skipped"]


def test_without_out_the_record_goes_beside_the_inputs(tmp_path, capsys):
    _crops(tmp_path / "in", 1)
    assert main(["run", str(tmp_path / "in"), *RUN]) == 0
    assert "outputs: next to each input" in capsys.readouterr().out
    _, record = _record(tmp_path / "in")
    assert record["images"][0]["status"] == "done"


def test_headless_one_plain_line_per_image(tmp_path):
    images = _crops(tmp_path / "in", 3)
    (tmp_path / "in" / "broken.tif").write_bytes(b"not a tiff at all")
    proc = _cp3rt("run", tmp_path / "in", *RUN, "--out", tmp_path / "out", workdir=tmp_path)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 1, stderr
    lines = [line for line in stdout.splitlines() if line.startswith("[")]
    assert len(lines) == len(images), stdout
    numbers = []
    for line in lines:  # '[2/4] done /path/img01.tif 7 objects 0.41 s'
        count, status, path, n, word, seconds, unit = line.split()
        numbers.append(int(count[1:].split("/")[0]))
        assert count.endswith("/4]") and status == "done" and word == "objects" and unit == "s", line
        assert int(n) == len(np.unique(tifffile.imread(tmp_path / "out" / f"{Path(path).stem}_cp_masks.tif"))) - 1
        assert float(seconds) > 0
    assert sorted(Path(line.split()[2]) for line in lines) == sorted(images)
    assert len(set(numbers)) == 3 and set(numbers) <= {1, 2, 3, 4}  # the fourth is the failure
    failed = [line for line in stderr.splitlines() if line.startswith("failed")]
    assert len(failed) == 1 and "broken.tif" in failed[0], stderr
    assert "━" not in stderr and "\r" not in stderr  # no progress bar drawn into a log
    assert f"run record: {tmp_path / 'out'}" in stdout


def test_a_killed_run_leaves_a_record_that_parses(tmp_path):
    """SIGKILL at any moment: the record is a whole JSON document (replaced by rename, never
    written in place), says it did not complete, and names the images done before the kill."""
    _crops(tmp_path / "in", 8, size=256)
    out = tmp_path / "out"
    proc = _cp3rt("run", tmp_path / "in", *RUN, "--out", out, workdir=tmp_path)
    try:
        deadline = time.monotonic() + 240
        while not list(out.glob("cp3rt_run_*.json")):
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "no record appeared"
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    _, record = _record(out)
    assert record["complete"] is False and record["images"]
    done = {Path(e["file"]).stem for e in record["images"] if e["status"] == "done"}
    assert all((out / f"{stem}_cp_masks.tif").is_file() for stem in done)


@pytest.mark.parametrize("flags", [["--no-such-flag"], ["--workers", "0"], ["--dynamics-threads", "0"],
                                   ["--cluster", "local:1", "--workers", "2"], ["--threads", "0"],
                                   ["--threads", "2", "--dynamics-threads", "3"]])
def test_a_refused_run_writes_no_record(tmp_path, flags, capsys):
    _crops(tmp_path / "in", 1)
    assert main(["run", str(tmp_path / "in"), *RUN, *flags]) == 2
    assert not list((tmp_path / "in").glob("cp3rt_run_*"))
    assert not list((tmp_path / "in").glob("*_cp_masks.tif"))
    if "--cluster" in flags:  # one line that says why
        [line] = capsys.readouterr().err.strip().splitlines()
        assert line.startswith("error: --workers") and "--cluster" in line
    if "--dynamics-threads" in flags and "--threads" in flags:
        [line] = capsys.readouterr().err.strip().splitlines()
        assert line == ("error: --dynamics-threads 3 is above --threads 2, the cap on every CPU thread pool; "
                        "lower it or raise --threads.")


def test_workers_and_dynamics_threads_size_the_run_and_leave_the_masks_alone(tmp_path):
    """``--workers/--dynamics-threads`` (many-core hosts, shared nodes): recorded in the run
    record (None: the defaults), and the masks are those of the default configuration, byte for byte."""
    images = _crops(tmp_path / "in", 4)
    assert main(["run", str(tmp_path / "in"), *RUN, "--out", str(tmp_path / "default")]) == 0
    assert main(["run", str(tmp_path / "in"), *RUN, "--workers", "1", "--dynamics-threads", "1",
                 "--out", str(tmp_path / "sized")]) == 0
    _, default = _record(tmp_path / "default")
    _, sized = _record(tmp_path / "sized")
    assert (default["parameters"]["workers"], default["parameters"]["dynamics_threads"]) == (None, None)
    assert (sized["parameters"]["workers"], sized["parameters"]["dynamics_threads"]) == (1, 1)
    for img in images:
        name = f"{img.stem}_cp_masks.tif"
        assert (tmp_path / "sized" / name).read_bytes() == (tmp_path / "default" / name).read_bytes()


def test_threads_cap_is_recorded_and_leaves_the_masks_alone(tmp_path):
    """``--threads`` (an acquisition PC keeping cores for the microscope software): recorded in
    the run record's pipeline, and onnxruntime on one thread gives the default run's masks, byte for byte."""
    images = _crops(tmp_path / "in", 3)
    assert main(["run", str(tmp_path / "in"), *RUN, "--out", str(tmp_path / "default")]) == 0
    assert main(["run", str(tmp_path / "in"), *RUN, "--threads", "1", "--out", str(tmp_path / "capped")]) == 0
    _, default = _record(tmp_path / "default")
    _, capped = _record(tmp_path / "capped")
    assert (default["parameters"]["pipeline"]["cpu_threads"], capped["parameters"]["pipeline"]["cpu_threads"]) == (None, 1)
    for img in images:
        name = f"{img.stem}_cp_masks.tif"
        assert (tmp_path / "capped" / name).read_bytes() == (tmp_path / "default" / name).read_bytes()
