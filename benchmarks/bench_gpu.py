"""GPU throughput of cp3rt's GPU backends against the reference cellpose==3.1.1.2 on the same GPU.

Protocol
--------
* Weights: the files given with --seg-weights / --restore-weights, else random-init Cellpose v3
  files written here (cp3rt ``CPnet``, seed 0, BatchNorm statistics randomised so no layer is
  the identity; the output heads are scaled to trained-net magnitudes so the dynamics find
  objects). Both are placed under the zoo names ``cyto3`` / ``denoise_cyto3`` in a temporary
  ``CELLPOSE_LOCAL_MODELS_PATH`` so that cp3rt and the reference load the very same files with
  the same diameter rules. Speed does not depend on the weight values.
* Backends: the reference (``cellpose`` CPnet on CUDA, fp32, as ``CellposeModel`` runs it:
  numpy batch -> GPU -> numpy); cp3rt ``torch-cuda`` at fp32 / fp16 / bf16 (CUDA graphs,
  pinned memory, two streams); cp3rt ``trt`` at the precisions of --trt-precisions when TensorRT
  >= 10 imports (plans built here, build time recorded); skipped with the reason otherwise.
* Tiles/s at 224x224 for each batch size: one random batch repeated; ``--warmup`` pipelined
  passes not timed, then ``--repeats`` timed passes of at least ``--tiles`` tiles each, through
  ``infer_many`` (host <-> GPU copies included). Reported: median, min and max over repeats.
  Segmentation net alone, and restore -> segment chained per tile (torch-cuda: one CUDA graph;
  trt: two plans, host round trip between them; reference: both nets on the GPU).
* End to end: ``--n-images`` 1024x1024 images (from --images, else synthetic discs on noise) run
  through cp3rt's Pipeline (normalise, tile, net, stitch, numba dynamics; batch --e2e-batch)
  and through ``CellposeModel.eval`` (its default batch 8), images/s median over repeats; the
  same for restore -> segment (``CellposeDenoiseModel``). Latency: one 1024x1024 image run
  ``--latency-runs`` times after warm-up, p50 / p99.
* GPU memory: peak torch allocation for torch backends; for TensorRT the drop in free device
  memory while the engine is open. FLOPs per tile are counted on the net itself
  (torch.utils.flop_counter, 224x224, batch 1) and turned into achieved TFLOP/s against the
  GPU's dense fp16 tensor peak (table below; None for unknown GPUs).
* Everything runs in one process, one backend after the other, on the same GPU.

Run:  LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4 \\
      .venv/bin/python benchmarks/bench_gpu.py            (results -> benchmarks/results/gpu_<gpu>.*)
      add --quick for a short run; without a CUDA GPU the script exits 2 with one line.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import itertools
import json
import math
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
# Dense fp16 tensor-core peak, TFLOP/s (vendor data sheets, no sparsity), matched in this order.
FP16_PEAK = (("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.4), ("H200", 989.4),
             ("GH200", 989.4), ("A100", 312.0), ("L40S", 362.1), ("L40", 181.0), ("L4", 121.0),
             ("A10", 125.0), ("RTX 4090", 165.2), ("V100", 125.0), ("T4", 65.0))


def log(msg: str) -> None:
    sys.stderr.write(f"[bench_gpu {time.strftime('%H:%M:%S')}] {msg}\n")
    sys.stderr.flush()


# ---- weights ----------------------------------------------------------------------------------

def random_weights(path: Path, nchan: int, nout: int, seed: int) -> Path:
    import torch

    from cp3rt.models.cpnet import CPnet

    torch.manual_seed(seed)
    net = CPnet((nchan, 32, 64, 128, 256), nout, diam_mean=30.0)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(0.2 * torch.rand(m.num_features, generator=gen) - 0.1)
                m.running_var.copy_(0.75 + 0.5 * torch.rand(m.num_features, generator=gen))
        x = torch.rand(1, nchan, 224, 224, generator=gen)
        y = net.eval()(x)[0][0]
        head = net.output[2]
        for c in range(nout):  # flows ~5, cellprob spread ~1.5 around 0.3; restore ~O(1)
            std, mean = ((5.0, 0.0), (5.0, 0.0), (1.5, 0.3))[c] if nout == 3 else (0.3, 0.5)
            scale = std / float(y[c].std())
            head.weight[c] *= scale
            head.bias[c] = (head.bias[c] - float(y[c].mean())) * scale + mean
    return net.save(path)


CYTO3_NBASE = (32, 64, 128, 256)


def embed_weights(given: Path, path: Path) -> Path:
    """A trained net of a smaller width (e.g. the starter, nbase 16..128) written in the cyto3 shape.

    Every tensor is copied into the leading slice of the full-size tensor; the extra channels get
    zero convolution/Linear weights and biases and identity BatchNorm (mean 0, var 1, weight 1,
    bias 0), so they stay exactly zero and never reach the real channels (the style's L2 norm over
    256 channels is unchanged). The result computes the trained net's function with cyto3's
    arithmetic: realistic masks for the end-to-end runs, the real net's cost for the timings.
    """
    import torch

    from cp3rt.models.cpnet import CPnet
    from cp3rt.models.weights import read_weight_file

    small = torch.load(given, map_location="cpu", weights_only=True)
    wf = read_weight_file(given)
    if tuple(wf.nbase[1:]) == CYTO3_NBASE:
        shutil.copyfile(given, path)
        return path
    full = CPnet((wf.nchan, *CYTO3_NBASE), wf.nout, diam_mean=float(wf.diam_mean))
    state = full.state_dict()
    for key, value in state.items():
        if key not in small:
            raise ValueError(f"{given}: no tensor {key!r}; not a Cellpose v3 weight file of CPnet's layout")
        src = small[key]
        base = key.rsplit(".", 1)[0]
        identity_bn = key.endswith("running_var") or (key.endswith(".weight") and f"{base}.running_var" in state)
        out = torch.ones_like(value) if identity_bn else torch.zeros_like(value)
        out[tuple(slice(0, n) for n in src.shape)] = src
        state[key] = out
    full.load_state_dict(state)
    return full.save(path)


def setup_models(args: argparse.Namespace, work: Path) -> Path:
    models = work / "models"
    models.mkdir(parents=True)
    if args.starters:  # the trained starters, recovered from the ONNX shipped in the package
        from cp3rt.export.from_onnx import recover_weight_file

        assets = HERE.parent / "src" / "cp3rt" / "assets" / "models"
        args.seg_weights = recover_weight_file(assets / "cp3rt_nuclei.onnx", work / "cp3rt_nuclei")
        args.restore_weights = recover_weight_file(assets / "cp3rt_denoise_nuclei.onnx", work / "cp3rt_denoise_nuclei")
    for name, given, nchan, nout, seed in (("cyto3", args.seg_weights, 2, 3, 0),
                                          ("denoise_cyto3", args.restore_weights, 1, 1, 1)):
        if given:
            embed_weights(given, models / name)
        else:
            random_weights(models / name, nchan, nout, seed)
    return models


# ---- runners ----------------------------------------------------------------------------------

class RefRunner:
    """The reference CPnet(s) on the GPU as CellposeModel runs them (numpy in, numpy out)."""

    def __init__(self, nets: list, device: str) -> None:
        import torch

        self.torch, self.nets, self.device = torch, nets, device

    def _one(self, x: np.ndarray) -> np.ndarray:
        torch = self.torch
        with torch.no_grad():
            t = torch.from_numpy(x).to(self.device)
            for i, net in enumerate(self.nets):
                if i:  # restored -> segmentation channel 0, zeros in channel 1
                    t = torch.cat([t, torch.zeros_like(t)], 1)
                t = net(t)[0]
            return t.cpu().numpy()

    def infer_many(self, batches):  # noqa: ANN001, ANN201
        return (self._one(b) for b in batches)


class TrtChain:
    """Two TensorRT plans with a host round trip: restore -> (restored, zeros) -> segment."""

    def __init__(self, restore, segment) -> None:  # noqa: ANN001
        self.restore, self.segment = restore, segment

    def infer_many(self, batches):  # noqa: ANN001, ANN201
        def to_seg(out):  # noqa: ANN001, ANN202
            r = out["restored"]
            return np.concatenate([r, np.zeros_like(r)], axis=1)
        return self.segment.infer_many(to_seg(o) for o in self.restore.infer_many(batches))


class SerialRunner:
    """Engines without infer_many (onnxruntime in --smoke-cpu)."""

    def __init__(self, engine) -> None:  # noqa: ANN001
        self.engine = engine

    def infer_many(self, batches):  # noqa: ANN001, ANN201
        return (self.engine.infer(b) for b in batches)


def tiles_per_s(runner, nchan: int, batch: int, args: argparse.Namespace) -> dict:  # noqa: ANN001
    x = np.random.default_rng(batch).normal(size=(batch, nchan, 224, 224)).astype(np.float32)
    n = max(2, math.ceil(args.tiles / batch))
    for _ in range(args.warmup):
        for _out in runner.infer_many(itertools.repeat(x, 2)):
            pass
    rates = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        for _out in runner.infer_many(itertools.repeat(x, n)):
            pass
        rates.append(batch * n / (time.perf_counter() - t0))
    return {"batch": batch, "median": float(np.median(rates)), "min": float(min(rates)),
            "max": float(max(rates)), "tiles_per_repeat": batch * n}


# ---- end to end -------------------------------------------------------------------------------

class Borrowed:
    """An engine lent to a Pipeline (which would otherwise close it)."""

    def __init__(self, engine) -> None:  # noqa: ANN001
        self.engine, self.backend, self.manifest = engine, engine.backend, engine.manifest
        self.inputs, self.outputs = engine.inputs, engine.outputs
        self.infer_many = engine.infer_many  # keep the runtime's GPU pipelining (see runtime.nets)
        self.device_resident = engine.device_resident
        if engine.device_resident:  # and the GPU-resident path (stages.image_device)
            self.infer_device, self.device = engine.infer_device, engine.device

    def infer(self, batch):  # noqa: ANN001, ANN201
        return self.engine.infer(batch)

    def close(self) -> None:
        pass


def synthetic_image(seed: int, size: int = 1024) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = rng.normal(100, 10, (size, size))
    yy, xx = np.ogrid[:size, :size]
    for cy, cx, r in zip(*rng.uniform(20, size - 20, (2, 600)), rng.uniform(8, 16, 600)):
        y0, y1, x0, x1 = int(max(cy - 3 * r, 0)), int(cy + 3 * r), int(max(cx - 3 * r, 0)), int(cx + 3 * r)
        d2 = ((yy[y0:y1] - cy) ** 2 + (xx[:, x0:x1] - cx) ** 2) / r**2
        img[y0:y1, x0:x1] += 400 * np.exp(-(d2**3))
    return img.astype(np.float32)


def mosaic(images: list[np.ndarray], first: int, scale: float, size: int) -> np.ndarray:
    """A size x size image tiled from ``images`` (starting at ``first``), each resized by ``scale``:
    real objects at the diameter the net was trained for, at the benchmark's image size."""
    return tile_parts(zoomed(images, scale), first, size)


