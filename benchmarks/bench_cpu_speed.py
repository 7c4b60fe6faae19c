"""CPU speed of restore -> segment on a folder of real 1024 x 1024 images, every CPU
configuration of cp3rt and the reference in one run, with masks AP against cp3rt's fp32
default (issue 19's final benchmark).

Protocol
--------
* Nets: the trained starters ``cp3rt_denoise_nuclei`` -> ``cp3rt_nuclei`` (recovered from the
  shipped ONNX), written at Cellpose width (``bench_gpu.embed_weights``: zero extra channels, the
  same function with the real nets' arithmetic) under the zoo names ``denoise_nuclei`` and
  ``nuclei`` (diam_mean 17), so that the reference (cellpose 3.1.1.2, which only builds the full
  width) runs the very same weights; cp3rt exports them to ONNX once (``--prepare``).
* Images: ctc_gowt1_nuclei (1024 x 1024, uint8, real widefield nuclei, median diameter 60 px):
  the 4 frames of sequence 01 are measured; the 4 of sequence 02 are the int8 calibration set
  (never measured). Settings: gray (channels 0, 0), diameter 60 (README), the rest default.
* cp3rt configurations run ``run_inputs`` on the folder, what ``cp3rt run FOLDER --model nuclei
  --restore denoise_nuclei --diameter 60 --out DIR`` does after its imports (the nets open inside
  the timed call; the folder streams: images in flight share engine batches). The reference runs
  ``CellposeDenoiseModel(model_type="nuclei", restore_type="denoise_nuclei")`` built inside the
  timed call, then for each image: tifffile read, ``eval(channels=[0, 0], diameter=60)``, mask
  TIFF written, with tcmalloc preloaded (its faster variant, end_to_end.md).
* Every configuration runs in its own process per round, rounds alternate the configurations
  (the machine is shared: load averages are recorded per run). Each process first runs one
  image untimed (numba/onnxruntime/OpenVINO first-call costs), then the folder, timed.
  Reported: median and spread of seconds per folder, speed ratios of medians from this run.
* Masks of each configuration (its last round) against cp3rt's fp32 default: AP at IoU 0.5 and
  0.75 pooled over the images (TP / (TP + FP + FN) summed), cp3rt's matching.
* CPU seconds of the timed call (``time.process_time``: every thread of the process) are
  reported beside the wall time: on a machine shared with other jobs they say more about the
  work done than the wall time does (torch's OpenMP threads may spin a little while waiting,
  which counts as CPU time for the reference).
* Core use: one extra process per cp3rt configuration runs the images one at a time through
  ``Pipeline.run`` and records per stage the wall time and the process CPU time
  (``time.process_time``, all threads) -> cores busy per stage.

Run:  .venv/bin/python benchmarks/bench_cpu_speed.py --prepare && .venv/bin/python benchmarks/bench_cpu_speed.py
      (results -> benchmarks/results/cpu_speed.json and .md)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DATA = REPO.parent / "shared" / "data" / "ctc_gowt1_nuclei" / "images"
TCMALLOC = "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4"
DIAMETER = 60.0
# name -> (kind, backend, precision, tile size, int8 graphs)
CONFIGS = {
    "cp3rt default (ort fp32, tile 224)": ("cp3rt", "ort", "fp32", 224, False),
    "cp3rt ort fp32, tile 448": ("cp3rt", "ort", "fp32", 448, False),
    "cp3rt openvino fp32, tile 224": ("cp3rt", "openvino", "fp32", 224, False),
    "cp3rt openvino bf16, tile 224": ("cp3rt", "openvino", "bf16", 224, False),
    "cp3rt openvino bf16, tile 448": ("cp3rt", "openvino", "bf16", 448, False),
    "cp3rt ort int8, tile 224": ("cp3rt", "ort", "int8", 224, True),
    "cp3rt openvino int8, tile 224": ("cp3rt", "openvino", "int8", 224, True),
    "reference +tcmalloc": ("reference", "", "", 224, False),
}
DEFAULT = "cp3rt default (ort fp32, tile 224)"
REFERENCE = "reference +tcmalloc"


def _env(work: Path) -> dict[str, str]:
    return {"CELLPOSE_LOCAL_MODELS_PATH": str(work / "models"), "CP3RT_CACHE_DIR": str(work / "cache")}


# ---- preparation ----------------------------------------------------------------------------

def prepare(work: Path) -> None:
    """Weights at Cellpose width under zoo names, their fp32 export, the two image folders and,
    when ``cp3rt export --precision int8`` exists, int8 graphs calibrated on sequence 02."""
    sys.path.insert(0, str(HERE))
    from bench_gpu import embed_weights

    from cp3rt.export.from_onnx import recover_weight_file

    assets = REPO / "src" / "cp3rt" / "assets" / "models"
    (work / "models").mkdir(parents=True, exist_ok=True)
    for src, zoo in (("cp3rt_nuclei", "nucleitorch_0"), ("cp3rt_denoise_nuclei", "denoise_nuclei")):
        embed_weights(recover_weight_file(assets / f"{src}.onnx", work / src), work / "models" / zoo)
    os.environ.update(_env(work))
    from cp3rt.artefacts import resolve_model

    for name in ("nuclei", "denoise_nuclei"):
        resolve_model(name)
    for folder, seq in (("measure", "seq01"), ("calibrate", "seq02")):
        (work / folder).mkdir(exist_ok=True)
        for f in sorted(DATA.glob(f"{seq}_*.tif")):
            shutil.copy(f, work / folder / f.name)
    cli = [sys.executable, "-m", "cp3rt", "export"]
    common = ["--precision", "int8", "--calibrate", str(work / "calibrate"), "--diameter", str(DIAMETER),
              "--out", str(work / "int8")]
    for cmd in ([*cli, "nuclei", *common, "--restore-with", "denoise_nuclei"],
                [*cli, "denoise_nuclei", *common, "--segment-with", "nuclei"]):
        proc = subprocess.run(cmd, env=dict(os.environ), capture_output=True, text=True)
        print(" ".join(cmd[2:]), "->", proc.returncode, proc.stdout.strip(), proc.stderr.strip()[-500:], flush=True)


def _models(work: Path, int8: bool) -> tuple[str, str]:
    if not int8:
        return "nuclei", "denoise_nuclei"
    found = [sorted((work / "int8").glob(f"{n}*.int8.onnx")) for n in ("nuclei", "denoise_nuclei")]
    if not all(found):
        raise FileNotFoundError(f"no int8 graphs in {work / 'int8'} (run --prepare with cp3rt export --precision int8)")
    return str(found[0][0]), str(found[1][0])


# ---- workers ----------------------------------------------------------------------------------

def _cp3rt_folder(args: argparse.Namespace, cfg: tuple, images: list[Path], out: Path) -> float:
    from cp3rt.runtime import OutputOptions, PipelineConfig, RunConfig, run_inputs

    _, backend, precision, tile, int8 = cfg
    seg, rst = _models(Path(args.work), int8)
    pipe = PipelineConfig(segment=seg, restore=rst, backend=backend, precision=precision)
    run = RunConfig(diameter=DIAMETER, channels=(0, 0), tile_size=tile)
    run_inputs([str(images[0])], pipe, run, OutputOptions(out_dir=out / "warm", overwrite=True))  # untimed
    _cpu_seconds_at_timed_start[0] = time.process_time()
    t = time.perf_counter()
    summary = run_inputs([str(p) for p in images], pipe, run, OutputOptions(out_dir=out, overwrite=True))
    seconds = time.perf_counter() - t
    if not summary.ok:
        raise RuntimeError(f"cp3rt run failed: {[o for o in summary.outcomes if o.status == 'failed']}")
    return seconds


def _reference_folder(images: list[Path], out: Path) -> float:
    import tifffile
    from cellpose import denoise

    def go(files: list[Path], dest: Path) -> None:
        model = denoise.CellposeDenoiseModel(gpu=False, model_type="nuclei", restore_type="denoise_nuclei")
        dest.mkdir(parents=True, exist_ok=True)
        for f in files:
            masks = model.eval(tifffile.imread(f), channels=[0, 0], diameter=DIAMETER)[0]
            tifffile.imwrite(dest / f"{f.stem}_cp_masks.tif", masks.astype(np.uint16), compression="zlib")

    go(images[:1], out / "warm")
    _cpu_seconds_at_timed_start[0] = time.process_time()
    t = time.perf_counter()
    go(images, out)
    return time.perf_counter() - t


def _profile(args: argparse.Namespace, cfg: tuple, images: list[Path]) -> dict:
    """Per stage: wall seconds and process CPU seconds over the images, one at a time."""
    import tifffile

    from cp3rt.runtime import Pipeline
    from cp3rt.runtime import result as R

    cpu: dict[str, float] = {}
    original = R.StageTimer.stage

    def stage(self, name):  # noqa: ANN001, ANN202  (wraps the timer: CPU seconds beside wall)
        import contextlib

        @contextlib.contextmanager
        def both():
            c = time.process_time()
            with original(self, name):
                yield
            cpu[name] = cpu.get(name, 0.0) + time.process_time() - c

        return both()

    R.StageTimer.stage = stage
    _, backend, precision, tile, int8 = cfg
    seg, rst = _models(Path(args.work), int8)
    with Pipeline(seg, restore=rst, backend=backend, precision=precision, diameter=DIAMETER,
                  channels=(0, 0), tile_size=tile) as pipe:
        pipe.run(tifffile.imread(images[0]))
        cpu.clear()
        wall: dict[str, float] = {}
        t, c = time.perf_counter(), time.process_time()
        for f in images:
            for k, v in pipe.run(tifffile.imread(f)).timings.items():
                wall[k] = wall.get(k, 0.0) + v
        total = {"wall": time.perf_counter() - t, "cpu": time.process_time() - c}
    return {"stages": {k: {"wall_s": wall[k], "cpu_s": cpu.get(k, 0.0)} for k in wall if wall[k] > 0}, "total": total}


def worker(args: argparse.Namespace) -> None:
    cfg = CONFIGS[args.worker]
    images = sorted(Path(args.work, "measure").glob("*.tif"))
    load0 = os.getloadavg()[0]
    if args.profile:
        print(json.dumps(_profile(args, cfg, images)))
        return
    out = Path(args.masks_out)
    _cpu_seconds_at_timed_start[0] = None  # set by the folder functions at their timed call
    seconds = _reference_folder(images, out) if cfg[0] == "reference" else _cp3rt_folder(args, cfg, images, out)
    cpu = time.process_time() - _cpu_seconds_at_timed_start[0]
    print(json.dumps({"seconds": seconds, "cpu_s": cpu, "load1_before": load0, "load1_after": os.getloadavg()[0]}))


_cpu_seconds_at_timed_start: list = [None]


# ---- orchestration ----------------------------------------------------------------------------

def _spawn(args: argparse.Namespace, name: str, extra: list[str]) -> dict:
    env = dict(os.environ, **_env(Path(args.work)))
    env.pop("LD_PRELOAD", None)
    if name == REFERENCE:
        env["LD_PRELOAD"] = TCMALLOC
    cmd = [sys.executable, str(Path(__file__).resolve()), "--work", args.work, "--worker", name, *extra]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _ap(work: Path, name: str) -> dict:
    import tifffile

    from cp3rt.runtime.quality.metrics import average_precision

    base = work / "out" / DEFAULT.replace(" ", "_")
    got = work / "out" / name.replace(" ", "_")
    files = sorted(base.glob("*_cp_masks.tif"))
    t = [tifffile.imread(f) for f in files]
    p = [tifffile.imread(got / f.name) for f in files]
    _, tp, fp, fn = average_precision(t, p, (0.5, 0.75))
    tp, fp, fn = tp.sum(0), fp.sum(0), fn.sum(0)
    ap = tp / (tp + fp + fn)
    return {"ap50": float(ap[0]), "ap75": float(ap[1]), "objects": int(sum(len(np.unique(m)) - 1 for m in p)),
            "objects_default": int(sum(len(np.unique(m)) - 1 for m in t))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", default="/tmp/cpu19")
    ap.add_argument("--prepare", action="store_true")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--configs", default="", help="comma-separated subset of the configuration names")
    ap.add_argument("--worker")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--masks-out")
    ap.add_argument("--out", default=str(HERE / "results" / "cpu_speed"))
    args = ap.parse_args()
    if args.prepare:
        prepare(Path(args.work))
        return
    if args.worker:
        worker(args)
        return
    from bench_cpu_speed_report import markdown, fingerprint  # noqa: PLC0415 (benchmarks/ on sys.path)

    names = [n for n in CONFIGS if not args.configs or n in args.configs.split(",")]
    work = Path(args.work)
    runs: dict[str, list[dict]] = {n: [] for n in names}
    started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    for r in range(args.rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            res = _spawn(args, name, ["--masks-out", str(work / "out" / name.replace(" ", "_"))])
            runs[name].append(res)
            print(f"round {r} {name}: {res}", file=sys.stderr, flush=True)
    profiles = {n: _spawn(args, n, ["--profile"]) for n in names if CONFIGS[n][0] == "cp3rt"}
    result = {"date": started, "environment": fingerprint(), "diameter": DIAMETER, "rounds": args.rounds,
              "images": sorted(p.name for p in (work / "measure").glob("*.tif")),
              "calibration_images": sorted(p.name for p in (work / "calibrate").glob("*.tif")),
              "configs": {}, "profiles": profiles}
    for name in names:
        ok = [x for x in runs[name] if "seconds" in x]
        entry: dict = {"runs": runs[name]}
        if ok:
            secs = [x["seconds"] for x in ok]
            entry.update(median_s=statistics.median(secs), min_s=min(secs), max_s=max(secs),
                         median_cpu_s=statistics.median(x["cpu_s"] for x in ok))
            entry["masks"] = _ap(work, name)
        result["configs"][name] = entry
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(result, DEFAULT, REFERENCE))
    print(markdown(result, DEFAULT, REFERENCE))


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    main()
