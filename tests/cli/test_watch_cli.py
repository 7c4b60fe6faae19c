"""Issue 18 item 1, ``cp3rt watch`` as a real process with the shipped small ONNX model and crops
of the shipped sample: SIGTERM mid-image finishes that image, leaves no partial file and exits
143; a SIGKILLed watch restarted loses and repeats nothing (its journal); --help; a missing
folder is one line."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import tifffile
from bad_corpus import MODEL, crops, env_for

from cp3rt.cli.app import main

RUN = ["--model", str(MODEL), "--diameter", "17", "--settle", "0.1"]


def _crops(folder: Path, n: int, size: int = 160) -> list[Path]:
    return crops(folder, n, size)


def _watch(*args, workdir: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "cp3rt.cli.app", "watch", *map(str, args)], env=env_for(workdir),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _until(check, proc: subprocess.Popen, what: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def _records(out: Path) -> list[dict]:
    path = out / "cp3rt_watch.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def test_sigterm_mid_image_finishes_it_leaves_no_partial_output_and_exits_143(tmp_path):
    images = _crops(tmp_path / "in", 8)
    out = tmp_path / "out"
    proc = _watch(tmp_path / "in", *RUN, "--out", out, workdir=tmp_path)
    locks: list[Path] = []
    _until(lambda: locks.extend(out.glob(".img*_cp_masks.tif.lock")) or locks, proc, "an image in flight")
    proc.send_signal(signal.SIGTERM)  # while the image holds its claim (.lock): mid-image
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr
    assert "Traceback" not in stderr and "stopped by SIGTERM" in stderr, stderr
    assert not [p.name for p in out.rglob(".*")], "temporary or lock files left behind"
    done = sorted(p.name for p in out.glob("*_cp_masks.tif"))
    assert 0 < len(done) < len(images), stderr
    assert locks[0].name[1:-len(".lock")] in done  # the image in flight was finished
    for name in done:
        assert tifffile.imread(out / name).shape == (160, 160)
    assert sorted(r["file"].replace(".tif", "_cp_masks.tif") for r in _records(out)) == done
    record = json.loads(next(out.glob("cp3rt_watch_*.json")).read_text())
    assert record["tool"] == "cp3rt watch" and record["stopped_by"] == "SIGTERM"
    assert len(record["images"]) == len(done)


def test_a_killed_watch_restarted_loses_and_repeats_nothing(tmp_path):
    images = _crops(tmp_path / "in", 8)
    out = tmp_path / "out"
    proc = _watch(tmp_path / "in", *RUN, "--out", out, workdir=tmp_path)
    _until(lambda: len(_records(out)) >= 2, proc, "two journal records")
    proc.kill()  # SIGKILL: no handler, no summary, the journal as it was
    proc.communicate(timeout=60)
    first = {r["file"] for r in _records(out)}
    masks_before = {p.name: p.stat().st_mtime_ns for p in out.glob("*_cp_masks.tif")}
    rerun = _watch(tmp_path / "in", *RUN, "--out", out, "--once", workdir=tmp_path)
    stdout, stderr = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, stderr
    records = _records(out)
    per_file = Counter(r["file"] for r in records)
    assert sorted(per_file) == sorted(p.name for p in images) and set(per_file.values()) == {1}, per_file
    second = [r for r in records if r["file"] not in first]
    assert {r["status"] for r in second} <= {"done", "skipped"}
    for r in second:  # computed now, unless its outputs were written just before the kill
        if r["status"] == "skipped":
            assert r["file"].replace(".tif", "_cp_masks.tif") in masks_before
    for name in first:  # nothing done before the kill was written again
        masks = name.replace(".tif", "_cp_masks.tif")
        assert (out / masks).stat().st_mtime_ns == masks_before[masks]
    assert not [p.name for p in out.rglob(".*")]
    assert len(list(out.glob("*_cp_masks.tif"))) == len(images)


def test_help_names_the_journal_and_the_run_options(capsys):
    assert main(["watch", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for needle in ("--pattern", "--poll", "--settle", "--once", "--model", "--restore", "--diameter",
                   "--backend", "--out", "--threads", "cp3rt_watch.jsonl", "143"):
        assert needle in text, needle
    assert "--cluster" not in text and "--block-size" not in text


def test_an_out_that_is_a_file_is_one_line_before_watching(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    (tmp_path / "taken").write_text("a file")
    assert main(["watch", str(tmp_path / "in"), "--once", "--out", str(tmp_path / "taken")]) == 2  # a bad option
    err = capsys.readouterr().err.strip()
    assert err == f"error: --out {tmp_path / 'taken'} is a file; give a folder (it is created if missing).", err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "taken"]  # no journal, no record


def test_a_missing_folder_is_one_line(tmp_path, capsys):
    assert main(["watch", str(tmp_path / "nope"), "--once"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "is not a folder" in err and len(err.splitlines()) == 1, err
    assert not list(tmp_path.iterdir())  # no run record written anywhere


def _events(tmp_path):
    from cp3rt.runtime.batch.files import ImageOutcome
    from cp3rt.runtime.batch.watch import WatchEvent

    ok = ImageOutcome(tmp_path / "a.tif", "done", 12, {"segment": 0.5})
    bad = ImageOutcome(tmp_path / "b.tif", "failed", error=f"{tmp_path / 'b.tif'} is empty (0 bytes).")
    return [WatchEvent("watching", tmp_path, note="inotify"), WatchEvent("queued", tmp_path / "a.tif", 1),
            WatchEvent("start", tmp_path / "a.tif", 3, 1), WatchEvent("end", tmp_path / "a.tif", 3, 1, ok, 0.9),
            WatchEvent("end", tmp_path / "b.tif", 2, 0, bad, 0.2)]


def test_headless_log_has_one_line_per_image_with_the_backlog(tmp_path):
    import io

    from rich.console import Console

    from cp3rt.cli._watch_render import Status

    buf = io.StringIO()
    with Status(tmp_path, console=Console(file=buf, force_terminal=False, width=300)) as status:
        for e in _events(tmp_path):
            status.update(e)
    lines = buf.getvalue().splitlines()
    assert lines[0].startswith("watching") and "inotify" in lines[0]
    assert lines[1].startswith("done") and "a.tif: 12 objects, 0.50 s, latency 0.90 s, backlog 3" in lines[1]
    assert lines[2].startswith("failed") and "b.tif is empty" in lines[2] and len(lines) == 3


def test_on_a_terminal_the_status_line_shows_the_backlog(tmp_path):
    import io

    from rich.console import Console

    from cp3rt.cli._watch_render import Status

    buf = io.StringIO()
    status = Status(tmp_path, console=Console(file=buf, force_terminal=True, width=300))
    with status:
        for e in _events(tmp_path)[:4]:
            status.update(e)
        line = status._line()
    assert "done 1" in line and "backlog 3" in line and "settling 1" in line and "a.tif: 12 objects" in line
    assert "latency" not in buf.getvalue()  # no per-image log lines on a terminal: the status line says it


def test_the_run_record_names_the_command_as_typed_not_the_host_process(tmp_path):
    """In-process (as here, under pytest) the record says `cp3rt watch ...`, not sys.argv."""
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    args = ["watch", str(folder), "--once", "--model", "cp3rt_nuclei", "--diameter", "17", "--out", str(out)]
    assert main(args) == 0
    record = json.loads(next(out.glob("cp3rt_watch_*.json")).read_text())
    assert record["command"] == ["cp3rt", *args]


def test_threads_caps_the_watch_and_is_recorded(tmp_path):
    """``--threads`` reaches the pipeline of a watch (the acquisition PC's case); a subprocess,
    since the cap applies to the thread that runs the images."""
    images = _crops(tmp_path / "in", 2)
    proc = _watch(tmp_path / "in", "--once", *RUN, "--threads", "1", "--out", tmp_path / "out", workdir=tmp_path)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    record = json.loads(next((tmp_path / "out").glob("cp3rt_watch_*.json")).read_text())
    assert record["parameters"]["pipeline"]["cpu_threads"] == 1
    assert all((tmp_path / "out" / f"{img.stem}_cp_masks.tif").is_file() for img in images)
