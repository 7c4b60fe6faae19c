"""Host-side cost of one image in cp3rt's Pipeline: the part a GPU engine cannot hide.

On the lent H200 (results/gpu_nvidia_h200.md) one 1024 x 1024 image took ~132 ms end to end
with the torch-CUDA fp16 engine, of which the net itself is ~15 ms (36 tiles at ~2400 tiles/s):
the rest is host work (normalise, cut tiles, blend, dynamics). This benchmark measures that
host work on this machine with the engine taken out of the picture.

Protocol
--------
* Images: ``--n-images`` 1024 x 1024 mosaics of GOWT1 frames scaled by 0.283 (nuclei ~17 px),
  built exactly as bench_gpu.py builds them (``mosaic``).
* Engine: the trained starter ``--weights`` (default the cp3rt_nuclei training output, see
  MODEL_CARD.md) on onnxruntime CPU runs each image once while its outputs are recorded; then a
  replay engine returns the recorded outputs instantly, so Pipeline.run times only host work.
  Diameter 17, the starter's diam_mean (rescale 1: 36 tiles per image, as bench_gpu runs cyto3 on
  these mosaics), batch 64, channels [0, 0]; realistic flows.
* Reported: median ms per image over ``--repeats`` passes, per stage (Pipeline timings).
* Old vs new in the same run, outputs compared bit for bit: the numpy expressions the numba
  blend kernels replaced (float64 product into a float32 accumulator; ratio, then crop) against
  ``cp3rt.runtime.tiles._blend_kernels`` on the same 36 tiles; two ``np.percentile`` calls against the
  one-pass ``cp3rt.runtime.prep.percentile.percentiles`` on one image.
Run: .venv/bin/python benchmarks/bench_host.py      (results -> results/host.{json,md})
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

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _scale_common import RESULTS, fingerprint  # noqa: E402
from bench_gpu import mosaic  # noqa: E402

DATA = HERE.parents[1] / "shared" / "data" / "ctc_gowt1_nuclei" / "images"
DEFAULT_WEIGHTS = Path("/tmp/cp3rt_starters/models/cp3rt_nuclei")


class ReplayEngine:
    """Records an engine's outputs on the first pass, then returns them in the same order."""

    device_resident = False  # the Engine protocol: numpy batches only

    def __init__(self, engine) -> None:  # noqa: ANN001
        self.engine, self.backend, self.manifest = engine, engine.backend, engine.manifest
        self.inputs, self.outputs = engine.inputs, engine.outputs
        self.recorded: list[dict] = []
        self.replaying, self.cursor = False, 0

    def infer(self, batch):  # noqa: ANN001, ANN201
        if not self.replaying:
            out = {k: np.array(v) for k, v in self.engine.infer(batch).items()}
            self.recorded.append(out)
            return out
        out = self.recorded[self.cursor]
        self.cursor = (self.cursor + 1) % len(self.recorded)
        return out

    def infer_many(self, batches):  # noqa: ANN001, ANN201
        return (self.infer(b) for b in batches)

    def close(self) -> None:
        self.engine.close()


def median_ms(fn, repeats: int) -> float:  # noqa: ANN001
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1e3 * statistics.median(times)


def blend_old_vs_new(tiles: np.ndarray, repeats: int) -> dict:
    from cp3rt.runtime.tiles._blend_kernels import blend_add, blend_ratio
    from cp3rt.runtime.tiles.grid import TileGrid, taper_mask

    grid = TileGrid.plan((1024 + 16, 1024 + 16))  # the padded 1024 x 1024 image
    mask = np.ascontiguousarray(taper_mask(*grid.tile_shape))
    weights = grid.weights()
    box = (8, 1032, 8, 1032)

    def old() -> np.ndarray:
        acc = np.zeros((tiles.shape[1], *grid.canvas_shape), np.float32)
        for k, tile in enumerate(grid.tiles):
            acc[(slice(None), *tile.region)] += tiles[k].astype(np.float32) * mask
        return (acc / weights).astype(np.float32)[:, box[0] : box[1], box[2] : box[3]]

    def new() -> np.ndarray:
        acc = np.zeros((tiles.shape[1], *grid.canvas_shape), np.float32)
        for k, tile in enumerate(grid.tiles):
            blend_add(acc, tiles[k], mask, tile.y0, tile.x0)
        return blend_ratio(acc, weights, *box)

    identical = bool(np.array_equal(old(), new()))
    return {"tiles": len(grid), "numpy_ms": median_ms(old, repeats), "numba_ms": median_ms(new, repeats),
            "identical": identical}


