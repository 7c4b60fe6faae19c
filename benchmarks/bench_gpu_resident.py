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
  Folder: ``--folder`` images alternating 1024 and 2048 px, one at a time, in 1024^2-equivalents/s.
* Device memory of one 2048x2048 restore -> segment on the resident path: torch's peak allocation,
  and the memory in use on the device after it (``torch.cuda.mem_get_info``: every allocator,
  numba-cuda's and the caching allocators' reserves included). The issue's bound is 4 GB.
* Masks of the resident path against the host path, both fp32 with TF32 off: AP at IoU
  0.5/0.75/0.9 (the issue's bar: AP@0.9 >= 0.99).
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
    p.add_argument("--folder", type=int, default=40)
    p.add_argument("--compile", action="store_true")
    p.add_argument("--smoke-cpu", action="store_true")
    p.add_argument("--out", type=Path, default=HERE / "results")
    return p.parse_args(argv)


def images_for(args: argparse.Namespace, size: int, n: int) -> list[np.ndarray]:
    from bench_gpu import mosaic, synthetic_image

    folder = None if args.images is None else args.images / "ctc_gowt1_nuclei" / "images"
    if folder is not None and any(folder.glob("*.tif")):
        import tifffile

        found = [tifffile.imread(q).astype(np.float32) for q in sorted(folder.glob("*.tif"))]
        return [mosaic(found, k, 17.0 / 60.0, size) for k in range(n)]
    return [synthetic_image(k, size) for k in range(n)]


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
    sync = (lambda: None) if args.smoke_cpu else torch.cuda.synchronize
    size, big = (256, 384) if args.smoke_cpu else (1024, 2048)
    runs = 2 if args.smoke_cpu else args.runs
    results: dict = {"fingerprint": fingerprint(args),
                     "gpu": {"name": "cpu smoke test"} if args.smoke_cpu else gpu_facts(torch), "rows": []}
    image = images_for(args, size, 1)[0]
    folder = [images_for(args, s, 1)[0] for s in (size, big)] * max(1, (2 if args.smoke_cpu else args.folder) // 2)
    equivalents = sum(im.size for im in folder) / float(size * size)
    for restore in (False, True):
        pipe = open_pipeline(models, args, "fp16", restore)
        row: dict = {"what": "restore -> segment" if restore else "segment", "size": size}
        for name, resident in (("host", False), ("resident", True)):
            row[name] = latency(lambda img, r=resident: pipe.run(img, gpu_resident=r).masks, image, runs, sync)
            sync()
            t0 = time.perf_counter()
            for im in folder:
                pipe.run(im, gpu_resident=resident)
            sync()
            row[name]["folder_equiv_per_s"] = equivalents / (time.perf_counter() - t0)
        if not args.smoke_cpu:
            row["reference"] = latency(ReferenceRunner(gpu=True, restore=restore), image, max(3, runs // 4), sync)
            if restore:
                torch.cuda.reset_peak_memory_stats()
                pipe.run(images_for(args, big, 1)[0], gpu_resident=True)
                free, total = torch.cuda.mem_get_info()
                row["big_torch_peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
                row["big_device_in_use_gib"] = (total - free) / 2**30
        results["rows"].append(row)
        log(f"{row['what']}: {json.dumps(row)}")
        pipe.close()
    if not args.smoke_cpu:  # masks: resident vs host, true fp32 on both
        torch.backends.cudnn.allow_tf32 = False
    pipe = open_pipeline(models, args, "fp32", False)
    aps = [average_precision(pipe.run(im).masks, pipe.run(im, gpu_resident=True).masks, (0.5, 0.75, 0.9))[0]
           for im in images_for(args, size, 4)]
    results["masks_resident_vs_host_fp32"] = {"ap": [float(v) for v in np.mean(aps, axis=0)], "images": len(aps)}
    args.out.mkdir(parents=True, exist_ok=True)
    name = "gpu_resident_smoke" if args.smoke_cpu else "gpu_resident"
    (args.out / f"{name}.json").write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
