"""Issue 18 item 1, library level (numpy stand-in net): bad files reported and skipped while the
others proceed; a restart neither redoes nor skips (journal); a torn journal line survives;
new subfolders are picked up; the polling fallback works without watchdog; the backlog is
visible and files are taken in arrival order; a huge TIFF goes through the blocks."""

from __future__ import annotations

import json
import os
import sys
import threading

import tifffile
from scale_testutil import NumpyEngine, blob_image
from watch_testutil import RUN, Watching, stand_in, wait_until, write_tif

from cp3rt import Pipeline
from cp3rt import defaults as D
from cp3rt.runtime import OutputOptions, PipelineConfig
from cp3rt.runtime.batch.blocks.files import segment_file
from cp3rt.runtime.batch.watch import WatchOptions, loop, watch_folder
from cp3rt.runtime.batch.watch.journal import Journal, read_records
from cp3rt.runtime.quality.metrics import average_precision

JOURNAL = "cp3rt_watch.jsonl"


def _once(root, out, **kw):
    return watch_folder(root, PipelineConfig(), RUN, OutputOptions(out_dir=out),
                        WatchOptions(once=True, settle=0.05, give_up=kw.pop("give_up", 0.3), **kw))


def _status(summary):
    return {o.path.name: o.status for o in summary.batch.outcomes}


def test_bad_files_are_reported_and_skipped_while_the_others_proceed(tmp_path, monkeypatch):
    stand_in(monkeypatch)
    root, out = tmp_path / "in", tmp_path / "out"
    for i in range(3):
        write_tif(root / f"good{i}.tif", i)
    (root / "garbage.tif").write_bytes(b"II*\x00" + os.urandom(300))
    (root / "empty.png").write_bytes(b"")
    data = (root / "good0.tif").read_bytes()
    (root / "cut.tif").write_bytes(data[: len(data) // 2])
    first = _once(root, out)
    assert _status(first) == {"good0.tif": "done", "good1.tif": "done", "good2.tif": "done",
                              "garbage.tif": "failed", "empty.png": "failed", "cut.tif": "failed"}
    for o in first.batch.outcomes:
        if o.status == "failed":
            assert o.path.name in o.error and "never became a complete image" in o.error, o.error
    records = read_records(out / JOURNAL)
    assert sorted((r["file"], r["status"]) for r in records) == sorted(
        (name, status) for name, status in _status(first).items())
    assert _status(_once(root, out)) == {}  # a failed file is not retried while unchanged...
    write_tif(root / "cut.tif", 7)  # ...and is once it is written again
    assert _status(_once(root, out)) == {"cut.tif": "done"}


def test_a_restart_neither_redoes_nor_skips(tmp_path, monkeypatch):
    stand_in(monkeypatch)
    root, out = tmp_path / "in", tmp_path / "out"
    for i in range(3):
        write_tif(root / f"a{i}.tif", i)
    assert _status(_once(root, out)) == {f"a{i}.tif": "done" for i in range(3)}
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.glob("*_cp_masks.tif")}
    write_tif(root / "plate" / "B2" / "a0.tif", 5)  # same name, another folder: mirrored under out
    write_tif(root / "a3.tif", 3)
    assert _status(_once(root, out)) == {"a0.tif": "done", "a3.tif": "done"}
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("a[012]_cp_masks.tif")} == mtimes
    assert (out / "plate" / "B2" / "a0_cp_masks.tif").is_file()
    files = [r["file"] for r in read_records(out / JOURNAL)]
    assert sorted(files) == ["a0.tif", "a1.tif", "a2.tif", "a3.tif", "plate/B2/a0.tif"]
    before = tifffile.imread(out / "a1_cp_masks.tif")
    write_tif(root / "a1.tif", 11)  # the same name written again (a new acquisition): done again
    assert _status(_once(root, out)) == {"a1.tif": "done"}
    assert not (tifffile.imread(out / "a1_cp_masks.tif") == before).all()