def zoomed(images: list[np.ndarray], scale: float) -> list[np.ndarray]:
    """``images`` resized by ``scale`` (bilinear), float32: the parts of a mosaic, made once."""
    from scipy.ndimage import zoom

    return [zoom(np.asarray(im, np.float32), scale, order=1) for im in images]


def tile_parts(parts: list[np.ndarray], first: int, size: int) -> np.ndarray:
    """A size x size image tiled row by row from ``parts``, starting at ``parts[first]``."""
    out = np.zeros((size, size), np.float32)
    k, y = first, 0
    while y < size:
        x, row_h = 0, 0
        while x < size:
            part = parts[k % len(parts)]
            h, w = min(part.shape[0], size - y), min(part.shape[1], size - x)
            out[y : y + h, x : x + w] = part[:h, :w]
            x, row_h, k = x + w, max(row_h, h), k + 1
        y += row_h
    return out


def load_images(args: argparse.Namespace) -> list[np.ndarray]:
    if args.images:
        from cp3rt.runtime.io import find_images, read_image

        found = [read_image(p) for p in find_images([args.images])]
        if args.object_scale:
            return [mosaic(found, k, args.object_scale, args.image_size) for k in range(args.n_images)]
        return found[: args.n_images]
    return [synthetic_image(k, args.image_size) for k in range(args.n_images)]


