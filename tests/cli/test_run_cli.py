"""``cp3rt run``: outputs, resume/skip, bad files, read-only output folder, SIGKILL + re-run.

The model is a random-weight CPnet written by the reference's CPnet (see pipeline_testutil)
and exported once to ONNX; the commands get the .onnx path, so subprocesses need no torch.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ holds pipeline_testutil
import pipeline_testutil as U  # noqa: E402

from cp3rt.cli.app import main  # noqa: E402


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory) -> Path:
    from cp3rt.artefacts import resolve_model

    models = U.write_zoo(tmp_path_factory.mktemp("zoo"))
    with U.zoo_env(models, tmp_path_factory.mktemp("cache")):
        return resolve_model("cyto3").path


def write_images(folder: Path, n: int = 2, size: int = 160) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    src = U.data_image("stardist_dsb2018_nuclei/images/img2d.tif")
    paths = []
    for i in range(n):
        p = folder / f"img{i}.tif"
        y0 = (i * 37) % (src.shape[0] - size + 1)
        tifffile.imwrite(p, src[y0 : y0 + size, :size])
        paths.append(p)
    return paths


def cli(*args: str) -> int:
    return main(["run", *map(str, args)])


def test_help_teaches(capsys):
    assert main(["run", "--help"]) == 0
    out = capsys.readouterr().out
    for text in ("Examples", "--restore", "--diameter", "--save-seg", "_cp_masks.tif", "Exit code"):
        assert text in out


def test_folder_run_writes_all_outputs_then_skips(onnx_model, tmp_path, capsys):
    images = write_images(tmp_path / "in")
    out = tmp_path / "out"
    args = [tmp_path / "in", "--model", onnx_model, "--diameter", "30", "--flow-threshold", "0",
            "--save-seg", "--save-flows", "--overlay", "--out", out]
    assert cli(*args) == 0
    for img in images:
        masks = tifffile.imread(out / f"{img.stem}_cp_masks.tif")
        assert masks.shape == (160, 160) and masks.max() > 0
        flows = tifffile.imread(out / f"{img.stem}_flows.tif")  # Cellpose's names and layouts
        assert flows.shape == (160, 160, 3) and flows.dtype == np.uint8
        dp = tifffile.imread(out / f"{img.stem}_dP.tif")
        assert dp.shape == (2, 160, 160) and dp.dtype == np.float32
        assert tifffile.imread(out / f"{img.stem}_cellprob.tif").shape == (160, 160)
        seg = np.load(out / f"{img.stem}_seg.npy", allow_pickle=True).item()
        assert np.array_equal(seg["masks"], masks)
        assert (out / f"{img.stem}_overlay.png").stat().st_size > 0
    assert not [p for p in out.iterdir() if ".part" in p.name]
    printed = capsys.readouterr().out
    assert "images done" in printed and "dynamics" in printed
    assert "30.0" in printed  # the diameter the images were segmented at

    stamp = (out / "img0_cp_masks.tif").stat().st_mtime_ns
    assert cli(*args) == 0  # everything exists: skipped
    assert (out / "img0_cp_masks.tif").stat().st_mtime_ns == stamp
    assert cli(*args, "--overwrite") == 0
    assert (out / "img0_cp_masks.tif").stat().st_mtime_ns != stamp


def test_outputs_default_next_to_inputs_and_are_not_inputs_later(onnx_model, tmp_path):
    write_images(tmp_path, n=1)
    assert cli(tmp_path, "--model", onnx_model, "--diameter", "30", "--overlay") == 0
    assert (tmp_path / "img0_cp_masks.tif").is_file() and (tmp_path / "img0_overlay.png").is_file()
    assert cli(tmp_path, "--model", onnx_model, "--diameter", "30", "--overlay") == 0
    assert not list(tmp_path.glob("*_overlay_cp_masks.tif"))  # outputs not taken as inputs


def test_bad_files_are_reported_and_the_batch_goes_on(onnx_model, tmp_path, capsys):
    write_images(tmp_path / "in", n=1)
    (tmp_path / "in" / "broken.tif").write_bytes(b"II*\x00" + os.urandom(200))
    tifffile.imwrite(tmp_path / "in" / "zeros.tif", np.zeros((64, 64), np.uint16))
    tifffile.imwrite(tmp_path / "in" / "nan.tif", np.full((32, 32), np.nan, np.float32))
    tifffile.imwrite(tmp_path / "in" / "five_d.tif", np.zeros((2, 2, 2, 32, 32), np.uint8))
    out = tmp_path / "out"
    code = cli(tmp_path / "in", "--model", onnx_model, "--diameter", "30", "--flow-threshold", "0",
               "--out", out)
    assert code == 1
    err = capsys.readouterr().err
    failed = [line for line in err.splitlines() if line.startswith("failed")]
    assert len(failed) == 3, err
    for name in ("broken.tif", "nan.tif", "five_d.tif"):
        assert sum(name in line for line in failed) == 1, err
    assert tifffile.imread(out / "img0_cp_masks.tif").max() > 0
    assert tifffile.imread(out / "zeros_cp_masks.tif").max() == 0  # empty image: empty masks
    assert not (out / "broken_cp_masks.tif").exists()
    assert not [p for p in out.iterdir() if ".part" in p.name]


def test_missing_input_is_one_line_error(tmp_path, capsys):
    assert cli(tmp_path / "nope.tif", "--diameter", "30") != 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "nope.tif" in err and len(err.splitlines()) == 1


def _world_readable_copy(src: Path, dst_dir: Path) -> Path:
    dst = dst_dir / src.name
    shutil.copy(src, dst)
    shutil.copy(src.with_name(src.name + ".json"), dst.with_name(dst.name + ".json"))
    return dst


def _subprocess_env(workdir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(CP3RT_CACHE_DIR=str(workdir / "cache"), NUMBA_CACHE_DIR=str(workdir / "numba"),
               HOME=str(workdir))
    return env


def test_read_only_output_folder(onnx_model):
    """One line naming the folder and the problem, before any image is computed (a big batch does
    not compute every image only to fail writing each); nothing written. As root the write
    permission is ignored, so the command then runs as the unprivileged 'nobody'."""
    work = Path(tempfile.mkdtemp(prefix="cp3rt-ro-"))
    try:
        os.chmod(work, 0o777)
        model = _world_readable_copy(onnx_model, work)
        images = write_images(work / "in", n=1)
        out = work / "out"
        out.mkdir()
        for p in [work / "in", *images, model, model.with_name(model.name + ".json")]:
            os.chmod(p, 0o755 if p.is_dir() else 0o644)
        os.chmod(out, 0o555)
        cmd = [sys.executable, "-m", "cp3rt.cli.app", "run", str(work / "in"), "--model", str(model),
               "--diameter", "30", "--out", str(out)]
        if os.geteuid() == 0:
            cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *cmd]
        proc = subprocess.run(cmd, env=_subprocess_env(work), capture_output=True, text=True, timeout=300)
        assert proc.returncode == 1, proc.stderr
        [line] = proc.stderr.strip().splitlines()
        assert line == f"error: --out {out} is not writable; choose a folder you can write to.", proc.stderr
        assert "failed" not in proc.stdout and "[1/1]" not in proc.stdout  # no image was started
        assert list(out.iterdir()) == []
    finally:
        os.chmod(work / "out", 0o755) if (work / "out").exists() else None
        shutil.rmtree(work, ignore_errors=True)


@pytest.mark.slow
def test_sigkill_then_rerun_completes_without_partial_files(onnx_model, tmp_path):
    images = write_images(tmp_path / "in", n=6, size=300)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "cp3rt.cli.app", "run", str(tmp_path / "in"), "--model",
           str(onnx_model), "--diameter", "30", "--save-flows", "--out", str(out)]
    env = _subprocess_env(tmp_path)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while not (out / "img0_cp_masks.tif").exists():
            assert proc.poll() is None, "the batch ended before it could be killed"
            assert time.monotonic() < deadline, "no output appeared in time"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    done_before = sorted(p.name for p in out.glob("*_cp_masks.tif"))
    assert len(done_before) < len(images), "the batch finished before the kill; nothing resumed"
    # A temporary file as a kill in the middle of a write leaves it (cp3rt._fs naming).
    (out / ".img5_cp_masks.tif.x1y2.part.tif").write_bytes(b"partial")
    stamp = (out / "img0_cp_masks.tif").stat().st_mtime_ns
    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    for img in images:
        assert tifffile.imread(out / f"{img.stem}_cp_masks.tif").shape == (300, 300)
        assert tifffile.imread(out / f"{img.stem}_dP.tif").shape == (2, 300, 300)
    assert (out / "img0_cp_masks.tif").stat().st_mtime_ns == stamp  # finished image skipped
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]


def test_no_diameter_and_no_size_model_fails_once_with_a_hint(onnx_model, tmp_path, capsys, monkeypatch):
    """The exported cyto3 has a zoo size model; offline it cannot be fetched: one error, no outputs."""
    monkeypatch.setenv("CP3RT_ZOO_URL", "http://127.0.0.1:9/{basename}")  # nothing listens there
    monkeypatch.setenv("CP3RT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.cellpose/models
    monkeypatch.delenv("CELLPOSE_LOCAL_MODELS_PATH", raising=False)
    write_images(tmp_path / "in", n=2)
    assert cli(tmp_path / "in", "--model", onnx_model, "--out", tmp_path / "out") != 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "--diameter" in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_summary_names_the_diameters_used():
    from cp3rt.cli._run_render import _diameters

    assert _diameters([]) == "-"
    assert _diameters([17.0, 17.0]) == "17.0"
    assert _diameters([12.0, 30.0, 20.0]) == "12.0-30.0 (median 20.0)"
