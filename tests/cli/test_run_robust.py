"""Issue 13's "Must show" for ``cp3rt run``: a corpus of bad inputs through run, eval and
degrade (no traceback, one line per bad file, valid outputs for the good ones, documented exit
codes); two concurrent runs on one folder (both exit 0, outputs identical to a single run);
SIGINT / SIGTERM (summary, no partial files, exit 130 / 143). Real processes and real signals,
the shipped small ONNX model and crops of the shipped sample, so the whole file stays fast."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
from bad_corpus import MODEL, SAMPLE, crops, env_for, failed_lines, sample, write_corpus

from cp3rt.cli.app import main

RUN = ["--model", str(MODEL), "--diameter", "17"]


def _crops(folder: Path, n: int, size: int = 128) -> list[Path]:
    return crops(folder, n, size)


def _cp3rt(*args, workdir: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "cp3rt.cli.app", *map(str, args)], env=env_for(workdir),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(path: Path, proc: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.02)


def _summary_row(stdout: str) -> dict[str, int]:
    """The counts of the summary table (images done, skipped, failed)."""
    for line in stdout.splitlines():
        cells = [c.strip() for c in re.split(r"[│┃|]", line) if c.strip()]
        # done, skipped, failed, objects (integers), then diameter px and total s
        if len(cells) >= 5 and all(re.fullmatch(r"\d+", c) for c in cells[:4]):
            return dict(zip(("done", "skipped", "failed"), map(int, cells[:3])))
    raise AssertionError(f"no summary table in:\n{stdout}")


def _no_partials(folder: Path) -> None:
    assert not [p.name for p in folder.rglob(".*")], "temporary or lock files left behind"


# the corpus -----------------------------------------------------------------------------------

def test_bad_input_corpus_through_run_eval_and_degrade(tmp_path, capsys):
    expect = write_corpus(tmp_path / "in")
    out = tmp_path / "out"
    assert main(["run", str(tmp_path / "in"), *RUN, "--out", str(out)]) == 1  # some failed: 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    failed = failed_lines(err)
    for name, want in expect.items():
        mine = [line for line in failed if f"/{name}" in line]
        if want == "fail":
            assert len(mine) == 1, (name, err)
        else:
            assert not mine, (name, err)
            masks = tifffile.imread(out / f"{Path(name).stem}_cp_masks.tif")
            image = tifffile.imread(tmp_path / "in" / name) if name.endswith(".tif") else None
            assert masks.dtype in (np.uint16, np.uint32) and masks.ndim == 2  # blocks: uint32 BigTIFF
            assert image is None or masks.shape == image.shape[:2]
    assert len(failed) == sum(w == "fail" for w in expect.values()), err
    assert tifffile.imread(out / "good_cp_masks.tif").max() > 0
    _no_partials(out)

    # eval: predictions of the run against the sample's own ground truth, then bad ground truths
    gt = tmp_path / "gt"
    gt.mkdir()
    truth = tifffile.imread(SAMPLE.with_name("dsb2018_nuclei_masks.tif"))[:96, :96]
    tifffile.imwrite(gt / "good.tif", truth)
    assert main(["eval", "--pred", str(out), "--gt", str(gt)]) == 0
    assert "Traceback" not in capsys.readouterr().err
    for bad in ("nan.tif", "garbage.tif", "truncated.tif", "zero_bytes.tif", "header_only_100k.tif"):
        shutil.copy(tmp_path / "in" / bad, gt / "good.tif")
        assert main(["eval", "--pred", str(out), "--gt", str(gt)]) != 0
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in lines[0], lines

    # degrade: every readable good file written, every bad one a line naming it, exit 1
    assert main(["degrade", str(tmp_path / "in"), "--noise", "poisson", "--out", str(tmp_path / "deg")]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    for name, want in expect.items():
        if want == "ok":
            assert (tmp_path / "deg" / f"{Path(name).stem}.tif").is_file(), name


# two runs at once -----------------------------------------------------------------------------

def test_two_concurrent_runs_share_a_folder_and_match_a_single_run(tmp_path, capsys):
    images = _crops(tmp_path / "in", 12, size=192)
    ref = tmp_path / "ref"
    assert main(["run", str(tmp_path / "in"), *RUN, "--save-flows", "--out", str(ref)]) == 0
    capsys.readouterr()
    expected = {p.name: p.read_bytes() for p in ref.iterdir() if not p.name.startswith("cp3rt_run_")}
    assert len([k for k in expected if k.endswith("_cp_masks.tif")]) == len(images) < len(expected)
    overlapped = 0
    for attempt in range(3):
        out = tmp_path / f"out{attempt}"
        first = _cp3rt("run", tmp_path / "in", *RUN, "--save-flows", "--out", out, workdir=tmp_path)
        _wait_for(out / ".img00_cp_masks.tif.lock", first)  # the first is computing: start the second
        second = _cp3rt("run", tmp_path / "in", *RUN, "--save-flows", "--out", out, workdir=tmp_path)
        (o1, e1), (o2, e2) = first.communicate(timeout=120), second.communicate(timeout=120)
        assert (first.returncode, second.returncode) == (0, 0), (e1, e2)
        assert "Traceback" not in e1 + e2
        got = {p.name: p.read_bytes() for p in out.iterdir() if not p.name.startswith("cp3rt_run_")}
        assert got == expected, sorted(k for k in expected if got.get(k) != expected[k])
        a, b = _summary_row(o1), _summary_row(o2)
        assert a["done"] + b["done"] == len(images), (o1, o2)  # no image computed twice
        assert a["failed"] == b["failed"] == 0
        assert a["done"] + a["skipped"] == b["done"] + b["skipped"] == len(images)
        overlapped += b["done"] > 0 or "waiting" in e2
        _no_partials(out)
    assert overlapped, "the second run never ran while the first was still working"


def test_a_folder_runs_on_numbas_workqueue_layer_without_aborting(tmp_path, capsys):
    """The streaming workers run the dynamics on several threads at once. numba's fallback layer
    (workqueue: no TBB, no OpenMP, e.g. a pip install on macOS) aborts the process on concurrent
    parallel launches (rc 134 before the launch guard); cp3rt serialises them there instead."""
    images = _crops(tmp_path / "in", 6, size=256)
    ref = tmp_path / "ref"
    assert main(["run", str(tmp_path / "in"), *RUN, "--out", str(ref)]) == 0
    capsys.readouterr()
    env = dict(env_for(tmp_path), NUMBA_THREADING_LAYER="workqueue")
    proc = subprocess.run([sys.executable, "-m", "cp3rt.cli.app", "run", str(tmp_path / "in"), *RUN,
                           "--out", str(tmp_path / "wq")], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for image in images:
        name = f"{image.stem}_cp_masks.tif"
        assert np.array_equal(tifffile.imread(tmp_path / "wq" / name), tifffile.imread(ref / name)), name


# signals --------------------------------------------------------------------------------------

@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_ends_the_run_cleanly_with_a_summary(tmp_path, sig):
    images = _crops(tmp_path / "in", 24)
    out = tmp_path / "out"
    proc = _cp3rt("run", tmp_path / "in", *RUN, "--out", out, workdir=tmp_path)
    _wait_for(out / "img00_cp_masks.tif", proc)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, stderr
    assert "Traceback" not in stderr and f"stopped by {sig.name}" in stderr, stderr
    row = _summary_row(stdout)
    done = sorted(out.glob("*_cp_masks.tif"))
    assert 0 < row["done"] == len(done) < len(images), stdout
    for p in done:
        assert tifffile.imread(p).shape == (128, 128)
    _no_partials(out)
    rerun = _cp3rt("run", tmp_path / "in", *RUN, "--out", out, workdir=tmp_path)
    stdout, stderr = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, stderr
    assert _summary_row(stdout) == {"done": len(images) - len(done), "skipped": len(done), "failed": 0}


def test_help_documents_exit_codes_and_output_names(capsys):
    assert main(["run", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for needle in ("130", "143", "claimed", "mirror", "same name"):
        assert needle in text, needle


# one image's surprise, --out naming a file (items 3 and 9, the batch half) ---------------------

@pytest.mark.parametrize("verbose", [False, True])
def test_an_unexpected_error_is_one_line_and_a_traceback_only_with_v(tmp_path, capsys, monkeypatch, verbose):
    import cp3rt.runtime.io as cio

    _crops(tmp_path / "in", 3, size=64)
    real = cio.read_image
    monkeypatch.setattr(cio, "read_image", lambda p: (_ for _ in ()).throw(MemoryError("56 GiB"))
                        if Path(p).name == "img01.tif" else real(p))
    args = ["run", str(tmp_path / "in"), *RUN, "--out", str(tmp_path / "out")]
    assert main(["-v", *args] if verbose else args) == 1
    err = capsys.readouterr().err
    failed = failed_lines(err)
    assert len(failed) == 1 and "img01.tif" in failed[0] and "MemoryError: 56 GiB" in failed[0], err
    assert ("Traceback" in err) == verbose
    assert len(list((tmp_path / "out").glob("*_cp_masks.tif"))) == 2  # the batch went on


def test_out_naming_a_file_is_one_error_before_any_image(tmp_path, capsys):
    _crops(tmp_path / "in", 2, size=64)
    (tmp_path / "taken").write_text("a file")
    assert main(["run", str(tmp_path / "in"), *RUN, "--out", str(tmp_path / "taken")]) == 2  # a bad option
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --out") and "taken is a file" in err and len(err.splitlines()) == 1, err


def test_sigterm_during_a_block_run_leaves_no_partial_bigtiff(tmp_path):
    big = tmp_path / "big.tif"
    tifffile.imwrite(big, np.tile(sample(512), (2, 2)))  # 1024 px, forced through blocks of 256
    proc = _cp3rt("run", big, *RUN, "--blocks", "--block-size", "256", workdir=tmp_path)
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".big_cp_masks.tif.*.part*")):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143 and "stopped by SIGTERM" in stderr and "1 not done" in stderr, stderr
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("big")) == ["big.tif"]
    _no_partials(tmp_path)