def percentiles_old_vs_new(image: np.ndarray, repeats: int) -> dict:
    from cp3rt.runtime.prep.percentile import percentiles

    x = np.ascontiguousarray(image, dtype=np.float32)

    def old() -> tuple:
        return np.percentile(x, 1.0), np.percentile(x, 99.0)

    def new() -> tuple:
        return percentiles(x, (1.0, 99.0))

    return {"two_np_percentile_ms": median_ms(old, repeats), "one_pass_ms": median_ms(new, repeats),
            "identical": old() == new()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    ap.add_argument("--images", type=Path, default=DATA)
    ap.add_argument("--n-images", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--out", default="host")
    args = ap.parse_args()
    if not args.weights.is_file():
        raise SystemExit(f"{args.weights}: no such weight file (train the starter first, see MODEL_CARD.md).")

    from cp3rt.engines.ort import OrtEngine
    from cp3rt.export.to_onnx import export_onnx
    from cp3rt.runtime.config import RunConfig
    from cp3rt.runtime.io import find_images, read_image
    from cp3rt.runtime.pipeline import Pipeline

    env = fingerprint()
    frames = [read_image(p) for p in find_images([args.images])]
    images = [mosaic(frames, k, 0.283, 1024) for k in range(args.n_images)]
    work = Path(tempfile.mkdtemp(prefix="bench_host_"))
    onnx = export_onnx(args.weights, work, verify=False).onnx_path
    engine = ReplayEngine(OrtEngine(onnx))
    # diameter 17 = the starter's diam_mean: rescale 1, 36 tiles per image, as bench_gpu runs cyto3.
    run = RunConfig(channels=(0, 0), diameter=17.0, batch_size=64)
    pipe = Pipeline.from_engines(engine, run=run)
    objects = [int(pipe.run(img).masks.max()) for img in images]  # records; compiles numba too
    engine.replaying = True
    totals: list[float] = []
    stages: dict[str, list[float]] = {}
    for _ in range(args.repeats):
        engine.cursor = 0
        t = time.perf_counter()
        for img in images:
            for k, v in pipe.run(img).timings.items():
                stages.setdefault(k, []).append(v)
        totals.append((time.perf_counter() - t) / len(images))
    per_image_ms = 1e3 * statistics.median(totals)
    stage_ms = {k: 1e3 * statistics.median(v) for k, v in stages.items()}
    tiles = np.concatenate([r["flows"] for r in engine.recorded])[:36]
    result = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), "environment": env,
        "images": len(images), "objects": objects, "host_ms_per_image": per_image_ms, "stage_ms": stage_ms,
        "blend": blend_old_vs_new(tiles, args.repeats),
        "percentiles": percentiles_old_vs_new(images[0], args.repeats),
    }
    pipe.close()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps(result, indent=2) + "\n")
    b, p = result["blend"], result["percentiles"]
    md = [f"# Host-side cost of one 1024 x 1024 image ({result['date']})", "",
          f"Command: `{env['command']}`", "",
          f"CPU: {env['cpu']} x{env['cores']}; numba {env['numba']}; load average at start: {env['load_average_at_start']}", "",
          f"{len(images)} GOWT1 mosaics, {sum(objects)} objects; engine replayed (no net time). Protocol: bench_host.py.", "",
          f"- Pipeline.run host work: **{per_image_ms:.1f} ms per image** (median of {args.repeats} passes); per stage: "
          + ", ".join(f"{k} {v:.1f}" for k, v in stage_ms.items() if v >= 0.05) + " ms.",
          f"- Blend of {b['tiles']} tiles (the `segment` stage's stitching): numpy {b['numpy_ms']:.1f} ms vs numba "
          f"kernels {b['numba_ms']:.1f} ms ({b['numpy_ms'] / b['numba_ms']:.1f}x); identical output: {b['identical']}.",
          f"- 1st and 99th percentiles of one image (the `normalize` stage): two np.percentile calls "
          f"{p['two_np_percentile_ms']:.1f} ms vs one pass {p['one_pass_ms']:.1f} ms "
          f"({p['two_np_percentile_ms'] / p['one_pass_ms']:.1f}x); identical: {p['identical']}."]
    (RESULTS / f"{args.out}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
