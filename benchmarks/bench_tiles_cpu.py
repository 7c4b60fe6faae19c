"""Segmentation-net throughput on CPU: 224x224 tiles, batch 8, reference vs cp3rt (ONNX Runtime).

Protocol
--------
* One random-init Cellpose v3 segmentation weight file (reference ``CPnet``, seed 0) is the
  source for everything; cp3rt exports it to ONNX (fp32 and fp16 graphs) with
  ``cp3rt.export.to_onnx.export_onnx``.
* Input: 8 tiles of 224x224 cut from a real image (ctc_gowt1_nuclei seq01_t031), 1-99 %
  normalised, second channel zeros (as for a grayscale image), float32.
* Every configuration runs in its own worker process (so thread pools and LD_PRELOAD do not
  mix): the reference runs ``cellpose.core._forward`` on ``CellposeModel(gpu=False).net``
  exactly as ``CellposeModel.eval`` does on CPU (eval, no_grad, MKL-DNN when available),
  with and without tcmalloc preloaded; cp3rt runs ``OrtEngine.infer`` with one setting
  changed at a time from the defaults.
* Each worker warms up (``--warmup`` batches, not timed) and then waits. Timed batches are
  taken in ``--rounds`` rounds, each round visiting every worker in turn for ``--per-round``
  batches, so slow drifts in machine load hit all configurations alike.
* Reported per configuration: median seconds per batch, quartiles, min/max, and tiles/s
  (batch / median). cp3rt is compared with the faster reference variant. Outputs of each
  configuration are compared with the reference (max |difference|) to show the same
  computation is timed.

Run:  .venv/bin/python benchmarks/bench_tiles_cpu.py   (results -> benchmarks/results/tiles_cpu.*)
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
DATA = HERE.parents[0] / ".." / "shared" / "data"
IMAGE = DATA / "ctc_gowt1_nuclei" / "images" / "seq01_t031.tif"
TCMALLOC = "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4"
TILE = 224
BATCH = 8

# name -> (kind, ORT options or None, precision, tcmalloc)
CONFIGS: dict[str, tuple[str, dict | None, str, bool]] = {
    "reference": ("ref", None, "fp32", False),
    "reference+tcmalloc": ("ref", None, "fp32", True),
    "ort default": ("ort", {}, "fp32", False),
    "ort default+tcmalloc": ("ort", {}, "fp32", True),
    "ort graph_opt=disable": ("ort", {"graph_opt": "disable"}, "fp32", False),
    "ort graph_opt=basic": ("ort", {"graph_opt": "basic"}, "fp32", False),
    "ort graph_opt=extended": ("ort", {"graph_opt": "extended"}, "fp32", False),
    "ort threads=1": ("ort", {"threads": 1}, "fp32", False),
    "ort threads=2": ("ort", {"threads": 2}, "fp32", False),
    "ort execution_mode=parallel": ("ort", {"execution_mode": "parallel"}, "fp32", False),
    "ort mem_arena=off": ("ort", {"mem_arena": False}, "fp32", False),
    "ort spin=on": ("ort", {"spin": True}, "fp32", False),
    "ort fp16 graph": ("ort", {}, "fp16", False),
}


# ---- worker side -------------------------------------------------------------------------------

def _worker(spec: dict) -> None:
    x = np.load(spec["input"])
    if spec["kind"] == "ref":
        from cellpose import core, models

        model = models.CellposeModel(gpu=False, pretrained_model=spec["weights"])
        net = model.net

        def run() -> tuple[np.ndarray, np.ndarray]:
            return core._forward(net, x)
    else:
        from cp3rt.engines.ort import OrtEngine

        engine = OrtEngine(spec["onnx"], **spec["opts"])

        def run() -> tuple[np.ndarray, np.ndarray]:
            out = engine.infer(x)
            return out["flows"], out["style"]

    y, style = run()
    np.savez(spec["out"], flows=y, style=style)
    for _ in range(spec["warmup"] - 1):
        run()
    maps = Path("/proc/self/maps").read_text() if Path("/proc/self/maps").exists() else ""
    _send({"ready": True, "tcmalloc_loaded": "tcmalloc" in maps})
    for line in sys.stdin:
        n = int(line)
        if n == 0:
            return
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            run()
            times.append(time.perf_counter() - t0)
        _send({"times": times})


def _send(obj: dict) -> None:
    sys.stdout.write("@@" + json.dumps(obj) + "\n")
    sys.stdout.flush()


def _receive(proc: subprocess.Popen) -> dict:
    for line in proc.stdout:  # type: ignore[union-attr]
        if line.startswith("@@"):
            return json.loads(line[2:])
    raise RuntimeError(f"worker exited with {proc.wait()}")


# ---- main side ---------------------------------------------------------------------------------

def _make_input(path: Path) -> None:
    import tifffile

    img = tifffile.imread(IMAGE).astype(np.float32)
    lo, hi = np.percentile(img, [1, 99])
    img = (img - lo) / (hi - lo)
    starts = [(y, x) for y in (0, 400, 800) for x in (0, 400, 800)][:BATCH]
    tiles = np.zeros((BATCH, 2, TILE, TILE), np.float32)
    for i, (y, x) in enumerate(starts):
        tiles[i, 0] = img[y:y + TILE, x:x + TILE]
    np.save(path, tiles)


def _make_models(tmp: Path) -> dict[str, Path | str]:
    import torch
    from cellpose import resnet_torch

    from cp3rt.export.to_onnx import export_onnx

    torch.manual_seed(0)
    weights = tmp / "cyto3_random"
    resnet_torch.CPnet([2, 32, 64, 128, 256], 3, 3).save_model(str(weights))
    paths: dict[str, Path | str] = {"weights": weights}
    for precision in ("fp32", "fp16"):
        try:
            paths[precision] = export_onnx(weights, tmp / "onnx", precision=precision).onnx_path
        except Exception as exc:  # recorded in the results instead of hiding the other numbers
            if precision == "fp32":
                raise
            paths["fp16_error"] = f"{type(exc).__name__}: {exc}"
    return paths


def _stats(times: list[float]) -> dict:
    arr = np.asarray(times)
    med = float(np.median(arr))
    return {
        "times_s": [round(t, 4) for t in times],
        "median_s": round(med, 4),
        "p25_s": round(float(np.percentile(arr, 25)), 4),
        "p75_s": round(float(np.percentile(arr, 75)), 4),
        "min_s": round(float(arr.min()), 4),
        "max_s": round(float(arr.max()), 4),
        "tiles_per_s": round(BATCH / med, 3),
        "tiles_per_s_iqr": [round(BATCH / float(np.percentile(arr, 75)), 3),
                            round(BATCH / float(np.percentile(arr, 25)), 3)],
    }


def _environment() -> dict:
    from cp3rt.engines.probe import versions

    env = versions()
    env.update({
        "logical_cpus": os.cpu_count(),
        "machine": platform.machine(),
        "loadavg_start": list(os.getloadavg()),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
    })
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--per-round", type=int, default=1)
    parser.add_argument("--only", nargs="*", help="subset of configuration names")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "tiles_cpu",
                        help="results path stem; writes <stem>.json and <stem>.md")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(json.loads(args.worker))
        return

    env_info = _environment()
    names = args.only or list(CONFIGS)
    with tempfile.TemporaryDirectory(prefix="bench_tiles_") as tmpdir:
        tmp = Path(tmpdir)
        _make_input(tmp / "x.npy")
        paths = _make_models(tmp)
        skipped = {}
        if "fp16_error" in paths:
            skipped = {n: f"fp16 export failed: {paths['fp16_error']}" for n in names if CONFIGS[n][2] == "fp16"}
            names = [n for n in names if n not in skipped]
        workers, ready = {}, {}
        for name in names:  # start one at a time so warm-ups do not overlap
            kind, opts, precision, tcmalloc = CONFIGS[name]
            spec = {"kind": kind, "weights": str(paths["weights"]), "onnx": str(paths[precision]),
                    "opts": opts or {}, "input": str(tmp / "x.npy"), "out": str(tmp / f"{len(workers)}.npz"),
                    "warmup": args.warmup}
            env = dict(os.environ)
            env.pop("LD_PRELOAD", None)
            if tcmalloc:
                env["LD_PRELOAD"] = TCMALLOC
            proc = subprocess.Popen([sys.executable, __file__, "--worker", json.dumps(spec)], env=env,
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            workers[name] = (proc, spec)
            ready[name] = _receive(proc)
        times: dict[str, list[float]] = {name: [] for name in names}
        for _ in range(args.rounds):
            for name in names:
                proc, _spec = workers[name]
                proc.stdin.write(f"{args.per_round}\n")  # type: ignore[union-attr]
                proc.stdin.flush()  # type: ignore[union-attr]
                times[name] += _receive(proc)["times"]
        for proc, _spec in workers.values():
            proc.stdin.write("0\n")  # type: ignore[union-attr]
            proc.stdin.close()  # type: ignore[union-attr]
            proc.wait()
        ref_out = np.load(workers[names[0]][1]["out"]) if CONFIGS[names[0]][0] == "ref" else None
        results = []
        for name in names:
            kind, opts, precision, tcmalloc = CONFIGS[name]
            row = {"name": name, "kind": kind, "ort_options": opts, "precision": precision,
                   "ld_preload_tcmalloc": tcmalloc, "tcmalloc_loaded": ready[name]["tcmalloc_loaded"]}
            row.update(_stats(times[name]))
            if ref_out is not None:
                out = np.load(workers[name][1]["out"])
                row["max_abs_diff_vs_reference"] = {k: float(np.abs(out[k] - ref_out[k]).max()) for k in ("flows", "style")}
            results.append(row)
    env_info["loadavg_end"] = list(os.getloadavg())
    report = {
        "benchmark": "tiles_cpu",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(shlex.quote(a) for a in [".venv/bin/python", "benchmarks/bench_tiles_cpu.py", *sys.argv[1:]]),
        "protocol": {"tile": TILE, "batch": BATCH, "warmup_batches": args.warmup, "rounds": args.rounds,
                     "batches_per_round": args.per_round, "timed_batches": args.rounds * args.per_round,
                     "input": str(IMAGE.relative_to(DATA.parent)) if IMAGE.exists() else str(IMAGE)},
        "environment": env_info,
        "results": results,
        "summary": _summary(results),
        "not_measured": skipped,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    # --out is a stem: "results/tiles_cpu.threads" -> tiles_cpu.threads.json (not with_suffix)
    Path(f"{args.out}.json").write_text(json.dumps(report, indent=2) + "\n")
    Path(f"{args.out}.md").write_text(_markdown(report))
    sys.stdout.write(_markdown(report))


def _summary(results: list[dict]) -> dict:
    refs = [r for r in results if r["kind"] == "ref"]
    orts = [r for r in results if r["kind"] == "ort"]
    if not refs or not orts:
        return {}
    best_ref = max(refs, key=lambda r: r["tiles_per_s"])
    best_ort = max(orts, key=lambda r: r["tiles_per_s"])
    default = next((r for r in orts if r["name"] == "ort default"), best_ort)
    return {
        "best_reference": best_ref["name"],
        "best_reference_tiles_per_s": best_ref["tiles_per_s"],
        "best_cp3rt": best_ort["name"],
        "best_cp3rt_tiles_per_s": best_ort["tiles_per_s"],
        "cp3rt_default_tiles_per_s": default["tiles_per_s"],
        "speedup_best_cp3rt_vs_best_reference": round(best_ort["tiles_per_s"] / best_ref["tiles_per_s"], 2),
        "speedup_default_cp3rt_vs_best_reference": round(default["tiles_per_s"] / best_ref["tiles_per_s"], 2),
    }


def _markdown(report: dict) -> str:
    env = report["environment"]
    lines = [
        "# Segmentation net on CPU: 224x224 tiles, batch 8",
        "",
        f"- Date (UTC): {report['date']}",
        f"- Command: `{report['command']}`",
        f"- CPU: {env['cpu']}, {env['logical_cpus']} logical CPUs; load average at start/end "
        f"{env['loadavg_start'][0]:.2f} / {env['loadavg_end'][0]:.2f} (shared machine)",
        f"- Python {env['python']}, numpy {env['numpy']}, numba {env['numba']}, onnxruntime "
        f"{env['onnxruntime']}, torch {env['torch']}, cellpose reference 3.1.1.2, cp3rt {env['cp3rt']}",
        f"- Protocol: {report['protocol']['warmup_batches']} warm-up batches per worker, then "
        f"{report['protocol']['rounds']} interleaved rounds x {report['protocol']['batches_per_round']} "
        "timed batches; median and quartiles of seconds per batch; tiles/s = 8 / median.",
        "- tcmalloc: `LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4` where the row says so "
        "(checked in /proc/self/maps of the worker).",
        "",
        "| configuration | tcmalloc | tiles/s (median) | tiles/s IQR | s/batch median [min, max] | max abs diff flows / style vs reference |",
        "|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        diff = r.get("max_abs_diff_vs_reference")
        diff_text = f"{diff['flows']:.2e} / {diff['style']:.2e}" if diff else "-"
        lines.append(
            f"| {r['name']} | {'yes' if r['tcmalloc_loaded'] else 'no'} | {r['tiles_per_s']:.2f} | "
            f"{r['tiles_per_s_iqr'][0]:.2f}-{r['tiles_per_s_iqr'][1]:.2f} | {r['median_s']:.3f} "
            f"[{r['min_s']:.3f}, {r['max_s']:.3f}] | {diff_text} |"
        )
    for name, why in report["not_measured"].items():
        lines.append(f"| {name} | - | not measured: {why} | | | |")
    s = report["summary"]
    if s:
        lines += [
            "",
            f"Best reference: {s['best_reference']} at {s['best_reference_tiles_per_s']:.2f} tiles/s. "
            f"Best cp3rt: {s['best_cp3rt']} at {s['best_cp3rt_tiles_per_s']:.2f} tiles/s "
            f"({s['speedup_best_cp3rt_vs_best_reference']}x). cp3rt defaults: "
            f"{s['cp3rt_default_tiles_per_s']:.2f} tiles/s ({s['speedup_default_cp3rt_vs_best_reference']}x).",
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
