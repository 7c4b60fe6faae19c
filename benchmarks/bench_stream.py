"""Streaming batch engine vs a plain one-image-at-a-time loop on a folder of mixed sizes.

Protocol
--------
* Inputs: ``--n-images`` (200) uint16 blob images, sides drawn log-uniformly from 256 to 2048
  (independently for Y and X, seed 0), ~1 blob per 40x40 px, written once as TIFF files.
* Net: a small random-init CPnet nbase [2, 8, 16, 32, 64] exported to ONNX, head calibrated
  to give masks (see _scale_common), run by onnxruntime CPU with cp3rt's default settings, or
  with ``--backend torch-cuda`` by the torch-CUDA engine on a GPU (``--precision``, fp16 by
  default): the case where the engine and the CPU-side dynamics are different devices.
  Diameter fixed at 30 (rescale 1); all other settings the defaults.
* Plain: ``cp3rt.runtime.batch.files.run_batch`` (read -> pipeline -> write, one image at a time).
  Streaming: ``cp3rt.runtime.batch.stream.stream_batch`` (StreamConfig defaults unless given).
* Warm-up: both runners once over the first 4 images (JIT, ORT arena). Then ``--repeats``
  rounds, each timing plain then streaming on the whole folder in the same process.
  Reported: median and min/max seconds per runner, images/s, speed-up of the medians, and the
  plain loop's seconds per stage in its last round (what is left for overlapping to win).
* ``--bound-images N`` (ORT only): the plain loop on the first N images twice more, with default
  threads and with one thread for the net (ORT) and one for the dynamics (numba). Parallel code
  only adds work, so the single-threaded stage seconds summed and divided by the cores is a floor
  on any runner's wall time: plain / floor is the most that overlapping stages can win here.
* Same masks: every image's masks of the last round are matched (AP@0.9, cp3rt.metrics) and
  compared for exact equality.
Results: benchmarks/results/stream.json and stream.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _scale_common import (  # noqa: E402
    RESULTS,
    SmallNetEngine,
    blob_image,
    fingerprint,
    small_net_onnx,
    small_net_weights,
)


def make_folder(folder: Path, n: int) -> list[Path]:
    import tifffile

    rng = np.random.default_rng(0)
    sides = np.exp(rng.uniform(np.log(256), np.log(2048), (n, 2))).astype(int)
    paths = []
    for i, (h, w) in enumerate(sides):
        p = folder / f"img{i:03d}.tif"
        tifffile.imwrite(p, blob_image((int(h), int(w)), max(1, int(h * w / 1600)), i))
        paths.append(p)
    return paths


def overlap_bound(model: Path, images: list[Path], run, work: Path) -> dict:  # noqa: ANN001
    """The plain loop on ``images`` with default threads, then with one thread per stage (see Protocol)."""
    import os

    import numba

    from cp3rt import Pipeline
    from cp3rt.runtime.batch.files import OutputOptions, run_batch

    def plain(threads: int | None) -> tuple[float, dict]:
        pipe = Pipeline.from_engines(SmallNetEngine(model, threads=threads), run=run)
        out = OutputOptions(out_dir=work / "bound", overwrite=True)
        run_batch(pipe, images[:2], run, out)  # warm-up
        t = time.perf_counter()
        summary = run_batch(pipe, images, run, out)
        wall = time.perf_counter() - t
        pipe.close()
        stages: dict[str, float] = {}
        for o in summary.outcomes:
            for k, v in o.timings.items():
                stages[k] = stages.get(k, 0.0) + v
        return wall, stages

    default_threads = numba.get_num_threads()
    plain_s, _ = plain(None)
    numba.set_num_threads(1)  # numba's thread count is per calling thread: the loop's thread
    try:
        single_s, single = plain(1)
    finally:
        numba.set_num_threads(default_threads)
    cores = os.cpu_count() or 1
    floor = single_s / cores
    return {"images": len(images), "plain_s": plain_s, "single_thread_work_s": single_s,
            "single_thread_stage_s": single, "cores": cores,
            "floor_s": floor, "max_speedup": plain_s / floor}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-images", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--max-batch", type=int, default=None)
    ap.add_argument("--backend", choices=("ort", "torch-cuda"), default="ort")
    ap.add_argument("--bound-images", type=int, default=0, help="ORT: also time single-threaded stages on N images")
    ap.add_argument("--precision", default="fp16", help="torch-cuda only: fp16, bf16 or fp32")
    ap.add_argument("--out", default="stream")
    args = ap.parse_args()
    if args.bound_images and args.backend != "ort":
        ap.error("--bound-images times onnxruntime and numba threads; it needs --backend ort.")

    from cp3rt import Pipeline
    from cp3rt.runtime.batch.files import OutputOptions, run_batch
    from cp3rt.runtime.batch.stream import StreamConfig, StreamStats, stream_batch
    from cp3rt.runtime.config import RunConfig
    from cp3rt.runtime.quality.metrics import average_precision

    env = fingerprint()
    work = Path(tempfile.mkdtemp(prefix="bench_stream_"))
    images = make_folder(work / "in", args.n_images) if (work / "in").mkdir() is None else []
    if args.backend == "ort":
        model, label = small_net_onnx(work / "net"), "ORT CPU"
    else:
        model, label = small_net_weights(work / "net"), f"torch-cuda {args.precision}"
    run = RunConfig(diameter=30.0, channels=(0, 0))
    cfg = StreamConfig(**{k: v for k, v in (("workers", args.workers), ("max_batch", args.max_batch)) if v})
    engine = SmallNetEngine(model, args.backend, args.precision)
    pipe = Pipeline.from_engines(engine, run=run)
    if args.backend == "torch-cuda":
        import torch

        env["gpu"] = torch.cuda.get_device_name(0)
        # A CUDA graph is captured per batch shape and slot on first use; capture every batch size
        # either runner can send before the clock starts, so neither pays for it while timed.
        for b in range(1, max(cfg.max_batch, run.batch_size) + 1):
            for _slot in range(2):
                engine.infer(np.zeros((b, 2, 224, 224), np.float32))

    def plain(out: Path, imgs):
        return run_batch(pipe, imgs, run, OutputOptions(out_dir=out, overwrite=True))

    def streamed(out: Path, imgs, stats=None):
        return stream_batch(pipe, imgs, run, OutputOptions(out_dir=out, overwrite=True), stream=cfg, stats=stats)

    plain(work / "warm_a", images[:4])
    streamed(work / "warm_b", images[:4])
    times = {"plain": [], "stream": []}
    stats = StreamStats()
    for r in range(args.repeats):
        for name, fn in (("plain", plain), ("stream", streamed)):
            t = time.perf_counter()
            summary = fn(work / name, images) if name == "plain" else fn(work / name, images, stats if r == args.repeats - 1 else None)
            times[name].append(time.perf_counter() - t)
            assert summary.ok, [o.error for o in summary.outcomes if o.error]
            last = summary if name == "plain" else None
            if name == "plain":
                plain_summary = last
            else:
                stream_summary = summary
    pipe.close()
    bound = overlap_bound(model, images[: args.bound_images], run, work) if args.bound_images else None

    import tifffile

    aps, equal, objects = [], 0, 0
    for a, b in zip(plain_summary.outcomes, stream_summary.outcomes):
        ma, mb = tifffile.imread(a.outputs[-1]), tifffile.imread(b.outputs[-1])
        aps.append(float(average_precision(ma, mb, [0.9])[0][0]) if ma.max() or mb.max() else 1.0)
        equal += bool(np.array_equal(ma, mb))
        objects += a.n_objects
    med = {k: statistics.median(v) for k, v in times.items()}
    # Where the one-at-a-time loop spends its time (last round): streaming can only overlap what
    # does not already use every core.
    stages: dict[str, float] = {}
    for o in plain_summary.outcomes:
        for k, v in o.timings.items():
            stages[k] = stages.get(k, 0.0) + v
    pixels = sum(int(np.prod(tifffile.TiffFile(p).pages[0].shape[:2])) for p in images)
    result = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"), "environment": env,
        "n_images": len(images), "megapixels": pixels / 1e6, "objects": objects,
        "repeats": args.repeats, "backend": label, "stream_config": {"workers": cfg.workers, "max_batch": cfg.max_batch},
        "seconds": times, "median_seconds": med,
        "images_per_s": {k: len(images) / v for k, v in med.items()},
        "speedup_median": med["plain"] / med["stream"],
        "batcher": {"calls": stats.calls, "tiles": stats.tiles, "shared_calls": stats.shared_calls,
                    "mean_batch": stats.mean_batch},
        "masks": {"min_ap90": min(aps), "mean_ap90": float(np.mean(aps)), "identical_images": equal},
        "plain_stage_seconds_last_round": stages,
        "overlap_bound": bound,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps(result, indent=2))
    md = [f"# Streaming engine vs one-at-a-time ({result['date']})", "",
          f"Command: `{env['command']}`", "",
          f"CPU: {env['cpu']} x{env['cores']}{'; GPU ' + env['gpu'] if 'gpu' in env else ''}; tcmalloc preloaded: {env['tcmalloc_preloaded']}; "
          f"load average at start: {env['load_average_at_start']}", "",
          f"{len(images)} images, {pixels / 1e6:.0f} Mpx, {objects} objects; net nbase [2,8,16,32,64] ({label})", "",
          "| runner | median s | min s | max s | images/s |", "|---|---|---|---|---|"]
    for k in ("plain", "stream"):
        md.append(f"| {k} | {med[k]:.1f} | {min(times[k]):.1f} | {max(times[k]):.1f} | {len(images) / med[k]:.2f} |")
    md += ["", f"Speed-up (median): **{result['speedup_median']:.2f}x**; engine calls {stats.calls}, "
           f"mean batch {stats.mean_batch:.1f} tiles, {stats.shared_calls} calls mixed images.",
           f"Masks: min AP@0.9 {min(aps):.4f}, identical label images {equal}/{len(images)}.",
           "Plain loop, last round, seconds per stage: "
           + ", ".join(f"{k} {v:.1f}" for k, v in stages.items() if v >= 0.05) + "."]
    if bound:
        md += [f"Overlap bound on {bound['images']} images: plain loop {bound['plain_s']:.1f} s; single-threaded stages "
               + ", ".join(f"{k} {v:.1f}" for k, v in bound["single_thread_stage_s"].items() if v >= 0.05)
               + f" s, {bound['single_thread_work_s']:.1f} s of work over {bound['cores']} cores = floor "
               f"{bound['floor_s']:.1f} s: **no overlap of stages can beat {bound['max_speedup']:.2f}x here**."]
    (RESULTS / f"{args.out}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
