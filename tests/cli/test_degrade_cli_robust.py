"""``cp3rt degrade`` under bad inputs and options (issue 13 items 7 and 9): options are checked
before the first image (one line, exit 2); a bad file is one line naming it and the run goes
on; the record says what was written and what failed; the exit code is 1 if any file failed."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import tifffile

from cp3rt.cli.app import main


@pytest.fixture()
def folder(tmp_path):
    src = tmp_path / "clean"
    src.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a", "c"):
        tifffile.imwrite(src / f"{name}.tif", (rng.random((40, 50)) * 1000).astype(np.uint16))
    return src


def _run(capsys, *args):
    rc = main(["degrade", *map(str, args)])
    out, err = capsys.readouterr()
    return rc, out, err


def _lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.strip()]


@pytest.mark.parametrize("args,needle", [
    (["--noise", "poisson", "--seed", "-1"], "seed=-1"),
    (["--noise", "poisson", "--pscale", "1e30"], "pscale"),
    (["--noise", "blur", "--sigma", "1e6"], "sigma"),
    (["--noise", "blur", "--diameter", "1e9"], "diameter"),
    (["--noise", "downsample", "--ds", "2", "--diameter", "1e9"], "diameter"),
    (["--noise", "poisson", "--diameter", "nan"], "diameter"),
])
def test_bad_options_one_line_exit_2_before_any_image(folder, tmp_path, capsys, args, needle):
    t0 = time.perf_counter()
    rc, out, err = _run(capsys, folder, *args, "--out", tmp_path / "o")
    assert time.perf_counter() - t0 < 30  # no hang
    assert rc == 2, err
    assert len(_lines(err)) == 1 and needle in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("bad,needle", [
    (np.full((40, 50), np.nan, np.float32), "NaN"),
    (np.where(np.eye(40, 50) > 0, np.inf, 1.0).astype(np.float32), "Inf"),
    (np.full((40, 50), 1e300, np.float64), "beyond float32 range (max 3.4e+38)"),
    (np.full((40, 50), 1 + 2j, np.complex64), "dtype complex64; expected real numbers"),
])
def test_bad_file_is_one_line_and_the_rest_is_written(folder, tmp_path, capsys, bad, needle):
    tifffile.imwrite(folder / "b.tif", bad)
    out_dir = tmp_path / "o"
    rc, out, err = _run(capsys, folder, "--noise", "poisson", "--pscale", "5", "--out", out_dir)
    assert rc == 1
    lines = _lines(err)
    assert len(lines) == 1 and "b.tif" in lines[0] and needle in lines[0], err
    assert sorted(p.name for p in out_dir.iterdir()) == ["a.tif", "c.tif", "cp3rt_degrade.json"]
    record = json.loads((out_dir / "cp3rt_degrade.json").read_text())
    assert [e["output"].rsplit("/", 1)[-1] for e in record["images"]] == ["a.tif", "c.tif"]
    assert len(record["failed"]) == 1 and record["failed"][0]["input"].endswith("b.tif")
    assert record["complete"] is True
    assert "wrote 2 image(s)" in out and "1 failed" in out


def test_unreadable_file_does_not_stop_the_folder(folder, tmp_path, capsys):
    (folder / "b.tif").write_bytes(b"not a tiff at all")
    rc, out, err = _run(capsys, folder, "--noise", "poisson", "--out", tmp_path / "o")
    assert rc == 1 and "b.tif" in err and "Traceback" not in err
    assert (tmp_path / "o" / "c.tif").is_file()


def test_record_is_kept_up_to_date_while_running(folder, tmp_path):
    from cp3rt.runtime.quality.degrade import FixedNoise, degrade_files

    seen = []

    def progress(i, n, name):
        seen.append(json.loads((tmp_path / "o" / "cp3rt_degrade.json").read_text()))

    run = degrade_files(sorted(folder.glob("*.tif")), FixedNoise(pscale=5.0), tmp_path / "o",
                        progress=progress)
    assert [len(r["images"]) for r in seen] == [1, 2]
    assert [r["complete"] for r in seen] == [False, False]
    assert json.loads(run.record.read_text())["complete"] is True
    assert run.failed == ()


def test_out_pointing_at_a_file_is_one_line_before_any_image(folder, tmp_path, capsys):
    target = tmp_path / "out.tif"
    target.write_bytes(b"x")
    rc, out, err = _run(capsys, folder, "--noise", "poisson", "--out", target)
    assert rc == 2 and len(_lines(err)) == 1 and "--out" in err and "is a file" in err
    assert "[1/" not in out
