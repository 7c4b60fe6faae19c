"""The segmentation net on the GPU: where its time goes, and what folding, compiling and the batch buy.

Issue 17. Everything in one process on one GPU, against the reference cellpose 3.1.1.2 CPnet in
the same run.

Protocol
--------
* Weights: the trained starters (``cp3rt_nuclei`` / ``cp3rt_denoise_nuclei``) recovered from their
  shipped ONNX (:mod:`cp3rt.export.from_onnx`) and embedded exactly into cyto3's shape
  (``bench_gpu.embed_weights``: extra channels exactly zero), so the arithmetic per tile is
  cyto3's and the outputs are a trained net's. FLOPs per tile are counted on the net.
* Variants of the torch-CUDA engine, fp16, channels-last, CUDA graphs, fixed batch:
  ``eager`` (the unfolded net with BN layers, the engine before this issue), ``folded``
  (:mod:`cp3rt.models.fold`), ``folded+compiled`` (TorchInductor), ``compiled`` (Inductor on the
  unfolded net). For each batch size: tiles/s through ``infer_many`` (host copies included, as
  the runtime uses it) and the GPU alone (CUDA-graph replays timed with events); the first call's
  seconds (Inductor compile, cuDNN autotuning, graph capture); peak torch memory.
* Kernel time by class (torch.profiler, the same forward without graph replay, 3 calls):
  convolutions, BatchNorm, fused/unfused pointwise (affine, ReLU, add), reductions, pooling and
  resizes, copies/layout transforms, other; plus the launch gaps (event-timed wall time of the
  un-graphed forward minus the summed kernel time).
* Accuracy per variant: flows and style on 32 real tiles (the shipped DSB2018 sample) against
  the reference net in true fp32 (TF32 off), as a fraction of the output range, and the masks of
  the carried images (``--images``) against the fp32 engine's masks, AP at IoU 0.5/0.75/0.9.
* Restore -> segment chained in one CUDA graph (``TorchCudaChain``) per variant at ``--chain-batch``.
* Reference: ``cellpose.resnet_torch.CPnet`` fp32 on the GPU, numpy in and out (as CellposeModel).

Run on a GPU machine from the repository root:
    PYTHONPATH=src python3 benchmarks/bench_gpu_net.py --out benchmarks/results
Without a CUDA GPU the script exits 2 with one line.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import itertools
import json
import math
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_gpu import (  # noqa: E402
    RefRunner,
    embed_weights,
    fingerprint,
    flops_per_tile,
    gpu_facts,
    log,
)

ASSETS = HERE.parent / "src" / "cp3rt" / "assets"
VARIANTS = {  # name -> (fold_bn, compile)
    "eager": (False, False),
    "folded": (True, False),
    "folded+compiled": (True, True),
    "compiled": (False, True),
}
KERNEL_CLASSES = (  # first match wins; names of cuDNN / CUTLASS / ATen / Triton kernels
    # Inductor names a fused kernel after every op it absorbed ("triton_poi_fused_add_convolution_
    # relu_3", "..._to_copy_..."), so Triton kernels are classed first, by their own kind.
    ("fused pointwise (Triton)", ("triton_poi",)),
    ("fused reduction (Triton)", ("triton_red", "triton_per")),
    ("copy/layout", ("memcpy", "memset", "copy", "nchwtonhwc", "nhwctonchw", "transpose", "cat_")),
    ("batchnorm", ("batch_norm", "batchnorm", "bn_fw", "bn_")),
    ("convolution", ("conv", "xmma", "cudnn", "implicit", "sm90_", "sm80_", "cutlass", "gemm", "wgrad", "dgrad", "fprop")),
    ("pooling/resize", ("max_pool", "pool", "upsample", "nearest", "interp")),
    ("reduction", ("reduce", "norm", "sum", "mean")),
    ("pointwise", ("elementwise", "vectorized", "add", "relu", "mul", "clamp", "unrolled")),
)


# ---- setup ------------------------------------------------------------------------------------

def starter_weights(work: Path) -> dict[str, Path]:
    """cyto3-shaped weight files of the trained starters, recovered from the shipped ONNX."""
    from cp3rt.export.from_onnx import recover_weight_file

    out = {}
    for role, name in (("segment", "cp3rt_nuclei"), ("restore", "cp3rt_denoise_nuclei")):
        small = recover_weight_file(ASSETS / "models" / f"{name}.onnx", work / name)
        out[role] = embed_weights(small, work / f"{name}_cyto3shape")
    return out


def real_tiles(n: int) -> np.ndarray:
    """(n, 2, 224, 224) tiles of the shipped DSB2018 sample, normalised, channel 2 zeros."""
    import tifffile
    from scipy.ndimage import zoom

    img = tifffile.imread(ASSETS / "samples" / "dsb2018_nuclei.tif").astype(np.float32)
    img = img if img.ndim == 2 else img[..., 0]
    img = zoom(img, 17.0 / 24.0, order=1)  # nuclei at the starter's training diameter
    lo, hi = np.percentile(img, [1, 99])
    img = (img - lo) / max(hi - lo, 1e-6)
    big = np.pad(img, ((0, max(0, 448 - img.shape[0])), (0, max(0, 448 - img.shape[1]))), mode="reflect")
    rng = np.random.default_rng(0)
    tiles = np.zeros((n, 2, 224, 224), np.float32)
    for k in range(n):
        y = rng.integers(0, big.shape[0] - 224 + 1)
        x = rng.integers(0, big.shape[1] - 224 + 1)
        tiles[k, 0] = np.rot90(big[y:y + 224, x:x + 224], k % 4)
    return tiles


# ---- measurements -----------------------------------------------------------------------------

def rate_through_infer_many(runner, x: np.ndarray, tiles: int, repeats: int) -> dict:  # noqa: ANN001
    n = max(2, math.ceil(tiles / x.shape[0]))
    for _out in runner.infer_many(itertools.repeat(x, 4)):  # both slots' graphs, autotuning
        pass
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _out in runner.infer_many(itertools.repeat(x, n)):
            pass
        rates.append(x.shape[0] * n / (time.perf_counter() - t0))
    return {"median": float(np.median(rates)), "min": float(min(rates)), "max": float(max(rates))}


def gpu_only_rate(torch, engine, batch: int, replays: int = 30) -> float:  # noqa: ANN001
    """Tiles/s of the captured graph alone: replays on its stream, timed with CUDA events."""
    slot = engine._slots[0]
    g = slot.graphs[(batch, engine.manifest.nchan, 224, 224)]
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    with torch.cuda.stream(slot.stream):
        for _ in range(3):
            g.graph.replay()
        start.record(slot.stream)
        for _ in range(replays):
            g.graph.replay()
        end.record(slot.stream)
    end.synchronize()
    return batch * replays / (start.elapsed_time(end) / 1e3)


def kernel_class(name: str) -> str:
    low = name.lower()
    for label, keys in KERNEL_CLASSES:
        if any(k in low for k in keys):
            return label
    return "other"


def kernel_breakdown(torch, engine, batch: int, calls: int = 3) -> dict:  # noqa: ANN001
    """ms per forward by kernel class, from the profiler; wall ms of the un-graphed forward."""
    from torch.profiler import ProfilerActivity, profile

    x = torch.randn(batch, engine.manifest.nchan, 224, 224, device=engine._device).contiguous(
        memory_format=torch.channels_last)
    with torch.inference_mode():
        for _ in range(2):
            engine._outputs_of(x)
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(calls):
            engine._outputs_of(x)
        end.record()
        end.synchronize()
        wall = start.elapsed_time(end) / calls
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(calls):
                engine._outputs_of(x)
            torch.cuda.synchronize()
    by_class: dict[str, float] = {}
    kernels = 0
    for evt in prof.events():
        dev_type = str(getattr(evt, "device_type", ""))
        if "CUDA" not in dev_type:
            continue
        us = float(getattr(evt, "device_time", None) or getattr(evt, "cuda_time", 0.0) or 0.0)
        if us <= 0:
            continue
        kernels += 1
        label = kernel_class(evt.name)
        by_class[label] = by_class.get(label, 0.0) + us / 1e3 / calls
    total = sum(by_class.values())
    return {"batch": batch, "wall_ms": wall, "kernel_ms": total, "launch_gap_ms": max(0.0, wall - total),
            "kernels_per_forward": kernels / calls, "by_class_ms": dict(sorted(by_class.items()))}


def rel_error(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.abs(got.astype(np.float64) - want).max() / max(float(want.max() - want.min()), 1e-6))


def reference_outputs(torch, weights: Path, tiles: np.ndarray) -> dict:  # noqa: ANN001
    """The reference CPnet in true fp32 on the GPU (TF32 off)."""
    from cellpose.resnet_torch import CPnet as RefCPnet

    net = RefCPnet([2, 32, 64, 128, 256], 3, 3).cuda().eval()
    net.load_state_dict(torch.load(weights, map_location="cuda", weights_only=True), strict=False)
    saved = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
        with torch.no_grad():
            y, style = net(torch.from_numpy(tiles).cuda())[:2]
        return {"flows": y.cpu().numpy().astype(np.float64), "style": style.cpu().numpy().astype(np.float64)}
    finally:
        torch.backends.cudnn.allow_tf32 = saved


def masks_of(engine, images: list[tuple[np.ndarray, float]]) -> list[np.ndarray]:  # noqa: ANN001
    from bench_gpu import Borrowed

    from cp3rt.runtime.config import RunConfig
    from cp3rt.runtime.pipeline import Pipeline

    out = []
    for img, diameter in images:
        run = RunConfig(channels=(0, 0), estimate_diameter=False, diameter=diameter, batch_size=engine.batch)
        pipe = Pipeline.from_engines(Borrowed(engine), None, run=run)
        out.append(pipe.run(img).masks)
    return out


def masks_ap(got: list[np.ndarray], want: list[np.ndarray]) -> dict:
    from cp3rt.runtime.quality.metrics import average_precision

    aps = [average_precision(w, g, (0.5, 0.75, 0.9))[0] for g, w in zip(got, want)]
    n_objects = int(sum(int(w.max()) for w in want))
    return {"ap50": float(np.mean([a[0] for a in aps])), "ap75": float(np.mean([a[1] for a in aps])),
            "ap90": float(np.mean([a[2] for a in aps])), "min_ap50": float(min(a[0] for a in aps)),
            "images": len(got), "objects": n_objects}


def carried_images(folder: Path | None, per_set: int) -> list[tuple[np.ndarray, float]]:
    """(image, diameter) from ``folder/<dataset>/images`` (see gpu_checks.sh carry)."""
    diameters = {"ctc_gowt1_nuclei": 60.0, "ctc_sim_nuclei": 47.0, "stardist_dsb2018_nuclei": 24.0}
    if folder is None:
        return []
    import tifffile

    out = []
    for name, diameter in diameters.items():
        for path in sorted((folder / name / "images").glob("*.tif"))[:per_set]:
            img = tifffile.imread(path).astype(np.float32)
            out.append((img if img.ndim == 2 else img[..., 0], diameter))
    return out


# ---- the run ----------------------------------------------------------------------------------

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--variants", default="eager,folded,folded+compiled,compiled")
    p.add_argument("--batches", default="8,64,256")
    p.add_argument("--compiled-batches", default="64",
                   help="batches of the compiled variants (each costs one Inductor compile)")
    p.add_argument("--profile-batches", default="64", help="batches whose kernels are profiled per variant")
    p.add_argument("--chain-batch", type=int, default=64)
    p.add_argument("--tiles", type=int, default=3072, help="tiles per timed repeat (at least)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--images", type=Path, default=None, help="carried data folder for the masks check")
    p.add_argument("--images-per-set", type=int, default=4)
    p.add_argument("--budget-s", type=float, default=330.0, help="stop starting new measurements after this")
    p.add_argument("--out", type=Path, default=HERE / "results")
    p.add_argument("--name", default="gpu_net")
    args = p.parse_args(argv)
    args.variants = [v for v in args.variants.split(",") if v]
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        p.error(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")
    args.batches = [int(b) for b in args.batches.split(",") if b]
    args.compiled_batches = [int(b) for b in args.compiled_batches.split(",") if b]
    args.profile_batches = [int(b) for b in args.profile_batches.split(",") if b]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("bench_gpu_net: no CUDA GPU visible to torch here; run it on a GPU machine.", file=sys.stderr)
        return 2
    t_start = time.perf_counter()
    out_json = args.out / f"{args.name}.json"
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict = {"fingerprint": fingerprint(args), "gpu": gpu_facts(torch), "variants": [],
                     "profiles": [], "chain": [], "reference": [], "accuracy": [], "masks": [], "errors": []}

    def save() -> None:
        out_json.write_text(json.dumps(results, indent=1))
        (args.out / f"{args.name}.md").write_text(markdown(results))

    def over_budget() -> bool:
        return time.perf_counter() - t_start > args.budget_s

    from cp3rt.engines.torch_cuda import TorchCudaChain, TorchCudaEngine

    work = Path(tempfile.mkdtemp(prefix="bench_gpu_net_"))
    weights = starter_weights(work)
    results["flops_per_tile"] = flops_per_tile(2, 3)
    peak = results["gpu"]["fp16_dense_peak_tflops"]
    tiles = real_tiles(32)
    want = reference_outputs(torch, weights["segment"], tiles)
    images = carried_images(args.images, args.images_per_set)
    fp32_masks = None
    if images:
        with TorchCudaEngine(weights["segment"], precision="fp32", fold_bn=False, batch=args.chain_batch) as e:
            torch.backends.cudnn.allow_tf32 = False
            fp32_masks = masks_of(e, images)
            torch.backends.cudnn.allow_tf32 = True
    log(f"setup done in {time.perf_counter() - t_start:.0f} s")

    # reference first: the comparison must come from the same run
    from cellpose.resnet_torch import CPnet as RefCPnet

    ref_nets = {}
    for role, nchan, nout in (("segment", 2, 3), ("restore", 1, 1)):
        net = RefCPnet([nchan, 32, 64, 128, 256], nout, 3).cuda().eval()
        net.load_state_dict(torch.load(weights[role], map_location="cuda", weights_only=True), strict=False)
        ref_nets[role] = net
    for batch in args.batches:
        x = np.random.default_rng(batch).normal(size=(batch, 2, 224, 224)).astype(np.float32)
        rate = rate_through_infer_many(RefRunner([ref_nets["segment"]], "cuda"), x, args.tiles // 2, args.repeats)
        results["reference"].append({"what": "segment", "batch": batch, **rate})
    xr = np.random.default_rng(0).normal(size=(args.chain_batch, 1, 224, 224)).astype(np.float32)
    results["reference"].append({"what": "chain", "batch": args.chain_batch,
                                 **rate_through_infer_many(RefRunner([ref_nets["restore"], ref_nets["segment"]], "cuda"),
                                                           xr, args.tiles // 2, args.repeats)})
    del ref_nets
    torch.cuda.empty_cache()
    save()
    log(f"reference done at {time.perf_counter() - t_start:.0f} s")

    for variant in args.variants:
        fold_bn, compile_ = VARIANTS[variant]
        for batch in args.compiled_batches if compile_ else args.batches:
            if over_budget():
                results["errors"].append(f"{variant} batch {batch}: skipped, over the time budget")
                continue
            try:
                torch.cuda.reset_peak_memory_stats()
                t0 = time.perf_counter()
                engine = TorchCudaEngine(weights["segment"], precision="fp16", fold_bn=fold_bn,
                                         compile=compile_, batch=batch)
                x = np.random.default_rng(batch).normal(size=(batch, 2, 224, 224)).astype(np.float32)
                engine.infer(x)
                first = time.perf_counter() - t0
                rate = rate_through_infer_many(engine, x, args.tiles, args.repeats)
                gpu_rate = gpu_only_rate(torch, engine, batch)
                row = {"variant": variant, "batch": batch, "first_call_s": first, **rate, "gpu_only": gpu_rate,
                       "gpu_only_tflops": gpu_rate * results["flops_per_tile"] / 1e12,
                       "pct_of_peak": (100 * gpu_rate * results["flops_per_tile"] / 1e12 / peak) if peak else None,
                       "peak_mem_gib": torch.cuda.max_memory_allocated() / 2**30}
                if batch in args.profile_batches:
                    results["profiles"].append({"variant": variant, **kernel_breakdown(torch, engine, batch)})
                if batch == args.chain_batch:
                    got = engine.infer(tiles)
                    results["accuracy"].append({"variant": variant, "flows_rel": rel_error(got["flows"], want["flows"]),
                                                "style_rel": rel_error(got["style"][:, :256], want["style"])})
                    if fp32_masks is not None:
                        results["masks"].append({"variant": variant, **masks_ap(masks_of(engine, images), fp32_masks)})
                results["variants"].append(row)
                log(f"{variant} batch {batch}: {rate['median']:.0f} tiles/s, GPU alone {gpu_rate:.0f}, first call {first:.1f} s")
                if batch == args.chain_batch and not over_budget():
                    restore = TorchCudaEngine(weights["restore"], precision="fp16", fold_bn=fold_bn,
                                              compile=compile_, batch=batch)
                    with TorchCudaChain(restore, engine) as chain:
                        t1 = time.perf_counter()
                        chain.infer(xr)
                        chain_first = time.perf_counter() - t1
                        crate = rate_through_infer_many(chain, xr, args.tiles // 2, args.repeats)
                        results["chain"].append({"variant": variant, "batch": batch, "first_call_s": chain_first,
                                                 **crate, "gpu_only": gpu_only_rate(torch, chain, batch)})
                    restore.close()
                    log(f"{variant} chain: {crate['median']:.0f} tiles/s")
                engine.close()
            except Exception as exc:  # noqa: BLE001 - reported; the other variants still run
                results["errors"].append(f"{variant} batch {batch}: {exc!r}\n{traceback.format_exc()[-1500:]}")
                log(f"{variant} batch {batch} failed: {exc!r}")
            with contextlib.suppress(Exception):
                del engine
            gc.collect()
            torch.cuda.empty_cache()
            save()
    results["seconds"] = time.perf_counter() - t_start
    save()
    log(f"done in {results['seconds']:.0f} s -> {out_json}")
    return 0


# ---- report -----------------------------------------------------------------------------------

def markdown(results: dict) -> str:
    fp, gpu = results["fingerprint"], results["gpu"]
    lines = [f"# The segmentation net on the GPU: {gpu['name']} (issue 17)", "",
             f"- date {fp.get('date')}; command `{fp.get('command')}`",
             f"- GPU {gpu['name']} (sm {gpu['compute_capability']}), driver {gpu.get('driver')}, CUDA {gpu.get('cuda_runtime')}; "
             f"dense fp16 peak {gpu.get('fp16_dense_peak_tflops')} TFLOP/s",
             f"- versions: {', '.join(f'{k} {v}' for k, v in fp.items() if k not in ('date', 'command', 'machine'))}",
             f"- FLOPs per 224x224 tile: {results.get('flops_per_tile', 0) / 1e9:.1f} G; weights: trained starters "
             "recovered from the shipped ONNX, embedded in cyto3's shape", ""]
    lines += ["## Segmentation net, fp16, tiles/s at 224x224", "",
              "| variant | batch | tiles/s via infer_many (min-max) | GPU alone | TFLOP/s | % of peak | first call s | peak GiB |",
              "|---|---|---|---|---|---|---|---|"]
    for r in results["reference"]:
        if r["what"] == "segment":
            lines.append(f"| reference cellpose 3.1.1.2 fp32 | {r['batch']} | {r['median']:.0f} ({r['min']:.0f}-{r['max']:.0f}) | | | | | |")
    for r in results["variants"]:
        pct = f"{r['pct_of_peak']:.1f}" if r.get("pct_of_peak") is not None else "-"
        lines.append(f"| cp3rt {r['variant']} | {r['batch']} | {r['median']:.0f} ({r['min']:.0f}-{r['max']:.0f}) | "
                     f"{r['gpu_only']:.0f} | {r['gpu_only_tflops']:.1f} | {pct} | {r['first_call_s']:.1f} | {r['peak_mem_gib']:.2f} |")
    lines += ["", "## Restore -> segment chained (one CUDA graph), tiles/s", "",
              "| variant | batch | tiles/s via infer_many (min-max) | GPU alone | first call s |", "|---|---|---|---|---|"]
    for r in results["reference"]:
        if r["what"] == "chain":
            lines.append(f"| reference cellpose 3.1.1.2 fp32 | {r['batch']} | {r['median']:.0f} ({r['min']:.0f}-{r['max']:.0f}) | | |")
    for r in results["chain"]:
        lines.append(f"| cp3rt {r['variant']} | {r['batch']} | {r['median']:.0f} ({r['min']:.0f}-{r['max']:.0f}) | "
                     f"{r['gpu_only']:.0f} | {r['first_call_s']:.1f} |")
    classes = sorted({c for p in results["profiles"] for c in p["by_class_ms"]})
    lines += ["", "## Kernel time per forward by class, ms (torch.profiler, forward without graph replay)", "",
              "| variant | batch | wall | kernels | launch gaps | kernels/forward | " + " | ".join(classes) + " |",
              "|---|---|---|---|---|---|" + "---|" * len(classes)]
    for p in results["profiles"]:
        cells = " | ".join(f"{p['by_class_ms'].get(c, 0.0):.2f}" for c in classes)
        lines.append(f"| {p['variant']} | {p['batch']} | {p['wall_ms']:.2f} | {p['kernel_ms']:.2f} | "
                     f"{p['launch_gap_ms']:.2f} | {p['kernels_per_forward']:.0f} | {cells} |")
    lines += ["", "## Accuracy (fp16 variants against the reference net in true fp32)", "",
              "| variant | flows max error / range | style max error / range |", "|---|---|---|"]
    for a in results["accuracy"]:
        lines.append(f"| {a['variant']} | {a['flows_rel']:.2e} | {a['style_rel']:.2e} |")
    if results["masks"]:
        lines += ["", "## Masks of real images against the fp32 engine's masks (TF32 off)", "",
                  "| variant | images | objects (fp32) | AP@0.5 | AP@0.75 | AP@0.9 | worst image AP@0.5 |", "|---|---|---|---|---|---|---|"]
        for m in results["masks"]:
            lines.append(f"| {m['variant']} | {m['images']} | {m['objects']} | {m['ap50']:.3f} | {m['ap75']:.3f} | "
                         f"{m['ap90']:.3f} | {m['min_ap50']:.3f} |")
    if results["errors"]:
        lines += ["", "## Errors and skips", ""] + [f"- {e.splitlines()[0]}" for e in results["errors"]]
    if "seconds" in results:
        lines += ["", f"Total {results['seconds']:.0f} s."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
