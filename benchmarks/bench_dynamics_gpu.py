"""Flows -> masks on the GPU (numba-cuda kernels) against cp3rt's CPU numba dynamics.

Protocol
--------
* Input per size (default 1024x1024 with 400 cells and 2048x2048 with 1500, as
  bench_dynamics.py): a synthetic label image of touching elliptical cells (seed 0) turned into
  network-like outputs exactly as the dynamics tests do (tests/runtime/dynamics/synth.py):
  dP = 5 x heat-diffusion flows + N(0, 0.3), cellprob = +-5 + N(0, 1), 5 % of the cells with
  weak flows (the flow QC rejects those), seeded.
* Settings: niter 200, cellprob_threshold 0, flow_threshold 0.4, min_size 15,
  max_size_fraction 0.4, interp on (cp3rt's defaults at rescale 1).
* GPU input is already on the device, as it comes from the net: torch CUDA tensors when torch
  sees the GPU (numba device arrays otherwise), handed over through __cuda_array_interface__.
  The GPU call returns the host label image, so its time includes the copy back (and the
  CPU clean-up in the rare images where a label encloses another; counted in the results).
* Warm-up: one call of each path (numba CPU cache load / compile, CUDA JIT); the first-call
  seconds are reported. Timed: --repeats rounds, each running the CPU path then the GPU path
  on the same inputs; p50 (and min / max) ms per image. The GPU stage split comes from
  --repeats further calls that synchronise after every stage (p50 per stage).
* Check: labels identical (raw equality: numbering included); if not, AP at IoU 0.5 / 0.9 of
  the GPU masks against the CPU masks (cp3rt.runtime.quality.metrics).

Run from the repository root, no install needed:
    PYTHONPATH=src python3 benchmarks/bench_dynamics_gpu.py --out benchmarks/results
Exits 2 with one line without a CUDA GPU. ``--smoke-sim`` runs a 48x48 case in numba's CUDA
simulator (checks the script, measures nothing). Progress goes to stderr.
Results -> <out>/dynamics_gpu.json and dynamics_gpu.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import statistics
import sys
import time
from importlib import metadata
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SIZES = {1024: 400, 2048: 1500}  # image side -> cells
SMOKE = {48: 6}
WEAK_FRACTION = 0.05
NITER = 200


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _cuda_or_exit(smoke: bool):
    if smoke:
        os.environ["NUMBA_ENABLE_CUDASIM"] = "1"  # before numba.cuda is first imported
    # Some launches are small on purpose (a serial row scan, a few hundred labels): keep numba's
    # low-occupancy warnings out of the log.
    os.environ.setdefault("NUMBA_CUDA_LOW_OCCUPANCY_WARNINGS", "0")
    sys.path.insert(0, str(REPO / "src"))
    from cp3rt.errors import BackendUnavailableError
    from cp3rt.runtime.dynamics.cuda import _env

    try:
        return _env.load()
    except BackendUnavailableError as err:
        print(f"bench_dynamics_gpu: no CUDA GPU: {err}", file=sys.stderr)
        raise SystemExit(2) from None


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _fingerprint(cuda, smoke: bool) -> dict:
    import numba

    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = driver = None
    if not smoke:
        gpu = cuda.get_current_device().name
        gpu = gpu.decode() if isinstance(gpu, bytes) else str(gpu)
        try:
            major, minor = cuda.cudadrv.driver.driver.get_version()
            driver = f"CUDA driver API {major}.{minor}"
        except Exception as err:  # noqa: BLE001 - informative only
            driver = f"unknown ({err})"
    return {
        "gpu": gpu, "driver": driver, "simulator": smoke, "cpu": cpu, "cores": os.cpu_count(),
        "python": platform.python_version(), "numpy": np.__version__, "numba": numba.__version__,
        "numba_cuda": _version("numba-cuda"), "torch": _version("torch"),
        "numba_threads": numba.get_num_threads(),
    }


def _scene(side: int, cells: int):
    sys.path.insert(0, str(REPO / "tests" / "runtime" / "dynamics"))
    import synth  # the dynamics tests' input generator: one definition of the inputs

    lab = synth.ellipse_cells((side, side), cells, seed=0)
    dP, prob = synth.net_outputs(lab, seed=0, weak_fraction=WEAK_FRACTION)
    return dP, prob, int(lab.max())


def _on_device(cuda, dP, prob, smoke: bool):
    """The net's outputs as they would arrive: torch CUDA tensors if possible."""
    if not smoke:
        try:
            import torch

            if torch.cuda.is_available():
                return torch.from_numpy(dP).cuda(), torch.from_numpy(prob).cuda(), "torch"
        except ImportError:
            pass
    return cuda.to_device(dP), cuda.to_device(prob), "numba"