def write_folder(images: list, n: int, folder: Path) -> list[Path]:
    """``n`` TIFF files cycling through ``images``: the input of the folder (streaming) runs."""
    import tifffile

    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"img{k:03d}.tif" for k in range(n)]
    for k, path in enumerate(paths):
        tifffile.imwrite(path, images[k % len(images)])
    return paths


def images_per_s(run_one, images: list, repeats: int) -> dict:  # noqa: ANN001
    for _ in range(2):  # warm-up (graphs of both engine slots, autotuning, numba compilation)
        run_one(images[0])
    if hasattr(run_one, "stages"):
        run_one.stages.clear()  # stage seconds of timed images only
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for img in images:
            run_one(img)
        rates.append(len(images) / (time.perf_counter() - t0))
    return {"median": float(np.median(rates)), "min": float(min(rates)), "max": float(max(rates)),
            "images": len(images)}


def latency(run_one, image: np.ndarray, runs: int) -> dict:  # noqa: ANN001
    for _ in range(3):
        run_one(image)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        run_one(image)
        times.append(time.perf_counter() - t0)
    return {"p50_ms": 1e3 * float(np.percentile(times, 50)), "p99_ms": 1e3 * float(np.percentile(times, 99)),
            "runs": runs}


class Cp3rtRunner:
    """cp3rt's Pipeline on borrowed engines; keeps each image's masks and stage seconds."""

    def __init__(self, seg, restore, args: argparse.Namespace) -> None:  # noqa: ANN001
        from cp3rt.runtime.config import RunConfig
        from cp3rt.runtime.pipeline import Pipeline

        self.run = RunConfig(channels=(0, 0), estimate_diameter=False, batch_size=args.e2e_batch)
        self.pipe = Pipeline.from_engines(Borrowed(seg), Borrowed(restore) if restore else None, run=self.run)
        self.masks: dict[int, np.ndarray] = {}
        self.stages: list[dict] = []

    def __call__(self, img: np.ndarray) -> np.ndarray:
        result = self.pipe.run(img)
        self.masks[id(img)] = result.masks
        self.stages.append(dict(result.timings))
        return result.masks

    def folder(self, paths: list[Path], out: Path) -> float:
        """Seconds for ``cp3rt run``'s folder path: the streaming engine, TIFF read and write included."""
        from cp3rt.runtime.batch.files import OutputOptions
        from cp3rt.runtime.batch.stream import stream_batch

        t0 = time.perf_counter()
        summary = stream_batch(self.pipe, paths, self.run, OutputOptions(out_dir=out, overwrite=True))
        seconds = time.perf_counter() - t0
        if not summary.ok:
            raise RuntimeError(f"folder run failed: {[o.error for o in summary.outcomes if o.error][:3]}")
        return seconds