def test_a_torn_last_journal_line_is_ignored_and_the_next_record_starts_a_new_line(tmp_path, monkeypatch):
    """A crash while the record of b.tif was written: b's outputs are there (written atomically
    before its record), so the restart skips it without computing it, and c.tif is done."""
    stand_in(monkeypatch)
    root, out = tmp_path / "in", tmp_path / "out"
    for name in ("a", "b"):
        write_tif(root / f"{name}.tif", ord(name))
    _once(root, out)
    lines = (out / JOURNAL).read_bytes().splitlines(keepends=True)
    b_line = next(line for line in lines if b'"b.tif"' in line)
    (out / JOURNAL).write_bytes(b"".join(line for line in lines if line != b_line) + b_line[: len(b_line) // 2])
    b_masks = (out / "b_cp_masks.tif").stat().st_mtime_ns
    write_tif(root / "c.tif", 3)
    with Journal(out / JOURNAL, root) as journal:
        assert journal.torn == 1 and len(journal) == 1
    again = _once(root, out)
    assert _status(again) == {"b.tif": "skipped", "c.tif": "done"}
    assert (out / "b_cp_masks.tif").stat().st_mtime_ns == b_masks
    text = (out / JOURNAL).read_text()
    good = [json.loads(line) for line in text.splitlines()[:1] + text.splitlines()[2:]]
    assert [r["file"] for r in good] == ["a.tif", "b.tif", "c.tif"]
    assert [r["file"] for r in read_records(out / JOURNAL)] == ["a.tif", "b.tif", "c.tif"]


def test_new_subfolders_and_files_moved_in_are_picked_up(tmp_path, monkeypatch):
    stand_in(monkeypatch)
    root, out = tmp_path / "in", tmp_path / "out"
    root.mkdir()
    watch = Watching(root, out)
    write_tif(root / "plate" / "A1" / "t0001.tif", 1)  # a folder that did not exist at the start
    tmp = write_tif(root / ".t0002.tif.part", 2)  # hidden while written, then renamed
    os.replace(tmp, root / "plate" / "A1" / "t0002.tif")
    wait_until(lambda: len(watch.ended()) == 2, 60, "two images")
    summary = watch.stop()
    assert summary.source == "inotify"
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*_cp_masks.tif")) == [
        "plate/A1/t0001_cp_masks.tif", "plate/A1/t0002_cp_masks.tif"]


def test_polling_fallback_without_watchdog(tmp_path, monkeypatch):
    stand_in(monkeypatch)
    for name in ("watchdog", "watchdog.observers", "watchdog.events"):
        monkeypatch.setitem(sys.modules, name, None)  # import fails as if it were not installed
    root, out = tmp_path / "in", tmp_path / "out"
    write_tif(root / "first.tif", 1)
    watch = Watching(root, out, poll=0.2)
    write_tif(root / "late" / "second.tif", 2)
    wait_until(lambda: len(watch.ended()) == 2, 60, "two images")
    summary = watch.stop()
    assert summary.source.startswith("polling every 0.2 s")
    watch = Watching(root, out)  # no --poll, no watchdog: polls anyway and says why
    write_tif(root / "third.tif", 3)
    wait_until(lambda: len(watch.ended()) == 1, 60, "the third image")
    assert "watchdog is not installed" in watch.stop().source


def test_backlog_is_visible_and_files_are_taken_in_arrival_order(tmp_path, monkeypatch):
    import cp3rt.runtime.io as cio

    stand_in(monkeypatch)
    gate = threading.Event()
    real = cio.read_image
    monkeypatch.setattr(cio, "read_image", lambda p: (gate.wait(60), real(p))[1])
    root, out = tmp_path / "in", tmp_path / "out"
    root.mkdir()
    watch = Watching(root, out)
    names = [f"f{i}.tif" for i in range(5)]
    for i, name in enumerate(names):
        write_tif(root / name, i)
        wait_until(lambda: sum(e.kind == "queued" for e in watch.events) == i + 1, 60, f"{name} queued")
    wait_until(lambda: any(e.kind == "queued" and e.backlog >= 4 for e in watch.events), 60, "backlog 4")
    gate.set()
    wait_until(lambda: len(watch.ended()) == 5, 60, "five images")
    watch.stop()
    assert [e.path.name for e in watch.ended()] == names
    assert [e.backlog for e in watch.ended()] == [4, 3, 2, 1, 0]  # f0 was in flight while 1-4 queued
    assert all(tifffile.imread(out / f"f{i}_cp_masks.tif").max() > 0 for i in range(5))


def test_patterns_choose_the_inputs_and_an_output_folder_inside_the_tree_is_not_watched(tmp_path, monkeypatch):
    stand_in(monkeypatch)
    root = tmp_path / "acq"
    write_tif(root / "s1_w1.tif", 1)
    write_tif(root / "s1_w2.tif", 2)
    write_tif(root / "A1" / "s2_w1.tif", 3)
    (root / "notes.txt").write_text("not an image")
    out = root / "masks"
    first = watch_folder(root, PipelineConfig(), RUN, OutputOptions(out_dir=out),
                         WatchOptions(once=True, settle=0.05, patterns=("*_w1*.tif",)))
    assert sorted(_status(first)) == ["s1_w1.tif", "s2_w1.tif"]
    write_tif(out / "dropped_here.tif", 4)  # inside the output folder: never an input
    again = watch_folder(root, PipelineConfig(), RUN, OutputOptions(out_dir=out),
                         WatchOptions(once=True, settle=0.05))
    assert sorted(_status(again)) == ["s1_w2.tif"]


def test_a_later_file_of_the_same_stem_is_refused_in_a_later_session_too(tmp_path, monkeypatch):
    """x.tif done in one session, x.png arriving in the next: x.png would be taken for done (its
    masks file exists) or overwrite x.tif's; it fails naming both, and x.tif's masks stay."""
    import numpy as np
    from PIL import Image

    stand_in(monkeypatch)
    root, out = tmp_path / "in", tmp_path / "out"
    write_tif(root / "x.tif", 1)
    assert _status(_once(root, out)) == {"x.tif": "done"}
    masks = (out / "x_cp_masks.tif").read_bytes()
    Image.fromarray((tifffile.imread(root / "x.tif") // 256).astype(np.uint8)).save(root / "x.png")
    second = _once(root, out)
    assert _status(second) == {"x.png": "failed"}
    (outcome,) = second.batch.outcomes
    assert "x.png" in outcome.error and "x.tif" in outcome.error and "\n" not in outcome.error
    assert (out / "x_cp_masks.tif").read_bytes() == masks


def test_a_huge_tiff_is_segmented_in_blocks_as_cp3rt_run_does(tmp_path, monkeypatch):
    """A TIFF over the huge-image side dropped into a watched folder goes through the blocks
    (bounded memory, labels to a BigTIFF) instead of being read whole; its masks are those of
    the image in one piece. The regular file beside it is read whole as before."""
    stand_in(monkeypatch)
    in_blocks = []
    monkeypatch.setattr(loop, "segment_file", lambda *a, **kw: in_blocks.append(a[1]) or segment_file(*a, **kw))
    root, out = tmp_path / "in", tmp_path / "out"
    root.mkdir()
    huge = blob_image((96, D.HUGE_IMAGE_SIDE + 160), 40, 5, radius=7)[0]
    tifffile.imwrite(root / "strip.tif", huge)
    write_tif(root / "small.tif", 1)
    assert _status(_once(root, out)) == {"strip.tif": "done", "small.tif": "done"}
    assert [p.name for p in in_blocks] == ["strip.tif"]
    with tifffile.TiffFile(out / "strip_cp_masks.tif") as tif:
        masks = tif.asarray()
        assert tif.is_bigtiff and masks.shape == huge.shape
    with Pipeline.from_engines(NumpyEngine(nchan=2), run=RUN) as p:
        whole = p.run(huge).masks
    assert whole.max() > 20 and average_precision(whole, masks, [0.9])[0][0] >= 0.99
    assert tifffile.imread(out / "small_cp_masks.tif").max() == 6  # the regular file, whole
