"""``cp3rt warmup`` (issue 18 item 2), as real processes with a fresh numba cache of their own:
a cold ``cp3rt run`` says it compiles first; ``cp3rt warmup`` compiles every kernel the pipeline
uses (2-D, 3-D, outlines) and opens the engines; a later ``cp3rt run`` - 2-D with pictures, a
volume with --do-3d - compiles nothing: numba's cache files are the same bytes, same times,
and no notice is printed. Judged on the cache files, never on time.

The model is the shipped cp3rt_nuclei ONNX (no torch, no download)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import tifffile

from cp3rt.runtime.batch import warmup as W
from cp3rt.runtime.batch.kernel_cache import COLD_NOTICE, KERNEL_MODULES_2D, KERNEL_MODULES_3D

NOTICE = COLD_NOTICE.split(" (")[0]  # "compiling numba kernels"


def _cp3rt(*args: object, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "cp3rt.cli.app", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in folder.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_warmup_then_runs_compile_nothing(tmp_path):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba"), CP3RT_CACHE_DIR=str(tmp_path / "cache"),
               HOME=str(tmp_path))
    env.pop("NUMBA_DISABLE_JIT", None)
    image = tmp_path / "img.tif"
    tifffile.imwrite(image, W._image_of(W._discs((200, 180), 12, 9.0, seed=7), seed=8))
    volume = tmp_path / "vol.tif"
    tifffile.imwrite(volume, W._image_of(W._discs((16, 72, 72), 5, 6.0, seed=9), seed=10))
    run = ("--model", "cp3rt_nuclei", "--backend", "ort", "--diameter", "14")

    cold = _cp3rt("run", image, *run, "--out", tmp_path / "cold", env=env)
    assert NOTICE in cold.stderr  # said before the first image, not a bar sitting at 0/1
    second = _cp3rt("run", image, *run, "--out", tmp_path / "second", env=env)
    assert NOTICE not in second.stderr  # one run compiled what a run needs: not said again

    warm = _cp3rt("warmup", "--model", "cp3rt_nuclei", "--backend", "ort", env=env)
    assert "segment: cp3rt_nuclei -> ort-cpu" in warm.stdout, warm.stdout
    assert "compiled now" in warm.stdout and "warm:" in warm.stdout, warm.stdout
    before = _snapshot(tmp_path / "numba")
    modules = {m.rsplit(".", 2)[-2] + "." + m.rsplit(".", 1)[-1] for m in KERNEL_MODULES_2D + KERNEL_MODULES_3D}
    index_files = [k for k in before if k.endswith(".nbi")]
    for module in modules:  # every kernel module has its compiled code on disk
        short = module.split(".")[-1]
        assert any(f"{short}." in Path(k).name for k in index_files), (module, index_files)

    again = _cp3rt("warmup", "--model", "cp3rt_nuclei", "--backend", "ort", env=env)
    assert "0 compiled now" in again.stdout, again.stdout

    out = tmp_path / "out"
    two_d = _cp3rt("run", image, *run, "--overlay", "--outlines", "--rois", "--out", out, env=env)
    three_d = _cp3rt("run", volume, *run, "--do-3d", "--out", out, env=env)
    stitched = _cp3rt("run", volume, *run, "--stitch-threshold", "0.3", "--out", tmp_path / "st", env=env)
    assert _snapshot(tmp_path / "numba") == before  # nothing compiled, nothing written
    for proc in (two_d, three_d, stitched):
        assert NOTICE not in proc.stderr, proc.stderr
    assert tifffile.imread(out / "img_cp_masks.tif").max() > 0
    assert tifffile.imread(out / "vol_cp_masks.tif").shape == (16, 72, 72)


@pytest.mark.slow  # cold: every kernel compiles (~45 s on 2 cores)
def test_kernel_states_see_every_cached_kernel_and_warmup_reports(tmp_path, monkeypatch):
    """In-process (the test's own numba cache): every state names a kernel of the listed
    modules; after ``warmup`` none is cold, and the report names the net it opened."""
    from cp3rt.runtime import PipelineConfig
    from cp3rt.runtime.batch.kernel_cache import cold_kernels, kernel_states

    if os.environ.get("NUMBA_DISABLE_JIT", "0") not in ("", "0"):
        assert kernel_states() == ()
        return
    names = [s.name for s in kernel_states(volume=True)]
    assert len(names) > 30 and any("_euler3d" in n for n in names) and any("_blend_kernels" in n for n in names)
    assert not any("_euler3d" in n for n in (s.name for s in kernel_states(volume=False)))
    steps = []
    report = W.warmup(PipelineConfig(segment="cp3rt_nuclei", backend="ort"), on_step=steps.append)
    assert report.cold == () and cold_kernels(volume=True) == []
    assert len(report.compiled) + len(report.already) == len(names)
    assert [m.engine_backend for m in report.models] == ["ort-cpu"] and report.models[0].artefact_sha256
    assert [s.name for s in report.steps] == steps and report.seconds > 0


@pytest.mark.slow  # a torch export and two runs
def test_a_first_export_is_announced_and_then_not(tmp_path, capsys):
    """A weight file's first ONNX export is said before the engines open (cp3rt run), and not
    again once it is in the cache; warmup does the export ahead."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import pipeline_testutil as U

    from cp3rt.cli.app import main
    from cp3rt.runtime import PipelineConfig

    models = U.write_zoo(tmp_path / "zoo")
    image = tmp_path / "in" / "img.tif"
    image.parent.mkdir()
    tifffile.imwrite(image, W._image_of(W._discs((96, 96), 4, 9.0, seed=2), seed=3))
    with U.zoo_env(models, tmp_path / "cache"):
        assert W.first_use_work(PipelineConfig(segment="cyto3", backend="ort")) == (
            "exporting cyto3 to ONNX (fp32; first use, cached for later runs; `cp3rt warmup` does this ahead)",)
        assert W.first_use_work(PipelineConfig(segment="cyto3", backend="torch")) == ()  # runs the weights
        assert main(["run", str(image), "--model", "cyto3", "--backend", "ort", "--diameter", "30"]) == 0
        assert "exporting cyto3 to ONNX" in capsys.readouterr().err
        assert W.first_use_work(PipelineConfig(segment="cyto3", backend="ort")) == ()
        assert W.first_use_work(PipelineConfig(segment="cyto3", backend="ort", precision="fp16")) != ()
        assert main(["run", str(image), "--model", "cyto3", "--backend", "ort", "--diameter", "30",
                     "--overwrite"]) == 0
        assert "exporting" not in capsys.readouterr().err


def test_the_first_run_kernels_are_cached_kernels_of_the_runtime():
    """A renamed kernel must not silently turn the first-run notice off."""
    from cp3rt.runtime.batch.kernel_cache import FIRST_RUN_KERNELS_2D, FIRST_RUN_KERNELS_3D, kernel_states

    if os.environ.get("NUMBA_DISABLE_JIT", "0") not in ("", "0"):
        assert kernel_states() == ()
        return
    names = {s.name for s in kernel_states(volume=True)}
    assert set(FIRST_RUN_KERNELS_2D + FIRST_RUN_KERNELS_3D) <= names