def mean_stages(stages: list[dict]) -> dict:
    keys = sorted({k for st in stages for k in st})
    return {k: 1e3 * float(np.mean([st.get(k, 0.0) for st in stages])) for k in keys}


def masks_agreement(got: dict, want: dict, images: list) -> dict:
    """Mean AP (IoU 0.5 / 0.75 / 0.9) of one runner's masks against another's, same images."""
    from cp3rt.runtime.quality.metrics import average_precision

    aps = []
    for img in images:
        a, b = want.get(id(img)), got.get(id(img))
        if a is not None and b is not None:
            ap = average_precision(a, b, [0.5, 0.75, 0.9])[0] if a.max() or b.max() else np.ones(3)
            aps.append(np.asarray(ap, float))
    if not aps:
        return {}
    return {"ap": [float(v) for v in np.mean(aps, axis=0)], "images": len(aps),
            "objects_reference": int(sum(int(want[id(i)].max()) for i in images if id(i) in want)),
            "objects_cp3rt": int(sum(int(got[id(i)].max()) for i in images if id(i) in got))}


class ReferenceRunner:
    """``CellposeModel.eval`` (or ``CellposeDenoiseModel.eval``) one image at a time; keeps masks."""

    def __init__(self, gpu: bool, restore: bool) -> None:
        from cellpose import denoise, models

        self.model = (denoise.CellposeDenoiseModel(gpu=gpu, model_type="cyto3", restore_type="denoise_cyto3")
                      if restore else models.CellposeModel(gpu=gpu, model_type="cyto3"))
        self.masks: dict[int, np.ndarray] = {}

    def __call__(self, img: np.ndarray) -> np.ndarray:
        masks = self.model.eval(img, channels=[0, 0], diameter=None)[0]
        self.masks[id(img)] = masks
        return masks


# ---- facts ------------------------------------------------------------------------------------

def flops_per_tile(nchan: int, nout: int) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from cp3rt.models.cpnet import CPnet

    net = CPnet((nchan, 32, 64, 128, 256), nout).eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        net(torch.zeros(1, nchan, 224, 224))
    return float(counter.get_total_flops())


def gpu_facts(torch) -> dict:  # noqa: ANN001
    name = torch.cuda.get_device_name(0)
    driver = None
    with contextlib.suppress(Exception):
        driver = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                capture_output=True, text=True, timeout=20).stdout.strip().splitlines()[0]
    peak = next((p for key, p in FP16_PEAK if key in name), None)
    props = torch.cuda.get_device_properties(0)
    return {"name": name, "driver": driver, "cuda_runtime": torch.version.cuda,
            "compute_capability": f"{props.major}.{props.minor}", "memory_gib": props.total_memory / 2**30,
            "fp16_dense_peak_tflops": peak}


def fingerprint(args: argparse.Namespace) -> dict:
    from cp3rt.engines.probe import versions

    facts = versions()
    preload = os.environ.get("LD_PRELOAD", "")
    facts.update(cores=os.cpu_count(), tcmalloc_preloaded="tcmalloc" in preload,
                 date=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                 command=" ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]),
                 machine=platform.node())
    with contextlib.suppress(Exception):
        import tensorrt

        facts["tensorrt"] = tensorrt.__version__
    return facts


# ---- backends ---------------------------------------------------------------------------------

