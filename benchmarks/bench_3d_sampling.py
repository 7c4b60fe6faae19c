"""3-D masks from perfect flows: the reference vs cp3rt ``sampling="grid"`` vs cp3rt's default
(``"exact"``), scored against the true labels (issue 20, docs/deviations.md row 11).

Protocol
--------
* Scenes: ellipsoid label volumes (``tests/runtime/dynamics/synth3d.ellipsoid_cells``, random
  orientations, seeded). "dense": ~120 cells, radii 0.40-0.60 of the grid step (touching);
  "sparse": ~40 cells, radii 0.25-0.35 (isolated). Anisotropy 1: drawn on 40 x 160 x 160;
  anisotropy 2: drawn on 80 x 160 x 160 and every 2nd plane kept (40 planes), as a stack with a
  Z step twice the pixel size sees them (cells flat in Z). Labels renumbered 1..N after that.
* Perfect network outputs: dP = 5 x the flows of the true labels (cp3rt's heat-diffusion
  ``masks_to_flows`` of every YX, ZX and ZY slice, summed per axis as a do_3D run sums two views
  per component: ``synth3d.flows_3d``), cellprob +4 inside / -4 outside.
* Masks, all on the same dP/cellprob in the same process: the reference
  (``cellpose.dynamics.resize_and_compute_masks(do_3D=True)``, the oracle package 3.1.1.2, CPU),
  cp3rt ``compute_masks_3d(sampling="grid")`` (= ``reference_bugs=True``) and cp3rt
  ``sampling="exact"`` (the default of ``RunConfig`` since issue 20). niter 200 (the 3-D value
  at rescale 1), min_size 15, cellprob_threshold 0.
* Scored: AP at IoU 0.5 / 0.75 / 0.9 vs the true labels (``cp3rt.runtime.quality``); grid vs
  reference AP (parity) and one wall time per method (not a speed benchmark: single runs).
* No 3-D label volumes exist in shared/data (every set there is 2-D; baby_yeast's z-stacks come
  with 2-D outlines of the middle slice only), so only synthetic scenes are measured.

    LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4 .venv/bin/python \\
        benchmarks/bench_3d_sampling.py [--seeds 0 1]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests" / "runtime" / "dynamics"))
RESULTS = HERE / "results"
NAME = "bench_3d_sampling"
SHAPE = (40, 160, 160)
DENSITY = {"dense": (120, (0.40, 0.60)), "sparse": (40, (0.25, 0.35))}
NITER, MIN_SIZE, PROB = 200, 15, 4.0
THRESHOLDS = (0.5, 0.75, 0.9)
METHODS = ("reference", "cp3rt grid", "cp3rt exact (default)")


def scene(density: str, anisotropy: int, seed: int) -> np.ndarray:
    from synth3d import ellipsoid_cells

    n, radius = DENSITY[density]
    drawn = ellipsoid_cells((SHAPE[0] * anisotropy, *SHAPE[1:]), n, seed=seed, radius=radius)
    lab = drawn[::anisotropy]
    _, inverse = np.unique(lab, return_inverse=True)  # 0 stays 0: labels 1..N again
    return inverse.reshape(lab.shape).astype(np.int32)


def masks(method: str, dP: np.ndarray, cellprob: np.ndarray) -> np.ndarray:
    if method == "reference":
        from cellpose import dynamics

        return dynamics.resize_and_compute_masks(dP, cellprob, niter=NITER, do_3D=True, min_size=MIN_SIZE)
    from cp3rt.runtime.dynamics import compute_masks_3d

    sampling = "grid" if method == "cp3rt grid" else "exact"
    return compute_masks_3d(dP, cellprob, niter=NITER, min_size=MIN_SIZE, sampling=sampling)


def ap(truth: np.ndarray, pred: np.ndarray) -> list[float]:
    from cp3rt.runtime.quality.matching import average_precision

    return [round(float(v), 4) for v in average_precision(truth, pred.astype(np.int32), THRESHOLDS)[0]]


def run_scene(density: str, anisotropy: int, seed: int) -> dict:
    from synth3d import flows_3d

    truth = scene(density, anisotropy, seed)
    dP = (5.0 * flows_3d(truth)).astype(np.float32)
    cellprob = np.where(truth > 0, PROB, -PROB).astype(np.float32)
    row: dict = {"density": density, "anisotropy": anisotropy, "seed": seed, "shape": list(truth.shape),
                 "cells": int(truth.max()), "ap": {}, "objects": {}, "seconds": {}}
    got = {}
    for method in METHODS:
        t0 = time.perf_counter()
        got[method] = masks(method, dP, cellprob)
        row["seconds"][method] = round(time.perf_counter() - t0, 2)
        row["ap"][method] = ap(truth, got[method])
        row["objects"][method] = int(got[method].max())
    row["grid_vs_reference_ap"] = ap(got["reference"], got["cp3rt grid"])
    return row


def summarise(rows: list[dict]) -> dict:
    out = {}
    for density in DENSITY:
        for anisotropy in (1, 2):
            sel = [r for r in rows if r["density"] == density and r["anisotropy"] == anisotropy]
            out[f"{density}, anisotropy {anisotropy}"] = {
                m: [round(float(np.mean([r["ap"][m][k] for r in sel])), 3) for k in range(len(THRESHOLDS))]
                for m in METHODS
            }
    return out


def write(report: dict) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{NAME}.json").write_text(json.dumps(report, indent=2) + "\n")
    env = report["environment"]
    md = [f"# {NAME}: 3-D masks from perfect flows, reference vs cp3rt grid vs cp3rt exact (default)", "",
          f"Date (UTC): {env['date_utc']}. Command: `{env['command']}`.", "",
          f"Environment: {env['cpu']}, {env['cores']} cores (shared, load {env['load_average'][0]:.1f}), "
          f"Python {env['python']}, numpy {env['numpy']}, numba {env['numba']}, torch {env['torch']}, "
          f"cellpose {report['cellpose']}; tcmalloc preloaded: {env['tcmalloc_preloaded']}.", "",
          "Protocol: see the script's docstring. dP = 5 x heat-diffusion flows of the true labels, cellprob "
          "+-4, niter 200, min_size 15; AP vs the true labels. No real 3-D label volumes exist in "
          "shared/data, so only synthetic scenes are measured.", "",
          "## Mean AP@0.5 / 0.75 / 0.9 vs the true labels (over seeds " + ", ".join(map(str, report["seeds"])) + ")",
          "", "| scene | " + " | ".join(METHODS) + " |", "|---|" + "---|" * len(METHODS)]
    for name, per in report["summary"].items():
        md.append(f"| {name} | " + " | ".join(" / ".join(f"{v:.3f}" for v in per[m]) for m in METHODS) + " |")
    md += ["", "## Per volume", "", "| density | anis. | seed | cells | objects ref / grid / exact | "
           "AP ref | AP grid | AP exact | grid vs ref AP | s ref / grid / exact |", "|---" * 10 + "|"]
    for r in report["runs"]:
        fmt = lambda v: " / ".join(f"{x:.3f}" for x in v)  # noqa: E731
        md.append(f"| {r['density']} | {r['anisotropy']} | {r['seed']} | {r['cells']} | "
                  + " / ".join(str(r["objects"][m]) for m in METHODS) + " | "
                  + " | ".join(fmt(r["ap"][m]) for m in METHODS) + f" | {fmt(r['grid_vs_reference_ap'])} | "
                  + " / ".join(f"{r['seconds'][m]:.1f}" for m in METHODS) + " |")
    (RESULTS / f"{NAME}.md").write_text("\n".join(md) + "\n")


def main() -> None:
    ap_ = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap_.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    args = ap_.parse_args()
    import cellpose
    from train_fingerprint import fingerprint

    rows = []
    for density in DENSITY:
        for anisotropy in (1, 2):
            for seed in args.seeds:
                rows.append(run_scene(density, anisotropy, seed))
                print(json.dumps(rows[-1]), flush=True)
    report = {"environment": fingerprint(), "cellpose": getattr(cellpose, "version", "3.1.1.2"),
              "seeds": args.seeds, "summary": summarise(rows), "runs": rows}
    write(report)


if __name__ == "__main__":
    main()
