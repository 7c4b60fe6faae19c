"""Compiled torch-CUDA engines: cold vs warm start through cp3rt's compile cache, the host staging
path, and one image's latency with and without compilation (issues 17 and 16).

Protocol
--------
* Weights: the trained starters recovered from the shipped ONNX, in cyto3's shape (as
  bench_gpu_net.py). fp16, batch ``--batch``.
* Cold / warm start: two fresh processes, one after the other, each opening a compiled engine with
  the same new cache root and running its first 224x224 batch; seconds from the engine's
  construction to the end of that first call (Inductor compile or cache load, cuDNN autotuning,
  CUDA-graph capture). The first process finds an empty cache, the second the first's.
* Tiles/s through ``infer_many`` (host staging included) and of the GPU alone, for the folded
  and the folded+compiled engine, in this process.
* Latency: one 1024x1024 image (a GOWT1 mosaic at the starter's diameter when --images has
  them, else synthetic discs) through the Pipeline, segmentation only, p50/p99 of ``--runs``.
Run:  PYTHONPATH=src python3 benchmarks/bench_gpu_warm_start.py --out DIR
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

CHILD = """
import json, sys, time
import numpy as np
t0 = time.perf_counter()
from cp3rt.engines.torch_cuda import TorchCudaEngine
e = TorchCudaEngine(sys.argv[1], precision="fp16", compile=True, batch=int(sys.argv[3]), cache_dir=sys.argv[2])
x = np.random.default_rng(0).normal(size=(int(sys.argv[3]), 2, 224, 224)).astype(np.float32)
e.infer(x)
print(json.dumps({"first_call_s": time.perf_counter() - t0, "cache": str(e.compile_cache)}))
"""


def start_in_fresh_process(weights: Path, cache_root: Path, batch: int) -> dict:
    proc = subprocess.run([sys.executable, "-c", CHILD, str(weights), str(cache_root), str(batch)],
                          capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        return {"error": proc.stderr[-1500:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--images", type=Path, default=None)
    p.add_argument("--out", type=Path, default=HERE / "results")
    args = p.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("bench_gpu_warm_start: no CUDA GPU visible to torch here; run it on a GPU machine.", file=sys.stderr)
        return 2
    from bench_gpu import Borrowed, fingerprint, gpu_facts, latency, log, mosaic, synthetic_image
    from bench_gpu_net import gpu_only_rate, rate_through_infer_many, starter_weights

    from cp3rt.engines.torch_cuda import TorchCudaEngine
    from cp3rt.runtime.config import RunConfig
    from cp3rt.runtime.pipeline import Pipeline

    work = Path(tempfile.mkdtemp(prefix="warm_start_"))
    weights = starter_weights(work)
    results: dict = {"fingerprint": fingerprint(args), "gpu": gpu_facts(torch), "batch": args.batch}
    cache_root = work / "cache"
    results["cold"] = start_in_fresh_process(weights["segment"], cache_root, args.batch)
    log(f"cold start {results['cold']}")
    results["warm"] = start_in_fresh_process(weights["segment"], cache_root, args.batch)
    log(f"warm start {results['warm']}")

    x = np.random.default_rng(1).normal(size=(args.batch, 2, 224, 224)).astype(np.float32)
    if args.images and any((args.images / "ctc_gowt1_nuclei" / "images").glob("*.tif")):
        import tifffile

        found = [tifffile.imread(q).astype(np.float32) for q in sorted((args.images / "ctc_gowt1_nuclei" / "images").glob("*.tif"))]
        image = mosaic(found, 0, 17.0 / 60.0, 1024)
    else:
        image = synthetic_image(0)
    results["engines"] = []
    for compile_ in (False, True):
        engine = TorchCudaEngine(weights["segment"], precision="fp16", compile=compile_, batch=args.batch,
                                 cache_dir=cache_root)
        full = engine.infer(x)["flows"]
        # the staging path and the fixed batch: 5 tiles alone must equal the same 5 in a full batch
        alone_equal = bool(np.array_equal(engine.infer(x[:5])["flows"], full[:5]))
        row = {"compiled": compile_, "alone_equals_in_batch": alone_equal,
               **rate_through_infer_many(engine, x, 4096, 3),
               "gpu_only": gpu_only_rate(torch, engine, args.batch)}
        run = RunConfig(channels=(0, 0), estimate_diameter=False, diameter=17.0, batch_size=args.batch)
        pipe = Pipeline.from_engines(Borrowed(engine), None, run=run)
        row["latency_1024"] = latency(lambda img, pipe=pipe: pipe.run(img).masks, image, args.runs)
        row["objects"] = int(pipe.run(image).masks.max())
        results["engines"].append(row)
        results.setdefault("flows", {})[compile_] = full
        log(f"compiled={compile_}: {row['median']:.0f} tiles/s via infer_many, GPU alone {row['gpu_only']:.0f}, "
            f"1024^2 latency p50 {row['latency_1024']['p50_ms']:.1f} ms")
        engine.close()
    a, b = (results.pop("flows")[k].astype(np.float64) for k in (False, True))
    results["compiled_vs_folded_flows_rel"] = float(np.abs(a - b).max() / max(float(a.max() - a.min()), 1e-6))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_warm_start.json").write_text(json.dumps(results, indent=1))
    (args.out / "gpu_warm_start.md").write_text(markdown(results))
    return 0


def markdown(r: dict) -> str:
    fp, gpu = r["fingerprint"], r["gpu"]
    lines = [f"# Compiled torch-CUDA engines: warm start, host staging, latency ({gpu['name']})", "",
             f"- date {fp.get('date')}; command `{fp.get('command')}`; batch {r['batch']}, fp16",
             f"- {', '.join(f'{k} {v}' for k, v in fp.items() if k not in ('date', 'command', 'machine'))}", "",
             "| start | seconds to the end of the first batch |", "|---|---|"]
    for key in ("cold", "warm"):
        value = r[key].get("first_call_s")
        lines.append(f"| {key} (fresh process) | {value:.1f} |" if value is not None else f"| {key} | failed: {r[key].get('error', '')[-200:]!r} |")
    lines += ["", f"Compiled vs folded flows on one random batch: max difference {r['compiled_vs_folded_flows_rel']:.2e} "
              "of the output range.", "",
              "| engine | tiles/s via infer_many (min-max) | GPU alone | 1024^2 image, segment, p50 / p99 ms | objects | 5 tiles alone == in a batch |",
              "|---|---|---|---|---|---|"]
    for e in r["engines"]:
        lat = e["latency_1024"]
        lines.append(f"| folded{'+compiled' if e['compiled'] else ''} | {e['median']:.0f} ({e['min']:.0f}-{e['max']:.0f}) | "
                     f"{e['gpu_only']:.0f} | {lat['p50_ms']:.1f} / {lat['p99_ms']:.1f} | {e['objects']} | {e['alone_equals_in_batch']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