def open_backends(args: argparse.Namespace, device: str, results: dict):  # noqa: ANN201
    """Yield (label, precision, seg runner, chain runner, seg engine, restore engine, close)."""
    import torch

    if not args.no_reference:
        from cellpose import denoise, models

        seg = models.CellposeModel(gpu=device != "cpu", model_type="cyto3").net
        rest = denoise.DenoiseModel(gpu=device != "cpu", model_type="denoise_cyto3").net
        yield ("reference cellpose 3.1.1.2", "fp32", RefRunner([seg], device), RefRunner([rest, seg], device),
               None, None, lambda: None)
    if args.smoke_cpu:
        from cp3rt.artefacts import resolve_model
        from cp3rt.engines.ort import OrtEngine

        seg_e = OrtEngine(resolve_model("cyto3", precision="fp32").path)
        rest_e = OrtEngine(resolve_model("denoise_cyto3", precision="fp32").path)
        yield ("cp3rt ort-cpu", "fp32", SerialRunner(seg_e), None, seg_e, rest_e,
               lambda: (seg_e.close(), rest_e.close()))
    else:
        from cp3rt.engines.torch_cuda import TorchCudaChain, TorchCudaEngine

        for precision in args.torch_precisions:
            t0 = time.perf_counter()
            try:
                seg_e = TorchCudaEngine("cyto3", precision=precision)
                rest_e = TorchCudaEngine("denoise_cyto3", precision=precision)
                chain = TorchCudaChain(rest_e, seg_e)
            except Exception as exc:  # noqa: BLE001 - reported, the other precisions still run
                results["skipped"].append({"backend": f"cp3rt torch-cuda {precision}", "reason": f"failed to open: {exc!r}"})
                log(f"torch-cuda {precision} failed to open: {exc!r}")
                continue
            results["build"].append({"backend": "cp3rt torch-cuda", "precision": precision,
                                     "seconds": time.perf_counter() - t0, "what": "load weights (graphs are captured per shape on first use)"})
            yield ("cp3rt torch-cuda", precision, seg_e, chain, seg_e, rest_e,
                   lambda s=seg_e, r=rest_e, c=chain: (c.close(), s.close(), r.close()))
    yield from trt_backends(args, results)
    del torch


def trt_backends(args: argparse.Namespace, results: dict):  # noqa: ANN201
    if not args.trt_precisions:
        return
    try:
        from cp3rt.engines.tensorrt._trt import current_environment

        current_environment()
    except Exception as exc:  # noqa: BLE001 - any reason TensorRT is not usable is reported
        results["skipped"].append({"backend": "cp3rt trt", "reason": str(exc)})
        log(f"TensorRT skipped: {exc}")
        return
    from cp3rt.build import build_for_model
    from cp3rt.engines.tensorrt import BuildConfig, TrtEngine
    from cp3rt.engines.tensorrt.builder import default_shapes

    top = max(args.batches)
    shapes = default_shapes((1, min(64, top), top))
    for precision in args.trt_precisions:
        engines = {}
        for name in ("cyto3", "denoise_cyto3"):
            built = build_for_model(name, BuildConfig(precision=precision, shapes=shapes), progress=log)
            results["build"].append({"backend": "cp3rt trt", "precision": precision, "model": name,
                                     "seconds": built.seconds, "plan_mb": built.plan_bytes / 1e6,
                                     "what": "TensorRT plan build" if built.built else "plan found in cache"})
            engines[name] = TrtEngine(built.plan_path)
        seg_e, rest_e = engines["cyto3"], engines["denoise_cyto3"]
        yield ("cp3rt trt", precision, seg_e, TrtChain(rest_e, seg_e), seg_e, rest_e,
               lambda s=seg_e, r=rest_e: (s.close(), r.close()))