def _ms(xs: list[float]) -> dict:
    ms = [1000.0 * x for x in xs]
    return {"p50": statistics.median(ms), "min": min(ms), "max": max(ms), "n": len(ms)}


def _one_size(cuda, side: int, cells: int, repeats: int, smoke: bool) -> dict:
    from cp3rt.runtime.dynamics import DynamicsConfig, compute_masks_with
    from cp3rt.runtime.dynamics.cuda import compute_masks_cuda

    t0 = time.perf_counter()
    dP, prob, n_cells = _scene(side, cells)
    _log(f"{side}x{side}: scene with {n_cells} cells built in {time.perf_counter() - t0:.1f} s")
    config = DynamicsConfig(niter=NITER if not smoke else 40, min_size=15)
    d_dP, d_prob, kind = _on_device(cuda, dP, prob, smoke)

    t0 = time.perf_counter()
    cpu = compute_masks_with(dP, prob, config)
    first_cpu = time.perf_counter() - t0
    t0 = time.perf_counter()
    gpu = compute_masks_cuda(d_dP, d_prob, config)
    first_gpu = time.perf_counter() - t0
    _log(f"{side}x{side}: first calls cpu {first_cpu:.2f} s, gpu {first_gpu:.2f} s (JIT included)")

    cpu_s, gpu_s = [], []
    for r in range(repeats):
        t0 = time.perf_counter()
        cpu = compute_masks_with(dP, prob, config)
        cpu_s.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        gpu = compute_masks_cuda(d_dP, d_prob, config)
        gpu_s.append(time.perf_counter() - t0)
        _log(f"{side}x{side}: round {r + 1}/{repeats}: cpu {1000 * cpu_s[-1]:.1f} ms, "
             f"gpu {1000 * gpu_s[-1]:.1f} ms")
    stages: dict[str, list[float]] = {}
    host_fallbacks = 0
    for _ in range(repeats):
        timings: dict[str, float] = {}
        compute_masks_cuda(d_dP, d_prob, config, timings=timings)
        host_fallbacks += "host_cleanup" in timings
        for name, sec in timings.items():
            stages.setdefault(name, []).append(sec)

    identical = bool(gpu.dtype == cpu.dtype and np.array_equal(gpu, cpu))
    ap = None
    if not identical:
        from cp3rt.runtime.quality.metrics import average_precision

        vals = average_precision(cpu.astype(np.int64), gpu.astype(np.int64), [0.5, 0.9])[0]
        ap = {"0.5": float(vals[0]), "0.9": float(vals[1])}
    cpu_ms, gpu_ms = _ms(cpu_s), _ms(gpu_s)
    _log(f"{side}x{side}: identical={identical} cpu p50 {cpu_ms['p50']:.1f} ms, "
         f"gpu p50 {gpu_ms['p50']:.1f} ms")
    return {
        "side": side, "cells_drawn": n_cells, "masks": int(cpu.max()), "gpu_input": kind,
        "identical": identical, "ap_gpu_vs_cpu": ap,
        "first_call_s": {"cpu": first_cpu, "gpu": first_gpu},
        "cpu_ms": cpu_ms, "gpu_ms": gpu_ms, "speedup_p50": cpu_ms["p50"] / gpu_ms["p50"],
        "gpu_stage_ms_p50": {k: 1000.0 * statistics.median(v) for k, v in stages.items()},
        "host_cleanup_fallbacks": f"{host_fallbacks}/{repeats}",
    }


