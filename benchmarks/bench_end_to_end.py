"""End-to-end restore + segment of one 1024x1024 image on CPU: cp3rt (ONNX Runtime) vs the
reference ``CellposeDenoiseModel.eval`` (cellpose 3.1.1.2, torch CPU).

Protocol
--------
* Weights: random-init Cellpose v3 nets written by the reference's own CPnet under zoo names
  (``cyto3``, ``denoise_cyto3``) with randomised BatchNorm statistics and output heads
  calibrated so that the dynamics do the work of a dense image (hundreds of candidate masks;
  see tests/pipeline_testutil.py). Both sides load the same files; cp3rt exports them to ONNX
  once (fp32) before anything is timed.
* Image: ctc_gowt1_nuclei seq01_t031 (1024x1024, uint8, real fluorescence). Settings: gray
  (channels [0, 0]), diameter 30 (rescale 1: both nets run at full resolution, 36 tiles each),
  every other setting at its default (flow_threshold 0.4, cellprob 0, min_size 15,
  tile_overlap 0.1, batch 8).
* Every configuration runs in its own worker process, one after the other in the same
  invocation: cp3rt (ONNX Runtime CPU, default engine options = one intra-op thread per
  physical core, batch 8), cp3rt with onnxruntime's memory patterns on (the engine default
  before 2026-11-26: ``defaults.ORT_MEM_PATTERN`` is now off), cp3rt with tcmalloc, the
  reference with tcmalloc
  (LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4) and without.
* Each worker opens its models (timed as "open", not part of the runs), runs ``--warmup``
  untimed runs, then ``--repeats`` timed runs. Reported: median seconds per image with min/max
  and quartiles, per-stage medians, and the process's peak RSS (ru_maxrss, high-water mark
  including model loading). Reference stages come from timing wrappers around
  ``DenoiseModel.eval`` (restore, incl. its normalisation), ``CellposeModel._run_net``
  (segment net incl. resize/tiling) and ``CellposeModel._compute_masks`` (dynamics);
  "other" is the rest of the call (conversion, segmentation normalisation).
* The masks of the last run of every configuration are compared with the reference's (AP at
  IoU 0.5/0.9, reference matching code) to show that the same computation was timed.

Run:  .venv/bin/python benchmarks/bench_end_to_end.py
      (results -> benchmarks/results/end_to_end.json and .md)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
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
IMAGE = REPO / ".." / "shared" / "data" / "ctc_gowt1_nuclei" / "images" / "seq01_t031.tif"
TCMALLOC = "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4"
SETTINGS = {"channels": [0, 0], "diameter": 30.0}
CONFIGS = {  # name -> (kind, tcmalloc preloaded)
    "cp3rt ort-cpu": ("cp3rt", False),
    "cp3rt ort-cpu mem-pattern on": ("cp3rt-mem-pattern", False),  # the onnxruntime default before 2026-11-26
    "cp3rt ort-cpu +tcmalloc": ("cp3rt", True),
    "reference +tcmalloc": ("reference", True),
    "reference": ("reference", False),
}
STAGES = ("normalize", "restore", "segment", "dynamics", "other")


# ---- workers (each in its own process) ----------------------------------------------------

def _worker_cp3rt(img: np.ndarray, args: argparse.Namespace):
    if args.worker == "cp3rt-mem-pattern":
        import cp3rt.defaults as D

        D.ORT_MEM_PATTERN = True  # read when cp3rt.engines.ort is first imported (below)
    from cp3rt import Pipeline

    t = time.perf_counter()
    pipe = Pipeline("cyto3", restore="denoise_cyto3", backend="ort")
    opened = time.perf_counter() - t

    def run():
        t0 = time.perf_counter()
        res = pipe.run(img, channels=tuple(SETTINGS["channels"]), diameter=SETTINGS["diameter"])
        total = time.perf_counter() - t0
        stages = {k: res.timings.get(k, 0.0) for k in STAGES if k != "other"}
        stages["other"] = total - sum(stages.values())
        return total, stages, res.masks

    return opened, run


def _worker_reference(img: np.ndarray, args: argparse.Namespace):
    from cellpose import denoise, models

    acc = dict.fromkeys(STAGES, 0.0)

    def timed(owner, name, stage):
        inner = getattr(owner, name)

        def wrapper(*a, **k):
            t0 = time.perf_counter()
            try:
                return inner(*a, **k)
            finally:
                acc[stage] += time.perf_counter() - t0

        setattr(owner, name, wrapper)

    timed(denoise.DenoiseModel, "eval", "restore")
    timed(models.CellposeModel, "_run_net", "segment")
    timed(models.CellposeModel, "_compute_masks", "dynamics")
    t = time.perf_counter()
    model = denoise.CellposeDenoiseModel(gpu=False, model_type="cyto3", restore_type="denoise_cyto3")
    opened = time.perf_counter() - t

    def run():
        for k in acc:
            acc[k] = 0.0
        t0 = time.perf_counter()
        masks = model.eval(img, **SETTINGS)[0]
        total = time.perf_counter() - t0
        stages = dict(acc)
        stages["other"] = total - sum(v for k, v in acc.items() if k != "other")
        return total, stages, masks

    return opened, run


def worker(args: argparse.Namespace) -> None:
    import tifffile

    img = tifffile.imread(IMAGE)
    make = _worker_reference if args.worker == "reference" else _worker_cp3rt
    opened, run = make(img, args)
    for _ in range(args.warmup):
        run()
    totals, stages, masks = [], [], None
    for _ in range(args.repeats):
        total, st, masks = run()
        totals.append(total)
        stages.append(st)
    np.save(args.masks_out, masks)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps({
        "open_s": opened, "totals_s": totals, "stages_s": stages, "peak_rss_mib": peak_kb / 1024,
        "n_masks": int(len(np.unique(masks)) - 1),
        "tcmalloc_preloaded": "tcmalloc" in os.environ.get("LD_PRELOAD", ""),
    }))


# ---- orchestration ------------------------------------------------------------------------

def _fingerprint() -> dict:
    from cp3rt.engines.probe import cpu_model, package_version

    return {
        "cpu": cpu_model(),
        "logical_cores": os.cpu_count(),
        "python": platform.python_version(),
        **{p: package_version(p) for p in ("numpy", "numba", "onnxruntime", "torch", "cellpose", "cp3rt")},
        "platform": platform.platform(),
        # Other processes share this machine; the load says how quiet it was.
        "loadavg_1_5_15_at_end": list(os.getloadavg()),
    }


def _summary(values: list[float]) -> dict:
    q = np.percentile(values, [25, 75]) if len(values) > 1 else (values[0], values[0])
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "q25": float(q[0]), "q75": float(q[1]), "n": len(values)}


def _prepare(workdir: Path) -> dict[str, str]:
    """Weights under zoo names + the ONNX export, shared by all workers through env vars."""
    sys.path.insert(0, str(REPO / "tests"))
    import pipeline_testutil as U
    from cp3rt.artefacts import resolve_model

    models = U.write_zoo(workdir / "models")
    env = {"CELLPOSE_LOCAL_MODELS_PATH": str(models), "CP3RT_CACHE_DIR": str(workdir / "cache")}
    with U.zoo_env(models, workdir / "cache"):
        for name in ("cyto3", "denoise_cyto3"):
            resolve_model(name)  # export once, outside the timings
    return env


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--worker", choices=("cp3rt", "cp3rt-mem-pattern", "reference"))
    ap.add_argument("--masks-out")
    ap.add_argument("--out", default=str(HERE / "results" / "end_to_end"))
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return
    command = "python " + " ".join(shlex.quote(a) for a in [Path(sys.argv[0]).relative_to(REPO) if Path(sys.argv[0]).is_absolute() else sys.argv[0], *sys.argv[1:]])
    results: dict = {"configs": {}}
    with tempfile.TemporaryDirectory(prefix="cp3rt-e2e-") as tmp:
        work = Path(tmp)
        env_extra = _prepare(work)
        for name, (kind, tcm) in CONFIGS.items():
            env = dict(os.environ, **env_extra)
            env.pop("LD_PRELOAD", None)
            if tcm:
                env["LD_PRELOAD"] = TCMALLOC
            masks_out = work / f"{kind}-{int(tcm)}.npy"
            cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", kind, "--repeats",
                   str(args.repeats), "--warmup", str(args.warmup), "--masks-out", str(masks_out)]
            print(f"running {name} ...", file=sys.stderr, flush=True)
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
            data = json.loads(proc.stdout.strip().splitlines()[-1])
            data["total"] = _summary(data["totals_s"])
            data["stage_median_s"] = {
                s: statistics.median(st[s] for st in data["stages_s"]) for s in STAGES
            }
            data["masks_file"] = str(masks_out)
            results["configs"][name] = data
        _compare_masks(results)
    results.update(
        date=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        command=command,
        environment=_fingerprint(),
        image=str(IMAGE.relative_to(REPO / "..")) if IMAGE.is_relative_to(REPO / "..") else str(IMAGE),
        settings=SETTINGS, repeats=args.repeats, warmup=args.warmup,
    )
    ref = min(("reference", "reference +tcmalloc"), key=lambda n: results["configs"][n]["total"]["median"])
    results["speedup_vs_fastest_reference"] = {
        n: results["configs"][ref]["total"]["median"] / c["total"]["median"]
        for n, c in results["configs"].items()
    }
    results["fastest_reference"] = ref
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    out.with_suffix(".md").write_text(_markdown(results))
    print(_markdown(results))


def _compare_masks(results: dict) -> None:
    from cellpose import metrics

    ref = np.load(results["configs"]["reference"]["masks_file"])
    for c in results["configs"].values():
        got = np.load(c.pop("masks_file"))
        ap = metrics.average_precision(ref.astype(np.int64), got.astype(np.int64), threshold=[0.5, 0.9])[0]
        c["masks_vs_reference_ap50_ap90"] = [float(ap[0]), float(ap[1])]


def _markdown(r: dict) -> str:
    env = r["environment"]
    lines = [
        "# End-to-end restore + segment, 1024x1024, CPU",
        "",
        f"- date: {r['date']}",
        f"- command: `{r['command']}`",
        f"- image: `{r['image']}`, settings {r['settings']}, denoise_cyto3 -> cyto3 (random-init weights, calibrated heads)",
        f"- protocol: {r['warmup']} warm-up + {r['repeats']} timed runs per configuration, each configuration in its own process, sequentially in one invocation (see the script docstring)",
        f"- load average at the end (1/5/15 min): {env['loadavg_1_5_15_at_end']} (the machine is shared)",
        f"- machine: {env['cpu']}, {env['logical_cores']} logical cores; python {env['python']}, numpy {env['numpy']}, numba {env['numba']}, onnxruntime {env['onnxruntime']}, torch {env['torch']}, cellpose {env['cellpose']}",
        "",
        "| configuration | tcmalloc | median s/image | min-max | open s | "
        + " | ".join(f"{s} s" for s in STAGES) + " | peak RSS MiB | masks | AP50/AP90 vs ref | speed-up vs fastest ref |",
        "|---|---|---|---|---|" + "---|" * len(STAGES) + "---|---|---|---|",
    ]
    for name, c in r["configs"].items():
        t = c["total"]
        lines.append(
            f"| {name} | {'yes' if c['tcmalloc_preloaded'] else 'no'} | {t['median']:.2f} | "
            f"{t['min']:.2f}-{t['max']:.2f} | {c['open_s']:.2f} | "
            + " | ".join(f"{c['stage_median_s'][s]:.2f}" for s in STAGES)
            + f" | {c['peak_rss_mib']:.0f} | {c['n_masks']} | "
            f"{c['masks_vs_reference_ap50_ap90'][0]:.3f}/{c['masks_vs_reference_ap50_ap90'][1]:.3f} | "
            f"{r['speedup_vs_fastest_reference'][name]:.2f}x |"
        )
    lines += ["", f"Fastest reference variant: {r['fastest_reference']}.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