# ---- main -------------------------------------------------------------------------------------

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seg-weights", type=Path, help="Cellpose v3 segmentation weight file (default: random)")
    p.add_argument("--restore-weights", type=Path, help="Cellpose v3 restoration weight file (default: random)")
    p.add_argument("--starters", action="store_true",
                   help="use the trained starters (recovered from the shipped ONNX) as both weight files")
    p.add_argument("--images", type=Path, help="folder of images for end-to-end runs (default: synthetic 1024x1024)")
    p.add_argument("--object-scale", type=float, default=None,
                   help="with --images: resize them by this factor and tile them into --image-size mosaics")
    p.add_argument("--n-images", type=int, default=8)
    p.add_argument("--image-size", type=int, default=1024)
    p.add_argument("--batches", default="1,2,4,8,16,32,64,128,256")
    p.add_argument("--tiles", type=int, default=2048, help="tiles per timed repeat (at least)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--folder-images", type=int, default=32, help="files in the folder (streaming) run")
    p.add_argument("--e2e-batch", type=int, default=64)
    p.add_argument("--e2e-repeats", type=int, default=2)
    p.add_argument("--latency-runs", type=int, default=30)
    p.add_argument("--torch-precisions", default="fp16,bf16,fp32")
    p.add_argument("--trt-precisions", default="fp16", help="comma list; '' skips TensorRT")
    p.add_argument("--no-reference", action="store_true")
    p.add_argument("--quick", action="store_true", help="fewer batch sizes, repeats and images")
    p.add_argument("--out", type=Path, default=HERE / "results")
    p.add_argument("--smoke-cpu", action="store_true", help="development only: CPU stand-ins, tiny sizes")
    p.add_argument("--fake-trt", action="store_true", help="development only, with --smoke-cpu: test fakes as TensorRT")
    args = p.parse_args(argv)
    if args.quick:
        args.batches, args.tiles, args.repeats = "1,8,64,256", 512, 3
        args.n_images, args.latency_runs, args.e2e_repeats, args.folder_images = 4, 10, 1, 16
    if args.smoke_cpu:
        args.batches, args.tiles, args.repeats, args.warmup = "1,2", 2, 1, 1
        args.n_images, args.image_size, args.latency_runs, args.e2e_repeats = 1, 200, 2, 1
        args.e2e_batch, args.torch_precisions, args.folder_images = 8, "", 2
        args.trt_precisions = args.trt_precisions if args.fake_trt else ""
    args.batches = [int(b) for b in str(args.batches).split(",") if b]
    args.torch_precisions = [p for p in str(args.torch_precisions).split(",") if p]
    args.trt_precisions = [p for p in str(args.trt_precisions).split(",") if p]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        import torch
    except ImportError as exc:
        sys.stderr.write(f"bench_gpu: torch cannot be imported ({exc}); install cp3rt[export] on a GPU machine.\n")
        return 2
    if not args.smoke_cpu and not torch.cuda.is_available():
        sys.stderr.write(f"bench_gpu: no CUDA GPU is visible (torch {torch.__version__} sees none); "
                         "run it on a machine with an NVIDIA GPU.\n")
        return 2
    work = Path(tempfile.mkdtemp(prefix="cp3rt_bench_gpu_"))
    os.environ["CELLPOSE_LOCAL_MODELS_PATH"] = str(work / "models")  # before cellpose is imported
    os.environ.setdefault("CP3RT_CACHE_DIR", str(work / "cache"))
    if args.fake_trt:
        sys.path.insert(0, str(HERE.parent / "tests" / "fakes"))
        import fake_tensorrt

        fake_tensorrt.install(None, fake_tensorrt.FakeTrtState())
    setup_models(args, work)
    device = "cpu" if args.smoke_cpu else "cuda"
    gpu = gpu_facts(torch) if device == "cuda" else {"name": "cpu smoke test", "fp16_dense_peak_tflops": None}
    flops = {"segment": flops_per_tile(2, 3), "restore": flops_per_tile(1, 1)}
    results: dict = {"fingerprint": fingerprint(args), "gpu": gpu, "flops_per_tile": flops,
                     "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                     "tiles": [], "chain": [], "e2e": [], "e2e_restore": [], "latency": [], "build": [],
                     "memory": [], "skipped": [], "folder": [], "stages_ms": [], "masks_vs_reference": []}
    images = load_images(args)
    folder_paths = write_folder(images, args.folder_images, work / "folder_in")
    reference_masks: dict = {}
    out = args.out if not args.smoke_cpu or args.out != HERE / "results" else work / "results"
    log(f"{gpu['name']}: {flops['segment'] / 1e9:.1f} GFLOP per 224x224 segmentation tile")
    for label, precision, seg_runner, chain_runner, seg_e, rest_e, close in open_backends(args, device, results):
        tag = {"backend": label, "precision": precision}
        free0 = torch.cuda.mem_get_info()[0] if device == "cuda" else 0
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        try:
            for b in args.batches:
                row = tiles_per_s(seg_runner, 2, b, args)
                row["tflops"] = row["median"] * flops["segment"] / 1e12
                results["tiles"].append({**tag, **row})
                log(f"{label} {precision} seg batch {b}: {_n(row['median'])} tiles/s")
                if chain_runner is not None:
                    row = tiles_per_s(chain_runner, 1, b, args)
                    row["tflops"] = row["median"] * (flops["segment"] + flops["restore"]) / 1e12
                    results["chain"].append({**tag, **row})
            if seg_e is None:
                run_seg, run_chain = ReferenceRunner(device == "cuda", False), ReferenceRunner(device == "cuda", True)
            else:
                run_seg, run_chain = Cp3rtRunner(seg_e, None, args), Cp3rtRunner(seg_e, rest_e, args)
            results["e2e"].append({**tag, **images_per_s(run_seg, images, args.e2e_repeats)})
            results["e2e_restore"].append({**tag, **images_per_s(run_chain, images, args.e2e_repeats)})
            if seg_e is None:
                reference_masks = {"segment": run_seg.masks, "restore": run_chain.masks}
            else:
                results["stages_ms"].append({**tag, "segment": mean_stages(run_seg.stages),
                                             "restore": mean_stages(run_chain.stages)})
                for key, runner in (("segment", run_seg), ("restore", run_chain)):
                    if reference_masks.get(key):
                        results["masks_vs_reference"].append(
                            {**tag, "pipeline": key, **masks_agreement(runner.masks, reference_masks[key], images)})
                for key, runner in (("segment", run_seg), ("restore", run_chain)):
                    folder = [runner.folder(folder_paths, work / "folder_out") for _ in range(args.e2e_repeats)]
                    results["folder"].append({**tag, "pipeline": key, "median": len(folder_paths) / float(np.median(folder)),
                                              "min": len(folder_paths) / max(folder),
                                              "max": len(folder_paths) / min(folder), "images": len(folder_paths)})
            results["latency"].append({**tag, **latency(run_seg, images[0], args.latency_runs)})
            log(f"{label} {precision}: {results['e2e'][-1]['median']:.2f} images/s end to end")
            if device == "cuda":
                results["memory"].append({**tag, "torch_peak_mib": torch.cuda.max_memory_allocated() / 2**20,
                                          "device_used_mib": (free0 - torch.cuda.mem_get_info()[0]) / 2**20})
        except Exception as exc:  # noqa: BLE001 - one backend's failure must not lose the others' numbers
            results["skipped"].append({"backend": f"{label} {precision}", "reason": f"failed: {exc!r}"})
            log(f"{label} {precision} FAILED: {exc!r}")
        finally:
            close()
            if device == "cuda":
                torch.cuda.empty_cache()
        paths = write_results(results, out)  # after every backend: a run cut short keeps what it measured
    shutil.rmtree(work / "models", ignore_errors=True)
    print(" ".join(str(p) for p in paths))
    return 0