def _markdown(r: dict) -> str:
    env = r["environment"]
    lines = [
        "# Dynamics on the GPU (numba-cuda) vs cp3rt's CPU numba dynamics", "",
        f"{r['date']}; `{r['command']}`", "",
        f"GPU {env['gpu']} ({env['driver']}); CPU {env['cpu']} x {env['cores']} "
        f"(numba threads {env['numba_threads']}); python {env['python']}, numba {env['numba']}, "
        f"numba-cuda {env['numba_cuda']}, torch {env['torch']}, numpy {env['numpy']}"
        + (" - SIMULATOR smoke run, times mean nothing" if env["simulator"] else ""), "",
        f"Settings: niter {r['settings']['niter']}, flow_threshold 0.4, min_size 15; p50 of "
        f"{r['repeats']} rounds after one warm-up call. GPU input already on the device.", "",
        "| image | masks | identical | AP@0.5 / 0.9 | CPU ms (p50) | GPU ms (p50) | speed-up "
        "| GPU first call s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in r["sizes"]:
        ap = "-" if s["ap_gpu_vs_cpu"] is None else f"{s['ap_gpu_vs_cpu']['0.5']:.4f} / {s['ap_gpu_vs_cpu']['0.9']:.4f}"
        lines.append(
            f"| {s['side']}x{s['side']} | {s['masks']} | {'yes' if s['identical'] else 'NO'} | {ap} "
            f"| {s['cpu_ms']['p50']:.1f} | {s['gpu_ms']['p50']:.1f} | {s['speedup_p50']:.1f}x "
            f"| {s['first_call_s']['gpu']:.1f} |")
    names = list(dict.fromkeys(n for s in r["sizes"] for n in s["gpu_stage_ms_p50"]))
    lines += ["", "GPU stages, ms p50 (synchronised after each stage; cleanup = resize, small-mask "
              "removal and hole filling on the device; copy_back = label image to the host; "
              "host_cleanup only when a label encloses another and the CPU clean-up runs):", "",
              "| image | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for s in r["sizes"]:
        lines.append(f"| {s['side']}x{s['side']} | "
                     + " | ".join(f"{s['gpu_stage_ms_p50'][n]:.2f}" if n in s["gpu_stage_ms_p50"]
                                  else "-" for n in names) + " |")
    lines += ["", "CPU clean-up fallbacks (a label enclosing another) in the stage runs: "
              + ", ".join(f"{s['side']}: {s['host_cleanup_fallbacks']}" for s in r["sizes"])]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sizes", default="1024,2048", help="image sides, from 1024,2048")
    parser.add_argument("--smoke-sim", action="store_true",
                        help="48x48 in numba's CUDA simulator: checks the script, times mean nothing")
    args = parser.parse_args()
    t_start = time.perf_counter()
    cuda = _cuda_or_exit(args.smoke_sim)
    sizes = SMOKE if args.smoke_sim else {int(s): SIZES[int(s)] for s in args.sizes.split(",")}
    repeats = 1 if args.smoke_sim else args.repeats
    env = _fingerprint(cuda, args.smoke_sim)
    _log(f"device: {env['gpu'] or 'simulator'}; numba {env['numba']}, numba-cuda {env['numba_cuda']}")
    results = [_one_size(cuda, side, cells, repeats, args.smoke_sim) for side, cells in sizes.items()]
    record = {
        "benchmark": "dynamics_gpu", "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": shlex.join([sys.executable, *sys.argv]), "environment": env,
        "settings": {"niter": NITER if not args.smoke_sim else 40, "cellprob_threshold": 0.0,
                     "flow_threshold": 0.4, "min_size": 15, "max_size_fraction": 0.4,
                     "weak_fraction": WEAK_FRACTION},
        "repeats": repeats, "sizes": results, "wall_s": time.perf_counter() - t_start,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "dynamics_gpu.json").write_text(json.dumps(record, indent=2) + "\n")
    (args.out / "dynamics_gpu.md").write_text(_markdown(record))
    _log(f"wrote {args.out / 'dynamics_gpu.json'} and .md in {record['wall_s']:.1f} s")
    if not all(s["identical"] for s in results):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
