"""3-D segmentation on CPU: cp3rt vs cellpose 3.1.1.2 on a 64x512x512 volume, same run.

Protocol
--------
* Inputs (built once by the parent, not timed): a 64x512x512 volume of ~3000 touching random
  ellipsoids (diameters ~10-22 px, seeded). "Network" flows for the dynamics part are the
  reference's 3-D training flows of that volume (the 2-D heat-diffusion flows of every YX, ZX
  and ZY slice summed per axis, computed with cp3rt's bit-identical masks_to_flows), x5 plus
  Gaussian noise (sigma 0.3); cellprob = +-15 (three views summed) plus noise (sigma 1).
* Part 1, dynamics (flows -> masks, niter 200, min_size 15): each implementation runs in its
  own subprocess: ``cellpose.dynamics.resize_and_compute_masks(do_3D=True)`` (what
  ``CellposeModel.eval`` calls; torch CPU with tcmalloc LD_PRELOADed - checked in
  /proc/self/maps), cp3rt ``compute_masks_3d`` with ``sampling="grid"`` (the reference's
  grid_sample arithmetic, default) and with ``sampling="exact"``. Each worker does one warm-up
  call on an 8x64x64 crop (numba JIT / torch init) and then timed calls on the full volume:
  ``--repeats`` for cp3rt, ``--ref-repeats`` (default 1: ~15 min per call) for the reference;
  median, min, max.
* Part 2, end to end on a ``--e2e-shape`` volume (default 32x256x256: the reference needs
  ~40 min for one 64x512x512 run on this 2-core VM) (``do_3D=True``, diameter 30 = rescale 1, anisotropy 1): the same random
  cyto3-shaped CPnet file (written by the reference's CPnet, as in the tests) for both; the
  reference ``CellposeModel.eval`` (torch, tcmalloc) vs cp3rt ``Pipeline`` (onnxruntime fp32).
  Each worker first runs an 8x64x64 warm-up volume, then ``--e2e-repeats`` timed runs of the
  full volume (image = blurred ellipsoids + noise, uint16).
* Peak memory = VmHWM (RSS high-water mark) of each worker process, inputs included.
* Masks are compared by matching (cellpose.metrics.average_precision, AP at IoU 0.5/0.75/0.9):
  cp3rt vs reference, and both vs the ground-truth ellipsoids for the grid/exact question.
* The machine is a shared 2-vCPU VM (load average is recorded): absolute numbers are noisy.

Run:  .venv/bin/python benchmarks/bench_3d.py   (results -> benchmarks/results/bench_3d.{json,md})
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent / "tests"
TCMALLOC = "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4"


# ---- inputs ----------------------------------------------------------------------------------

def ellipsoids(shape, n_cells: int, seed: int = 0) -> np.ndarray:
    """Random touching ellipsoids on a jittered grid, painted box by box (later overwrite)."""
    rng = np.random.default_rng(seed)
    step = (np.prod(shape) / n_cells) ** (1 / 3)
    axes = [np.arange(step / 2, s, step) for s in shape]
    centres = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    centres = centres + rng.uniform(-0.25, 0.25, centres.shape) * step
    lab = np.zeros(shape, np.int32)
    for k, c in enumerate(centres, start=1):
        r = rng.uniform(0.4, 0.6, 3) * step
        rot = np.linalg.qr(rng.normal(size=(3, 3)))[0]
        lo = [max(0, int(c[i] - r.max() - 1)) for i in range(3)]
        hi = [min(shape[i], int(c[i] + r.max() + 2)) for i in range(3)]
        if any(a >= b for a, b in zip(lo, hi)):
            continue
        zz, yy, xx = np.mgrid[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
        d = np.stack([zz - c[0], yy - c[1], xx - c[2]], -1) @ rot
        lab[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]][((d / r) ** 2).sum(-1) <= 1] = k
    return lab


def build_inputs(tmp: Path, shape, n_cells: int) -> dict:
    sys.path.insert(0, str(TESTS / "runtime" / "dynamics"))
    from synth3d import net_outputs_3d  # tests/runtime/dynamics/synth3d.py

    t = time.perf_counter()
    lab = ellipsoids(shape, n_cells)
    dP, cellprob = net_outputs_3d(lab, seed=1)
    np.save(tmp / "labels.npy", lab)
    np.save(tmp / "dP.npy", dP)
    np.save(tmp / "cellprob.npy", cellprob)
    return {"n_labels": int(lab.max()), "build_s": time.perf_counter() - t}


# ---- workers (own process each) ----------------------------------------------------------------

def _peak_rss_mb() -> float:
    """VmHWM of this process (ru_maxrss would include the parent's RSS inherited at fork)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def worker_dynamics(spec: dict) -> dict:
    tmp = Path(spec["tmp"])
    dP = np.load(tmp / "dP.npy")
    cellprob = np.load(tmp / "cellprob.npy")
    if spec["impl"] == "reference":
        from cellpose import dynamics

        def run(f=dP, p=cellprob):
            return dynamics.resize_and_compute_masks(f, p, niter=200, do_3D=True, min_size=15)
    else:
        from cp3rt.runtime.dynamics import compute_masks_3d

        def run(f=dP, p=cellprob):
            return compute_masks_3d(f, p, niter=200, min_size=15, sampling=spec["sampling"])
    t = time.perf_counter()
    run(dP[:, :8, :64, :64], cellprob[:8, :64, :64])  # warm-up (JIT / torch init), not timed
    warm = time.perf_counter() - t
    times = []
    for _ in range(spec["repeats"]):
        t = time.perf_counter()
        masks = run()
        times.append(time.perf_counter() - t)
    np.save(tmp / f"masks_{spec['name']}.npy", masks)
    return {"warmup_s": warm, "times": times, "peak_rss_mb": _peak_rss_mb()}


def worker_e2e(spec: dict) -> dict:
    import tifffile

    tmp = Path(spec["tmp"])
    img = tifffile.imread(tmp / "volume.tif")
    small = img[:8, :64, :64]
    stages: list[dict] = []
    if spec["impl"] == "reference":
        from cellpose import models

        model = models.CellposeModel(gpu=False, pretrained_model=spec["weights"])

        def run(x):
            return model.eval(x, do_3D=True, z_axis=0, diameter=30.0, channels=[0, 0])[0]
    else:
        from cp3rt import Pipeline

        pipe = Pipeline(spec["onnx"], backend="ort")

        def run(x):
            res = pipe.run(x, do_3D=True, z_axis=0, diameter=30.0, channels=(0, 0),
                           estimate_diameter=False)
            stages.append(dict(res.timings))
            return res.masks
    t = time.perf_counter()
    run(small)
    warm = time.perf_counter() - t
    stages.clear()
    times = []
    for _ in range(spec["repeats"]):
        t = time.perf_counter()
        masks = run(img)
        times.append(time.perf_counter() - t)
    np.save(tmp / f"e2e_masks_{spec['name']}.npy", masks)
    return {"warmup_s": warm, "times": times, "peak_rss_mb": _peak_rss_mb(), "stages": stages}


def _worker_main(spec_json: str) -> None:
    spec = json.loads(spec_json)
    maps = Path("/proc/self/maps").read_text()
    out = (worker_dynamics if spec["part"] == "dynamics" else worker_e2e)(spec)
    out["tcmalloc_loaded"] = "tcmalloc" in maps
    print("RESULT " + json.dumps(out))


def run_worker(spec: dict, tcmalloc: bool) -> dict:
    env = dict(os.environ)
    if tcmalloc:
        env["LD_PRELOAD"] = TCMALLOC
    proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], env=env,
                          capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"worker {spec['name']} failed:\n{proc.stderr[-3000:]}")


