"""Flows -> masks on a 2048x2048 image with ~1500 cells: cp3rt numba dynamics vs the reference.

Protocol
--------
* Input: a synthetic label image (2048x2048, ~1500 touching elliptical cells, seed 0) turned
  into network-like outputs exactly as the dynamics parity tests do (tests/runtime/dynamics/
  synth.py): dP = 5 x heat-diffusion flows + N(0, 0.3), cellprob = +-5 + N(0, 1), seeded.
* Compared calls (same inputs, same process, same settings: niter 200, cellprob_threshold 0,
  min_size 15, max_size_fraction 0.4, interp on), each with the flow QC on (0.4) and off (0):
  - cp3rt: ``cp3rt.runtime.dynamics.compute_masks(..., reference_bugs=True)``;
  - reference: ``cellpose.dynamics.resize_and_compute_masks(..., device=cpu)`` (what
    ``CellposeModel.eval`` runs per plane: compute_masks + fill_holes_and_remove_small_masks).
* Warm-up: one call of each side on a small input (numba JIT / cache load of both; the
  reference compiles some kernels at import). cp3rt's first-call time is reported separately,
  and so is a cold compile in a subprocess with an empty NUMBA_CACHE_DIR.
* Timed: ``--repeats`` rounds (default 3); each round runs cp3rt then the reference, so both
  see the same machine state. Reported: median, min, max and quartiles of wall seconds, the
  ratio of medians, the same for process CPU seconds (all threads; less sensitive to other
  jobs on a shared machine, but it hides parallel speed-up), cp3rt's per-stage split (one extra call), and the AP at IoU 0.5/0.75/0.9
  of cp3rt's masks against the reference's (must be 1: the same computation was timed).
* Run it with tcmalloc preloaded (the reference's torch parts are faster with it), e.g.
  LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4 .venv/bin/python benchmarks/bench_dynamics.py
  The results say whether it was preloaded. The machine is shared: the load average at the
  start and end of every measurement is recorded.

Results -> benchmarks/results/dynamics.json and dynamics.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "tests" / "runtime" / "dynamics"))
import synth  # noqa: E402  (the parity tests' input generator: one definition of the inputs)

TCMALLOC = "libtcmalloc"
SHAPE = (2048, 2048)
N_CELLS = 1500
SETTINGS = {"niter": 200, "cellprob_threshold": 0.0, "min_size": 15, "max_size_fraction": 0.4}


def _fingerprint() -> dict:
    import numba
    import onnxruntime
    import torch

    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
        "numpy": np.__version__, "numba": numba.__version__,
        "numba_threads": numba.get_num_threads(), "numba_threading_layer": numba.threading_layer(),
        "onnxruntime": onnxruntime.__version__, "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "tcmalloc_preloaded": TCMALLOC in os.environ.get("LD_PRELOAD", ""),
    }


def _stats(xs: list[float]) -> dict:
    q = np.percentile(xs, [25, 75])
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs),
            "q1": float(q[0]), "q3": float(q[1]), "runs": xs}


def _cold_compile_seconds() -> float:
    """First call of compute_masks in a fresh process with an empty numba cache."""
    code = ("import time, numpy as np; from cp3rt.runtime.dynamics import compute_masks; "
            "m = np.zeros((64, 64), np.float32); m[20:40, 20:40] = 5; "
            "d = np.zeros((2, 64, 64), np.float32); t = time.perf_counter(); "
            "compute_masks(d, m); print(time.perf_counter() - t)")
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, check=True, timeout=1200)
    return float(out.stdout.strip().splitlines()[-1])


def _stages(dP: np.ndarray, cellprob: np.ndarray, flow_threshold: float) -> dict:
    """cp3rt's internal stages, timed once (same calls as compute_masks_with)."""
    from cp3rt.runtime.dynamics._euler import follow
    from cp3rt.runtime.dynamics._prepare import prepare
    from cp3rt.runtime.dynamics.assemble import get_masks
    from cp3rt.runtime.dynamics.cleanup import fill_holes_int32
    from cp3rt.runtime.dynamics.qc import drop_bad_labels

    out = {}
    t = time.perf_counter()
    flow5, field, ys, xs = prepare(dP, cellprob, np.float32(0.0))
    out["prepare"], t = time.perf_counter() - t, time.perf_counter()
    ends = follow(field, ys, xs, SETTINGS["niter"], True).astype(np.int32)
    out["integrate"], t = time.perf_counter() - t, time.perf_counter()
    lab = get_masks(ends, (ys, xs), cellprob.shape, SETTINGS["max_size_fraction"])
    out["get_masks"], t = time.perf_counter() - t, time.perf_counter()
    if flow_threshold > 0:
        lab = drop_bad_labels(lab, flow5, flow_threshold)
        out["flow_qc"], t = time.perf_counter() - t, time.perf_counter()
    fill_holes_int32(lab, SETTINGS["min_size"], True)
    out["fill_holes"] = time.perf_counter() - t
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()

    import torch
    from cellpose import dynamics as ref_dyn
    from cellpose import metrics as ref_metrics

    from cp3rt._fs import atomic_write_bytes
    from cp3rt.runtime.dynamics import compute_masks

    device = torch.device("cpu")
    load_start = os.getloadavg()
    masks = synth.ellipse_cells(SHAPE, N_CELLS, seed=0)
    dP, cellprob = synth.net_outputs(masks, seed=1)

    def ours(ft: float) -> np.ndarray:
        return compute_masks(dP, cellprob, flow_threshold=ft, reference_bugs=True, **SETTINGS)

    def ref(ft: float) -> np.ndarray:
        return ref_dyn.resize_and_compute_masks(dP, cellprob, flow_threshold=ft, device=device,
                                                **SETTINGS)

    small = (slice(0, 256), slice(0, 256))
    t = time.perf_counter()
    compute_masks(dP[:, small[0], small[1]].copy(), cellprob[small].copy())
    first_call = time.perf_counter() - t
    ref_dyn.resize_and_compute_masks(dP[:, small[0], small[1]].copy(), cellprob[small].copy(),
                                     device=device)
    results = {}
    for ft in (0.4, 0.0):
        times = {"cp3rt": [], "reference": []}
        cpu = {"cp3rt": [], "reference": []}
        loads = []
        got = want = None
        for _ in range(args.repeats):
            loads.append(os.getloadavg()[0])
            for name, fn in (("cp3rt", ours), ("reference", ref)):
                t, c = time.perf_counter(), time.process_time()
                out = fn(ft)
                times[name].append(time.perf_counter() - t)
                cpu[name].append(time.process_time() - c)
                got, want = (out, want) if name == "cp3rt" else (got, out)
        loads.append(os.getloadavg()[0])
        ap = ref_metrics.average_precision(want.astype(np.int64), got.astype(np.int64))[0]
        s_ours, s_ref = _stats(times["cp3rt"]), _stats(times["reference"])
        results[f"flow_threshold={ft}"] = {
            "cp3rt": s_ours, "reference": s_ref,
            "ratio_of_medians": s_ref["median"] / s_ours["median"],
            "cpu_s": {"cp3rt": _stats(cpu["cp3rt"]), "reference": _stats(cpu["reference"])},
            "cpu_ratio_of_medians": statistics.median(cpu["reference"]) / statistics.median(cpu["cp3rt"]),
            "n_masks": {"cp3rt": int(got.max()), "reference": int(want.max())},
            "ap_vs_reference@[0.5,0.75,0.9]": [float(a) for a in ap],
            "cp3rt_stages_s": _stages(dP, cellprob, ft),
            "load_average_1min_during": loads,
        }
    record = {
        "benchmark": "dynamics", "date": dt.datetime.now(dt.timezone.utc).isoformat(),
        "command": " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]),
        "ld_preload": os.environ.get("LD_PRELOAD", ""),
        "environment": _fingerprint(), "load_average_at_start": load_start,
        "load_average_at_end": os.getloadavg(),
        "input": {"shape": SHAPE, "cells": int(len(np.unique(masks)) - 1),
                  "foreground_pixels": int((cellprob > 0).sum())},
        "settings": SETTINGS, "repeats": args.repeats,
        "cp3rt_first_call_s (256x256, JIT or cache load)": first_call,
        "cp3rt_cold_compile_s (empty NUMBA_CACHE_DIR)": _cold_compile_seconds(),
        "results": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(args.out / "dynamics.json", json.dumps(record, indent=2).encode())
    atomic_write_bytes(args.out / "dynamics.md", _markdown(record).encode())
    print(_markdown(record))


def _markdown(r: dict) -> str:
    lines = [
        "# Dynamics: flows -> masks, 2048x2048, ~1500 cells (cp3rt numba vs reference)", "",
        f"Date: {r['date']}  ",
        f"Command: `{r['command']}` (LD_PRELOAD=`{r['ld_preload'] or 'none'}`)  ",
        f"Environment: {json.dumps(r['environment'])}  ",
        f"Load average at start {[round(x, 2) for x in r['load_average_at_start']]}, "
        f"at end {[round(x, 2) for x in r['load_average_at_end']]} (shared 2-core machine).  ",
        f"Input: {r['input']}; settings {r['settings']}; {r['repeats']} interleaved rounds "
        "after one warm-up call per side; wall seconds.  ",
        f"cp3rt first call (256x256, JIT/cache load): "
        f"{r['cp3rt_first_call_s (256x256, JIT or cache load)']:.2f} s; cold compile with an "
        f"empty numba cache: {r['cp3rt_cold_compile_s (empty NUMBA_CACHE_DIR)']:.1f} s "
        "(excluded from the timings).", "",
        "| flow QC | cp3rt median [min, max] | reference median [min, max] | ref/cp3rt "
        "| CPU s cp3rt / ref (ratio) | masks cp3rt / ref | AP vs ref @0.5/0.75/0.9 |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, v in r["results"].items():
        o, f = v["cp3rt"], v["reference"]
        lines.append(
            f"| {name} | {o['median']:.3f} [{o['min']:.3f}, {o['max']:.3f}] "
            f"| {f['median']:.2f} [{f['min']:.2f}, {f['max']:.2f}] "
            f"| {v['ratio_of_medians']:.1f}x "
            f"| {v['cpu_s']['cp3rt']['median']:.2f} / {v['cpu_s']['reference']['median']:.2f} "
            f"({v['cpu_ratio_of_medians']:.1f}x) "
            f"| {v['n_masks']['cp3rt']} / {v['n_masks']['reference']} "
            f"| {', '.join(f'{a:.3f}' for a in v['ap_vs_reference@[0.5,0.75,0.9]'])} |")
    lines += ["", "cp3rt stages (one extra call, seconds):", ""]
    for name, v in r["results"].items():
        st = ", ".join(f"{k} {s:.3f}" for k, s in v["cp3rt_stages_s"].items())
        lines.append(f"* {name}: {st}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