# ---- report -----------------------------------------------------------------------------------

def _best(rows: list, backend: str, precision: str) -> dict | None:
    mine = [r for r in rows if r["backend"] == backend and r["precision"] == precision]
    return max(mine, key=lambda r: r["median"]) if mine else None


def _n(value: float) -> str:
    return f"{value:.0f}" if value >= 100 else f"{value:.3g}"


def _table(rows: list, batches: list[int], unit: str) -> list[str]:
    keys = sorted({(r["backend"], r["precision"]) for r in rows}, key=lambda k: (k[0], k[1]))
    lines = ["| backend | precision | " + " | ".join(f"batch {b}" for b in batches) + " | best TFLOP/s |",
             "|---|---|" + "---|" * (len(batches) + 1)]
    for backend, precision in keys:
        cells = []
        for b in batches:
            row = next((r for r in rows if (r["backend"], r["precision"], r["batch"]) == (backend, precision, b)), None)
            cells.append(f"{_n(row['median'])} ({_n(row['min'])}-{_n(row['max'])})" if row else "-")
        best = _best(rows, backend, precision)
        lines.append(f"| {backend} | {precision} | " + " | ".join(cells) + f" | {best['tflops']:.1f} |")
    return lines + ["", f"Median {unit} (min-max over repeats)."]


STAGES = ("read", "normalize", "restore", "segment", "dynamics")