# ---- parent ---------------------------------------------------------------------------------

def _stats(xs: list[float]) -> dict:
    return {"median": float(np.median(xs)), "min": min(xs), "max": max(xs), "runs": xs}


def _ap(want: np.ndarray, got: np.ndarray) -> list[float]:
    from cellpose import metrics

    ap = metrics.average_precision(want.astype(np.int64), got.astype(np.int64))[0]
    return [round(float(a), 4) for a in ap]


def _environment() -> dict:
    import numba
    import onnxruntime
    import torch

    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return {
        "cpu": cpu, "logical_cpus": os.cpu_count(), "python": platform.python_version(),
        "numpy": np.__version__, "numba": numba.__version__, "onnxruntime": onnxruntime.__version__,
        "torch": torch.__version__, "cellpose": "3.1.1.2", "load_avg": os.getloadavg(),
        "tcmalloc": f"LD_PRELOAD={TCMALLOC} for the reference workers (checked in /proc/self/maps)",
    }


def _write(out: Path, report: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        "# 3-D segmentation on CPU: cp3rt vs cellpose 3.1.1.2", "",
        f"- Date (UTC): {report['date']}", f"- Command: `{report['command']}`",
        f"- Environment: {json.dumps(report['environment'])}",
        f"- Dynamics volume {report['shape'] if 'inputs' in report else '- (not run)'} "
        f"({report.get('inputs', {}).get('n_labels', 0)} ellipsoids); end-to-end "
        f"volume {report.get('e2e_shape', '-')}; protocol in benchmarks/bench_3d.py", "",
    ]
    for part in ("dynamics", "e2e"):
        rows = report.get(part)
        if not rows:
            continue
        lines += [f"## {part}", "", "| implementation | tcmalloc | median s | min s | max s | warm-up s | "
                  "peak RSS MB | AP vs reference | AP vs truth |", "|---|---|---|---|---|---|---|---|---|"]
        for name, r in rows.items():
            s = r["stats"]
            lines.append(f"| {name} | {r['tcmalloc_loaded']} | {s['median']:.2f} | {s['min']:.2f} | "
                         f"{s['max']:.2f} | {r['warmup_s']:.2f} | {r['peak_rss_mb']:.0f} | "
                         f"{r.get('ap_vs_reference', '-')} | {r.get('ap_vs_truth', '-')} |")
        lines.append("")
    lines += ["AP columns: [AP@0.5, AP@0.75, AP@0.9] with cellpose.metrics.average_precision.", ""]
    if report.get("notes"):
        lines += ["## Findings", "", *report["notes"], ""]
    out.with_suffix(".md").write_text("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shape", default="64,512,512")
    ap.add_argument("--cells", type=int, default=3000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--ref-repeats", type=int, default=1, help="timed reference dynamics calls")
    ap.add_argument("--e2e-shape", default="32,256,256")
    ap.add_argument("--e2e-repeats", type=int, default=1)
    ap.add_argument("--skip-e2e", action="store_true")
    ap.add_argument("--skip-dynamics", action="store_true",
                    help="end to end only (e.g. --e2e-shape 64,512,512 as its own run)")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "bench_3d")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        _worker_main(args.worker)
        return
    shape = tuple(int(s) for s in args.shape.split(","))
    report: dict = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(shlex.quote(a) for a in [".venv/bin/python", "benchmarks/bench_3d.py", *sys.argv[1:]]),
        "environment": _environment(), "shape": shape,
    }
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if not args.skip_dynamics:
            report["inputs"] = build_inputs(tmp, shape, args.cells)
            report["dynamics"] = _dynamics(tmp, args)
            _write(args.out, report)
        if not args.skip_e2e:
            e2e_shape = tuple(int(v) for v in args.e2e_shape.split(","))
            report["e2e_shape"] = e2e_shape
            scale = np.prod(e2e_shape) / np.prod(shape)
            report["e2e"] = _e2e(tmp, ellipsoids(e2e_shape, max(1, int(args.cells * scale)), seed=5),
                                 args.e2e_repeats)
            _write(args.out, report)


