"""Host memory of ``cp3rt run`` by the number of streaming workers (issue 16 item 4: more
workers on many-core hosts means more images in flight; how much memory does each cost?).

Protocol
--------
* As a user runs it: ``cp3rt run`` in a fresh process per measurement, ``--workers W`` for each
  W of ``--workers``; peak resident memory of that process from the kernel (``os.wait4``'s
  ``ru_maxrss``: every thread and allocator, onnxruntime's arenas included), and its wall time.
* Models: the shipped ``cp3rt_denoise_nuclei`` -> ``cp3rt_nuclei`` (the README's quick start),
  onnxruntime CPU, fp32, diameter 17 (rescale 1: the memory of a W x H image is that of its size).
* Folder: ``--n-images`` uint16 TIFFs of ``--side``² px, mosaics of the 8 GOWT1 frames of
  ``../shared/data/ctc_gowt1_nuclei`` resized to 17 px nuclei (``bench_gpu.mosaic``), restore ->
  segment. Huge image: one ``--huge-side``² mosaic with ``--blocks`` (2048² blocks + halo),
  segment only, labels to a BigTIFF.
* The extra memory of one more worker = (peak at the most workers - peak at 1) / (most - 1).
  Wall times are of this machine's cores (2 here): they say nothing of a many-core host.
* Masks: every configuration's label images are compared byte for byte with those of the
  first configuration.
Run:  .venv/bin/python benchmarks/bench_workers_memory.py   (-> results/workers_memory.{md,json})
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
DATA = HERE.parent.parent / "shared" / "data" / "ctc_gowt1_nuclei" / "images"
MODELS = ["--model", "cp3rt_nuclei", "--diameter", "17", "--backend", "ort"]


def write_inputs(work: Path, n_images: int, side: int, huge_side: int) -> tuple[Path, Path]:
    import tifffile
    from bench_gpu import mosaic

    frames = [tifffile.imread(p).astype(np.float32) for p in sorted(DATA.glob("*.tif"))]
    if not frames:
        raise SystemExit(f"bench_workers_memory: no GOWT1 frames in {DATA}")
    folder = work / "folder"
    folder.mkdir()
    for k in range(n_images):
        image = mosaic(frames, 3 * k, 17.0 / 60.0, side)
        tifffile.imwrite(folder / f"img{k:02d}.tif", np.clip(image, 0, 65535).astype(np.uint16))
    huge = work / "huge.tif"
    if huge_side:  # 0: no huge input wanted
        tifffile.imwrite(huge, np.clip(mosaic(frames, 0, 17.0 / 60.0, huge_side), 0, 65535).astype(np.uint16),
                         bigtiff=True)
    return folder, huge


def same_bytes(a: Path, b: Path, pattern: str) -> tuple[int, int]:
    ours = sorted(a.glob(pattern))
    return sum((b / p.name).read_bytes() == p.read_bytes() for p in ours), len(ours)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 3, 8])
    ap.add_argument("--n-images", type=int, default=10)
    ap.add_argument("--side", type=int, default=2048)
    ap.add_argument("--huge-side", type=int, default=6144)
    ap.add_argument("--kinds", nargs="+", choices=("folder", "huge"), default=["folder", "huge"])
    ap.add_argument("--out", default="workers_memory")
    args = ap.parse_args()
    from _scale_common import fingerprint, run_cp3rt, write_results

    started, env_start = datetime.datetime.now().isoformat(timespec="seconds"), fingerprint()  # before the load we add
    work = Path(tempfile.mkdtemp(prefix="bench_workers_memory_"))
    folder, huge = write_inputs(work, args.n_images, args.side, args.huge_side if "huge" in args.kinds else 0)
    env = dict(os.environ, PYTHONPATH=str(HERE.parent / "src"), CP3RT_CACHE_DIR=str(work / "cache"))
    subprocess.run([sys.executable, "-m", "cp3rt.cli.app", "warmup", *MODELS[:2], "--restore", "cp3rt_denoise_nuclei",
                    "--backend", "ort", "--no-volumes"], env=env, check=True, capture_output=True)  # numba and export caches filled before any timing
    rows = []
    for w in args.workers:
        for kind, inputs, extra in (("folder", [folder], ["--restore", "cp3rt_denoise_nuclei"]),
                                    ("huge", [huge], ["--blocks"])):
            if kind not in args.kinds:
                continue
            out = work / f"{kind}_w{w}"
            res = run_cp3rt(["run", *map(str, inputs), *MODELS, *extra, "--workers", str(w), "--out", str(out)], env)
            first = work / f"{kind}_w{args.workers[0]}"
            same, total = same_bytes(out, first, "*_cp_masks.tif")
            rows.append({"kind": kind, "workers": w, **res, "identical_masks": same, "masks": total})
            print(json.dumps(rows[-1]), flush=True)
    per_worker = {}
    for kind in args.kinds:
        peaks = {r["workers"]: r["peak_rss_gib"] for r in rows if r["kind"] == kind}
        lo, hi = min(peaks), max(peaks)
        per_worker[kind] = (peaks[hi] - peaks[lo]) / (hi - lo) if hi > lo else None
    result = {"date": started, "environment": env_start,
              "n_images": args.n_images, "side": args.side,
              "huge_side": args.huge_side if "huge" in args.kinds else None, "rows": rows,
              "gib_per_extra_worker": per_worker}
    write_results(args.out, result, report(result))


def report(res: dict) -> str:
    from _scale_common import environment_line

    env = res["environment"]
    md = [f"# Host memory of `cp3rt run` by streaming workers ({res['date']})", "",
          f"Command: `{env['command']}`", "",
          environment_line(env), "",
          f"Folder: {res['n_images']} images of {res['side']}² px, restore -> segment (cp3rt_denoise_nuclei -> "
          "cp3rt_nuclei, onnxruntime CPU). "
          + (f"Huge: one {res['huge_side']}² px TIFF in 2048² blocks, segment only. " if res.get("huge_side") else "")
          + "Peak resident memory of the `cp3rt run` process (kernel ru_maxrss); wall seconds on this machine's cores.", "",
          "| input | --workers | peak RSS (GiB) | wall s | masks identical to the first row's |", "|---|---|---|---|---|"]
    for r in res["rows"]:
        md.append(f"| {r['kind']} | {r['workers']} | {r['peak_rss_gib']:.2f} | {r['seconds']:.1f} | "
                  f"{r['identical_masks']}/{r['masks']} |")
    md += ["", "Extra memory of one more worker (GiB): " + ", ".join(
        f"{k} {v:.2f}" if v is not None else f"{k} n/a" for k, v in res["gib_per_extra_worker"].items())]
    return "\n".join(md) + "\n"


if __name__ == "__main__":
    main()
