"""The GPU-resident path against the host path and the reference, on the same GPU (issue 16).

Protocol
--------
* Weights: the trained starters recovered from the shipped ONNX, embedded in cyto3's shape and
  placed as ``cyto3`` / ``denoise_cyto3`` so that the reference loads the very same files
  (``bench_gpu.setup_models`` with ``starters``).
* Images: 1024x1024 and 2048x2048 mosaics of carried GOWT1 frames at the starter's diameter
  (``--images``, see gpu_checks.sh carry), else synthetic discs; diameter 17 (rescale 1).
* Paths, both through one ``Pipeline`` on torch-CUDA engines (fp16, fixed batch 64, folded BN,
  ``--compile`` for Inductor): ``host`` = ``gpu_resident=False`` (normalise, tiles, blend and
  dynamics on the CPU; numpy batches to the engine) and ``resident`` = ``gpu_resident=True``
  (one upload; normalise, tiles, nets, blend and numba-cuda dynamics on the GPU; the label image,
  flows and style back). ``reference`` = ``CellposeModel.eval`` / ``CellposeDenoiseModel.eval``.
* Latency of one 1024x1024 image, segment and restore -> segment: p50 / p99 of ``--runs``.
  Folder: ``--folder`` (200) images whose sides cycle through 1024, 1280, 1536, 1792, 2048 px
  (distinct mosaics), one at a time, in 1024^2-equivalents/s; the host path on the first
  ``--host-folder`` (40) and the reference on the first ``--ref-folder`` (10) of them (their rates
  are steady; the whole folder would take minutes of device time).
* Device memory of one 2048x2048 restore -> segment on the resident path, in a fresh interpreter
  (nothing else on the device): torch's peak allocation, and the memory in use on the device
  after it (``torch.cuda.mem_get_info``: the CUDA context, every allocator, numba-cuda's and the
  caching allocators' reserves included; the bare context alone is reported too). The issue's
  bound is 4 GB.
* Masks of the resident path against the host path, both fp32 with TF32 off: AP at IoU
  0.5/0.75/0.9 (the issue's bar: AP@0.9 >= 0.99).
* Verdict: every must-show of issue 16 that this run measures, with its bar and pass / fail
  (``BARS``), in the JSON and in the Markdown report (``gpu_resident.md``).
Run:  PYTHONPATH=src python3 benchmarks/bench_gpu_resident.py --images .gpucarry/data --out DIR
      ``--smoke-cpu``: development only, the torch engine on the CPU, tiny sizes, no reference.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--images", type=Path, default=None)
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--folder", type=int, default=200, help="images in the folder runs (sides cycle 1024..2048)")
    p.add_argument("--ref-folder", type=int, default=10, help="of them, how many the reference runs")
    p.add_argument("--host-folder", type=int, default=40, help="of them, how many the host path runs")
    p.add_argument("--memory-only", type=int, default=0, help=argparse.SUPPRESS)  # the inner process of device_memory
    p.add_argument("--compile", action="store_true")
    p.add_argument("--smoke-cpu", action="store_true")
    p.add_argument("--out", type=Path, default=HERE / "results")
    return p.parse_args(argv)


# Issue 16's bars: (result key, comparison, bar, what).
BARS = (("segment_p50_ms", "<=", 30.0, "one 1024² image, segment, resident p50 (ms)"),
        ("restore_p50_ms", "<=", 50.0, "one 1024² image, restore -> segment, resident p50 (ms)"),
        ("segment_folder_equiv_per_s", ">=", 60.0, "folder, segment, resident (1024²-equivalents/s)"),
        ("restore_folder_equiv_per_s", ">=", 30.0, "folder, restore -> segment, resident (1024²-equivalents/s)"),
        ("segment_folder_x_reference", ">=", 20.0, "folder, segment: resident / reference on this GPU"),
        ("restore_folder_x_reference", ">=", 20.0, "folder, restore -> segment: resident / reference on this GPU"),
        ("big_device_in_use_gib", "<=", 4.0, "2048² restore -> segment, device memory in use (GiB)"),
        ("masks_ap90_fp32", ">=", 0.99, "masks, resident vs host path, fp32, AP@0.9"))
FOLDER_SIDES = (1024, 1280, 1536, 1792, 2048)


def image_source(args: argparse.Namespace):  # noqa: ANN201
    """``make(size, k)``: the k-th distinct size x size test image (GOWT1 mosaics when carried)."""
    from bench_gpu import synthetic_image, tile_parts, zoomed

    folder = None if args.images is None else args.images / "ctc_gowt1_nuclei" / "images"
    if folder is not None and any(folder.glob("*.tif")):
        import tifffile

        parts = zoomed([tifffile.imread(q).astype(np.float32) for q in sorted(folder.glob("*.tif"))], 17.0 / 60.0)
        return lambda size, k: tile_parts(parts, k, size)
    return lambda size, k: synthetic_image(k, size)


def images_for(args: argparse.Namespace, size: int, n: int) -> list[np.ndarray]:
    make = image_source(args)
    return [make(size, k) for k in range(n)]


def folder_images(args: argparse.Namespace, n: int, sides: tuple[int, ...]) -> list[np.ndarray]:
    make = image_source(args)
    return [make(sides[k % len(sides)], k) for k in range(n)]


def equivalents(images: list[np.ndarray], unit: int) -> float:
    return sum(im.size for im in images) / float(unit * unit)


def folder_rate(run_one, images: list[np.ndarray], unit: int, sync) -> float:  # noqa: ANN001
    """1024²-equivalents per second over ``images``, one at a time."""
    sync()
    t0 = time.perf_counter()
    for im in images:
        run_one(im)
    sync()
    return equivalents(images, unit) / (time.perf_counter() - t0)


def verdict(results: dict) -> list[dict]:
    """Each bar of issue 16 this run measured: value, bar, pass."""
    seg, rest = results["rows"]
    values = {"segment_p50_ms": seg["resident"]["p50_ms"], "restore_p50_ms": rest["resident"]["p50_ms"],
              "segment_folder_equiv_per_s": seg["resident"]["folder_equiv_per_s"],
              "restore_folder_equiv_per_s": rest["resident"]["folder_equiv_per_s"],
              "masks_ap90_fp32": results["masks_resident_vs_host_fp32"]["ap"][2]}
    for key, row in (("segment", seg), ("restore", rest)):
        values[f"{key}_folder_x_reference"] = row["resident"]["folder_equiv_per_s"] / row["reference"]["folder_equiv_per_s"]
    if "big_device_in_use_gib" in rest:
        values["big_device_in_use_gib"] = rest["big_device_in_use_gib"]
    out = []
    for key, op, bar, what in BARS:
        v = values.get(key)  # None: not measured in this run (the smoke test has no device memory)
        out.append({"key": key, "what": what, "value": v, "bar": f"{op} {bar:g}",
                    "pass": None if v is None else bool(v <= bar if op == "<=" else v >= bar)})
    return out


def report(results: dict) -> str:
    fp = results["fingerprint"]
    md = [f"# The GPU-resident path vs the host path vs the reference ({fp.get('date')})", "",
          f"Command: `{fp.get('command')}`", "", f"GPU: {results['gpu']}", "",
          f"Host: {fp.get('machine')}, {fp.get('cores')} cores; versions: "
          + ", ".join(f"{k} {v}" for k, v in fp.items() if k not in ("date", "command", "machine", "cores")), "",
          "| what | path | p50 ms | p99 ms | folder 1024²-eq/s |", "|---|---|---|---|---|"]
    for row in results["rows"]:
        for path in ("host", "resident", "reference"):
            if path in row:
                r = row[path]
                md.append(f"| {row['what']} | {path} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | "
                          f"{r.get('folder_equiv_per_s', float('nan')):.2f} |")
    ap = results["masks_resident_vs_host_fp32"]
    md += ["", f"Masks, resident vs host, fp32: AP@0.5/0.75/0.9 = {ap['ap']} over {ap['images']} images.",
           "", "## Issue 16's bars", "", "| bar | value | needed | pass |", "|---|---|---|---|"]
    md += [f"| {v['what']} | {'not measured' if v['value'] is None else format(v['value'], '.3g')} | {v['bar']} | "
           f"{'-' if v['pass'] is None else 'yes' if v['pass'] else 'NO'} |" for v in results["verdict"]]
    return "\n".join(md) + "\n"


def latency(run_one, image: np.ndarray, runs: int, sync) -> dict:  # noqa: ANN001
    for _ in range(2):
        run_one(image)
    times = []
    for _ in range(runs):
        sync()
        t0 = time.perf_counter()
        run_one(image)
        sync()
        times.append(time.perf_counter() - t0)
    return {"p50_ms": 1e3 * float(np.percentile(times, 50)), "p99_ms": 1e3 * float(np.percentile(times, 99))}


def open_pipeline(models: Path, args: argparse.Namespace, precision: str, restore: bool):  # noqa: ANN201
    from bench_gpu import Borrowed

    from cp3rt.runtime.config import RunConfig
    from cp3rt.runtime.pipeline import Pipeline

    if args.smoke_cpu:
        from cp3rt.engines.torch_engine import TorchEngine

        seg = TorchEngine(models / "cyto3")
        rest = TorchEngine(models / "denoise_cyto3") if restore else None
    else:
        from cp3rt.engines.torch_cuda import TorchCudaEngine

        seg = TorchCudaEngine(models / "cyto3", precision=precision, batch=64, compile=args.compile)
        rest = (TorchCudaEngine(models / "denoise_cyto3", precision=precision, batch=64, compile=args.compile)
                if restore else None)
    run = RunConfig(diameter=17.0, channels=(0, 0), batch_size=64)
    return Pipeline.from_engines(Borrowed(seg), Borrowed(rest) if rest else None, run=run)


def device_memory(args: argparse.Namespace, side: int) -> dict:
    """Device memory of one side x side restore -> segment on the resident path, measured by a
    fresh interpreter (``--memory-only``) so that no other pipeline or the reference holds any."""
    import subprocess

    cmd = [sys.executable, __file__, "--memory-only", str(side), "--out", str(args.out)]
    if args.images is not None:
        cmd += ["--images", str(args.images)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=dict(os.environ))
    if proc.returncode != 0:
        return {"device_memory_error": proc.stderr[-1500:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def memory_only(args: argparse.Namespace, models: Path) -> dict:
    """This process: a bare CUDA context, then the resident restore -> segment of one image
    (default configuration: fp16, batch 64): torch's peak and the device memory in use."""
    import torch

    torch.cuda.init()
    torch.zeros(1, device="cuda")
    free0, total = torch.cuda.mem_get_info()
    pipe = open_pipeline(models, args, "fp16", True)
    image = images_for(args, args.memory_only, 1)[0]
    pipe.run(image, gpu_resident=True)  # warm: kernels compiled, buffers allocated
    torch.cuda.reset_peak_memory_stats()
    pipe.run(image, gpu_resident=True)
    torch.cuda.synchronize()
    free, _ = torch.cuda.mem_get_info()
    return {"big_side": args.memory_only, "big_torch_peak_gib": torch.cuda.max_memory_allocated() / 2**30,
            "big_device_in_use_gib": (total - free) / 2**30, "cuda_context_gib": (total - free0) / 2**30}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    if not args.smoke_cpu and not torch.cuda.is_available():
        print("bench_gpu_resident: no CUDA GPU visible to torch here; run it on a GPU machine.", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="bench_gpu_resident_"))
    os.environ["CELLPOSE_LOCAL_MODELS_PATH"] = str(work / "models")  # before cellpose is imported
    os.environ.setdefault("CP3RT_CACHE_DIR", str(work / "cache"))
    from bench_gpu import ReferenceRunner, fingerprint, gpu_facts, log, setup_models

    from cp3rt.runtime.quality.metrics import average_precision

    setup_models(argparse.Namespace(starters=True, seg_weights=None, restore_weights=None), work)
    models = work / "models"
    if args.memory_only:
        print(json.dumps(memory_only(args, models)))
        return 0
    sync = (lambda: None) if args.smoke_cpu else torch.cuda.synchronize
    size, big = (256, 384) if args.smoke_cpu else (1024, 2048)
    runs = 2 if args.smoke_cpu else args.runs
    results: dict = {"fingerprint": fingerprint(args),
                     "gpu": {"name": "cpu smoke test"} if args.smoke_cpu else gpu_facts(torch), "rows": []}
    image = images_for(args, size, 1)[0]
    sides = (size, big) if args.smoke_cpu else FOLDER_SIDES
    folder = folder_images(args, 2 if args.smoke_cpu else args.folder, sides)
    for restore in (False, True):
        pipe = open_pipeline(models, args, "fp16", restore)
        row: dict = {"what": "restore -> segment" if restore else "segment", "size": size, "folder_sides": list(sides)}
        for name, resident, count in (("host", False, args.host_folder), ("resident", True, len(folder))):
            run_one = lambda img, r=resident: pipe.run(img, gpu_resident=r).masks  # noqa: E731
            row[name] = latency(run_one, image, runs, sync)
            row[name].update(folder_equiv_per_s=folder_rate(run_one, folder[:count], size, sync),
                             folder_images=min(count, len(folder)))
        pipe.close()
        reference = ReferenceRunner(gpu=not args.smoke_cpu, restore=restore)  # the smoke test: on the CPU
        row["reference"] = latency(reference, image, max(3, runs // 4), sync)
        row["reference"].update(folder_equiv_per_s=folder_rate(reference, folder[: args.ref_folder], size, sync),
                                folder_images=min(args.ref_folder, len(folder)))
        del reference
        results["rows"].append(row)
        log(f"{row['what']}: {json.dumps(row)}")
    if not args.smoke_cpu:  # in a fresh process: only what the default configuration needs is on the device
        results["rows"][1].update(device_memory(args, big))
    if not args.smoke_cpu:  # masks: resident vs host, true fp32 on both
        torch.backends.cudnn.allow_tf32 = False
    pipe = open_pipeline(models, args, "fp32", False)
    aps = [average_precision(pipe.run(im).masks, pipe.run(im, gpu_resident=True).masks, (0.5, 0.75, 0.9))[0]
           for im in images_for(args, size, 4)]
    results["masks_resident_vs_host_fp32"] = {"ap": [float(v) for v in np.mean(aps, axis=0)], "images": len(aps)}
    results["verdict"] = verdict(results)
    args.out.mkdir(parents=True, exist_ok=True)
    name = "gpu_resident_smoke" if args.smoke_cpu else "gpu_resident"
    (args.out / f"{name}.json").write_text(json.dumps(results, indent=1))
    (args.out / f"{name}.md").write_text(report(results))
    print(report(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