def _dynamics(tmp: Path, args: argparse.Namespace) -> dict:
    truth = np.load(tmp / "labels.npy")
    dyn = {}
    for name, impl, sampling, tcm in (("reference", "reference", None, True),
                                      ("cp3rt grid", "cp3rt", "grid", False),
                                      ("cp3rt exact", "cp3rt", "exact", False)):
        spec = {"part": "dynamics", "name": name.replace(" ", "_"), "impl": impl,
                "sampling": sampling, "tmp": str(tmp),
                "repeats": args.ref_repeats if impl == "reference" else args.repeats}
        r = run_worker(spec, tcm)
        r["stats"] = _stats(r.pop("times"))
        dyn[name] = r
    ref = np.load(tmp / "masks_reference.npy")
    for name, r in dyn.items():
        m = np.load(tmp / f"masks_{name.replace(' ', '_')}.npy")
        r["ap_vs_truth"] = _ap(truth, m)
        if name != "reference":
            r["ap_vs_reference"] = _ap(ref, m)
    return dyn


def _e2e(tmp: Path, truth: np.ndarray, repeats: int) -> dict:
    import tifffile
    from scipy.ndimage import gaussian_filter

    sys.path.insert(0, str(TESTS))
    import pipeline_testutil as U
    from cp3rt.artefacts import resolve_model

    rng = np.random.default_rng(3)
    img = gaussian_filter((truth > 0).astype(np.float32), 1.0) * 800 + rng.normal(200, 30, truth.shape)
    tifffile.imwrite(tmp / "volume.tif", np.clip(img, 0, 65535).astype(np.uint16))
    models = U.write_zoo(tmp / "zoo")
    with U.zoo_env(models, tmp / "cache"):
        onnx = resolve_model("cyto3").path  # exported once here, not timed
    rows = {}
    for name, impl, tcm in (("reference", "reference", True), ("cp3rt ort", "cp3rt", False)):
        spec = {"part": "e2e", "name": name.replace(" ", "_"), "impl": impl, "tmp": str(tmp),
                "repeats": repeats, "weights": str(models / "cyto3"), "onnx": str(onnx)}
        r = run_worker(spec, tcm)
        r["stats"] = _stats(r.pop("times"))
        rows[name] = r
    ref = np.load(tmp / "e2e_masks_reference.npy")
    got = np.load(tmp / "e2e_masks_cp3rt_ort.npy")
    rows["cp3rt ort"]["ap_vs_reference"] = _ap(ref, got)
    return rows


if __name__ == "__main__":
    main()