def markdown(results: dict) -> str:
    fp, gpu = results["fingerprint"], results["gpu"]
    batches = results["settings"]["batches"]
    ref = "reference cellpose 3.1.1.2"
    lines = [f"# GPU benchmark: {gpu['name']}", "",
             f"- date {fp['date']}; command `{fp['command']}`",
             f"- GPU {gpu['name']} (sm {gpu.get('compute_capability')}, {gpu.get('memory_gib', 0):.0f} GiB), "
             f"driver {gpu.get('driver')}, CUDA runtime {gpu.get('cuda_runtime')}, TensorRT {fp.get('tensorrt') or 'not installed'}",
             f"- CPU {fp['cpu']} ({fp['cores']} cores); python {fp['python']}, numpy {fp['numpy']}, numba {fp['numba']}, "
             f"onnxruntime {fp['onnxruntime']}, torch {fp['torch']}; tcmalloc preloaded: {fp['tcmalloc_preloaded']}",
             f"- FLOPs per 224x224 tile (counted on the net): segmentation {results['flops_per_tile']['segment'] / 1e9:.1f} G, "
             f"restoration {results['flops_per_tile']['restore'] / 1e9:.1f} G; dense fp16 peak of this GPU: "
             f"{gpu.get('fp16_dense_peak_tflops') or 'unknown'} TFLOP/s", "",
             "## Segmentation net, tiles/s at 224x224", ""]
    lines += _table(results["tiles"], batches, "tiles/s")
    if results["chain"]:
        lines += ["", "## Restore -> segment chained, tiles/s at 224x224", ""]
        lines += _table(results["chain"], batches, "tiles/s through both nets")
    for key, title in (("e2e", "segmentation"), ("e2e_restore", "restore -> segment")):
        rows = results[key]
        base = next((r["median"] for r in rows if r["backend"] == ref), None)
        lines += ["", f"## End to end, {title}, images/s ({results['settings']['image_size']} px images)", "",
                  "| backend | precision | images/s (min-max) | vs reference |", "|---|---|---|---|"]
        for r in rows:
            speed = f"{r['median'] / base:.1f}x" if base else "-"
            lines.append(f"| {r['backend']} | {r['precision']} | {r['median']:.2f} ({r['min']:.2f}-{r['max']:.2f}) | {speed} |")
    bases = {key: next((r["median"] for r in results[rows] if r["backend"] == ref), None)
             for key, rows in (("segment", "e2e"), ("restore", "e2e_restore"))}
    if results["folder"]:
        lines += ["", "## A folder through `cp3rt run`'s streaming engine (TIFF read and write included), images/s",
                  "", "| backend | precision | pipeline | files | images/s (min-max) | vs reference (one image at "
                  "a time, no I/O) |", "|---|---|---|---|---|---|"]
        for r in results["folder"]:
            key = r.get("pipeline", "segment")
            speed = f"{r['median'] / bases[key]:.1f}x" if bases[key] else "-"
            lines.append(f"| {r['backend']} | {r['precision']} | {key} | {r['images']} | {r['median']:.2f} "
                         f"({r['min']:.2f}-{r['max']:.2f}) | {speed} |")
    if results["stages_ms"]:
        lines += ["", "## Where one image's time goes (cp3rt Pipeline, ms per image, mean)", "",
                  "| backend | precision | pipeline | " + " | ".join(STAGES) + " |", "|---|---|---|" + "---|" * len(STAGES)]
        for r in results["stages_ms"]:
            for key in ("segment", "restore"):
                lines.append(f"| {r['backend']} | {r['precision']} | {key} | "
                             + " | ".join(f"{r[key].get(st, 0.0):.1f}" for st in STAGES) + " |")
    if results["masks_vs_reference"]:
        lines += ["", "## Masks against the reference's masks (same weights, same images)", "",
                  "| backend | precision | pipeline | images | objects reference / cp3rt | mean AP@0.5 / 0.75 / 0.9 |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {r['backend']} | {r['precision']} | {r['pipeline']} | {r.get('images', 0)} | "
                  f"{r.get('objects_reference', 0)} / {r.get('objects_cp3rt', 0)} | "
                  + " / ".join(f"{v:.4f}" for v in r.get("ap", [])) + " |" for r in results["masks_vs_reference"]]
    lines += ["", "## Latency of one image (segmentation, end to end)", "", "| backend | precision | p50 ms | p99 ms |",
              "|---|---|---|---|"]
    lines += [f"| {r['backend']} | {r['precision']} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} |" for r in results["latency"]]
    lines += ["", "## Build / load time and GPU memory", ""]
    lines += [f"- {b['backend']} {b['precision']} {b.get('model', '')}: {b['seconds'] or 0:.1f} s ({b['what']})"
              for b in results["build"]]
    lines += [f"- {m['backend']} {m['precision']}: torch peak {m['torch_peak_mib']:.0f} MiB, device memory in use "
              f"{m['device_used_mib']:.0f} MiB" for m in results["memory"]]
    lines += [f"- skipped {s['backend']}: {s['reason']}" for s in results["skipped"]]
    lines += ["", "## Issue 5 targets (H100)", ""] + targets(results)
    return "\n".join(lines) + "\n"


def targets(results: dict) -> list[str]:
    out = []
    peak = results["gpu"].get("fp16_dense_peak_tflops")
    for backend in ("cp3rt torch-cuda", "cp3rt trt"):
        seg = _best(results["tiles"], backend, "fp16")
        chain = _best(results["chain"], backend, "fp16")
        if seg:
            frac = f", {100 * seg['tflops'] / peak:.1f} % of fp16 peak" if peak else ""
            out.append(f"- {backend} fp16 segmentation: {seg['median']:.0f} tiles/s (batch {seg['batch']}; target "
                       f"{'>= 4000' if 'trt' in backend else '>= 3000'}){frac}")
        if chain:
            out.append(f"- {backend} fp16 restore -> segment: {chain['median']:.0f} tiles/s (target >= 1500)")
    ref = next((r["median"] for r in results["e2e"] if r["backend"].startswith("reference")), None)
    for r in results["e2e"]:
        if ref and not r["backend"].startswith("reference"):
            out.append(f"- {r['backend']} {r['precision']} end to end: {r['median'] / ref:.1f}x the reference (target >= 5x)")
    for r in results["folder"]:
        if ref and r.get("pipeline", "segment") == "segment":
            out.append(f"- {r['backend']} {r['precision']} folder (streaming, I/O included): {r['median'] / ref:.1f}x "
                       "the reference (target >= 5x)")
    return out or ["- nothing measured"]


def write_results(results: dict, out: Path) -> list[Path]:
    slug = re.sub(r"[^a-z0-9]+", "_", results["gpu"]["name"].lower()).strip("_")
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / f"gpu_{slug}.json", out / f"gpu_{slug}.md"
    json_path.write_text(json.dumps(results, indent=2) + "\n")
    md_path.write_text(markdown(results))
    return [json_path, md_path]


if __name__ == "__main__":
    sys.exit(main())
