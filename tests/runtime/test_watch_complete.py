"""Issue 18 item 1: a file being written is read only when complete. Prefixes of TIFFs (one
page, a stack), PNGs and .npy files are never judged complete; files written slowly in pieces,
with pauses longer than the settle interval, are read once, whole."""

from __future__ import annotations

import io
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image
from watch_testutil import Watching, blobs, stand_in, wait_until

from cp3rt.runtime.batch.watch.complete import Settler, file_key, looks_complete


def _encoded(kind: str) -> bytes:
    img = blobs(3, 80)
    buf = io.BytesIO()
    if kind == "tif":
        tifffile.imwrite(buf, img)
    elif kind == "stack.tif":
        tifffile.imwrite(buf, np.stack([img, img[::-1], img[:, ::-1]]), imagej=True, metadata={"axes": "TYX"})
    elif kind == "png":
        Image.fromarray((img // 256).astype(np.uint8)).save(buf, format="PNG")
    elif kind == "npy":
        np.save(buf, img)
    return buf.getvalue()


@pytest.mark.parametrize("kind", ["tif", "stack.tif", "png", "npy"])
def test_no_prefix_of_a_file_looks_complete(tmp_path, kind):
    """(A prefix that only lacks trailing padding holds the whole image: that one may pass.)"""
    from cp3rt.runtime.io import read_image

    data = _encoded(kind)
    path = tmp_path / f"x.{kind.split('.')[-1]}"
    path.write_bytes(data)
    assert looks_complete(path)
    whole = read_image(path)
    cuts = sorted({1, 8, 16, len(data) - 1, *range(1, len(data), max(1, len(data) // 97))})
    judged = []
    for cut in cuts:
        path.write_bytes(data[:cut])
        if looks_complete(path) and not np.array_equal(read_image(path), whole):
            judged.append(cut)
    assert not judged, f"{kind}: prefixes of {len(data)} bytes judged complete: {judged[:10]}"
    path.write_bytes(b"")
    assert not looks_complete(path)


def test_a_file_still_changing_is_not_ready_and_a_stable_complete_one_is(tmp_path):
    path = tmp_path / "a.tif"
    data = _encoded("tif")
    path.write_bytes(data[:100])
    settler = Settler(settle=0.05, give_up=1000)
    settler.add(path)
    time.sleep(0.1)
    assert settler.ready() == []  # stable, but a prefix
    path.write_bytes(data)
    assert settler.ready() == []  # changed: the settle clock starts again
    wait_until(lambda: settler.ready() == [(path, file_key(path), True)], 30, "the whole file to be ready")
    assert len(settler) == 0


def test_a_stable_file_that_never_parses_is_handed_on_after_give_up(tmp_path):
    path = tmp_path / "junk.tif"
    path.write_bytes(b"II*\x00" + bytes(50))
    settler = Settler(settle=0.01, give_up=0.2)
    settler.add(path)
    got: list = []
    wait_until(lambda: got.extend(settler.ready()) or got, 30, "give-up")
    assert got == [(path, file_key(path), False)]


def _write_slowly(path: Path, data: bytes, pieces: int, pause: float) -> None:
    step = -(-len(data) // pieces)
    with open(path, "wb") as fh:  # the way a camera driver writes: one handle, pieces, pauses
        for k in range(0, len(data), step):
            fh.write(data[k:k + step])
            fh.flush()
            os.fsync(fh.fileno())
            time.sleep(pause)


def test_files_written_slowly_in_pieces_are_read_only_when_complete(tmp_path, monkeypatch):
    """Pauses of 0.3 s between pieces, settle 0.1 s: only the parse check keeps the prefixes out."""
    import cp3rt.runtime.io as cio

    stand_in(monkeypatch)
    reads: list[tuple[str, int]] = []
    real = cio.read_image
    monkeypatch.setattr(cio, "read_image", lambda p: reads.append((Path(p).name, os.path.getsize(p))) or real(p))
    root = tmp_path / "in"
    (root / "t0002").mkdir(parents=True)
    files = {root / "one.tif": _encoded("tif"), root / "t0002" / "stack.tif": _encoded("stack.tif"),
             root / "pic.png": _encoded("png")}
    watch = Watching(root, tmp_path / "out", settle=0.1, give_up=60)
    writers = [threading.Thread(target=_write_slowly, args=(p, d, 7, 0.3)) for p, d in files.items()]
    for w in writers:
        w.start()
    for w in writers:
        w.join()
    wait_until(lambda: len(watch.ended()) == len(files), 120, "three images")
    summary = watch.stop()
    assert sorted(reads) == sorted((p.name, len(d)) for p, d in files.items())  # once each, whole
    assert summary.batch.count("done") == 3, [o.error for o in summary.batch.outcomes]
    assert tifffile.imread(tmp_path / "out" / "one_cp_masks.tif").shape == (80, 80)
    assert tifffile.imread(tmp_path / "out" / "t0002" / "stack_cp_masks.tif").shape == (3, 80, 80)
