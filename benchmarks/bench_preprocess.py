"""Pre-processing and tiling cost outside the net: cp3rt (numpy/numba) vs the reference.

Protocol
--------
* Input: a real 1024x1024 image (ctc_gowt1_nuclei seq01_t031) tiled 2x2 to 2048x2048 and
  stacked with a zero channel, as Cellpose feeds a grayscale image: (2, 2048, 2048).
* Operations, each timed for cp3rt and for the reference call it replaces, on identical inputs:
  - normalize: ``normalize_image`` vs ``transforms.normalize_img`` (1-99 %, whole image);
  - resize_down: 2-channel bilinear 2048 -> 1365 (diameter 45 on a 30 model) vs ``cv2.resize``;
  - resize_up: 3-channel (flows + cellprob) bilinear 1365 -> 2048 vs ``cv2.resize``;
  - resize_nearest: uint16 labels 1365 -> 2048 vs ``cv2.resize(INTER_NEAREST)``;
  - tiling: ``run_tiled`` vs ``core.run_net`` on (2, 1365, 1365) with an identity "net"
    (returns its input, zero style): pad + tile + batch + taper stitching + crop, nothing else.
* Warm-up: ``--warmup`` untimed calls of every operation (numba compilation, caches).
* Timing: ``--rounds`` rounds; each round times every (operation, implementation) once, in
  turn, so drifts in machine load hit both sides alike. Reported: median seconds, quartiles,
  min/max, and the reference/cp3rt ratio of medians. Outputs are compared (max |difference|)
  to show the same computation is timed.
* Threads: OpenCV uses its own thread pool; cp3rt's numba kernels are single-threaded.

Run:  LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4 \\
      .venv/bin/python benchmarks/bench_preprocess.py   (results -> benchmarks/results/preprocess.*)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DATA = HERE.parents[0] / ".." / "shared" / "data"
IMAGE = DATA / "ctc_gowt1_nuclei" / "images" / "seq01_t031.tif"


def _fingerprint() -> dict:
    import cv2
    import numba
    import onnxruntime
    import torch

    cpu = "unknown"
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/self/maps") as fh:
        tcmalloc = "tcmalloc" in fh.read()
    return {
        "cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
        "numpy": np.__version__, "numba": numba.__version__,
        "onnxruntime": onnxruntime.__version__, "torch": torch.__version__,
        "opencv": cv2.__version__, "tcmalloc_preloaded": tcmalloc,
        "load_average_at_start": os.getloadavg(),
    }


def _cases() -> dict[str, tuple[Callable, Callable, Callable]]:
    """name -> (cp3rt call, reference call, compare(cp3rt_out, ref_out) -> max |diff|)."""
    import cv2
    import tifffile
    import torch
    from cellpose import core, transforms

    from cp3rt.runtime.prep.normalize import normalize_image
    from cp3rt.runtime.prep.resize import resize_bilinear, resize_nearest
    from cp3rt.runtime.tiles.infer import run_tiled

    img = np.tile(tifffile.imread(IMAGE).astype(np.float32), (2, 2))
    cyx = np.stack([img, np.zeros_like(img)])
    yxc = np.ascontiguousarray(cyx.transpose(1, 2, 0))
    small = resize_bilinear(normalize_image(cyx), (1365, 1365))
    small_yxc = np.ascontiguousarray(small.transpose(1, 2, 0))
    flows = np.random.default_rng(0).standard_normal((3, 1365, 1365)).astype(np.float32)
    flows_yxc = np.ascontiguousarray(flows.transpose(1, 2, 0))
    labels = np.random.default_rng(1).integers(0, 3000, (1365, 1365)).astype(np.uint16)

    class Identity(torch.nn.Module):
        nout, mkldnn, device = 2, False, torch.device("cpu")

        def forward(self, x):
            return x.clone(), torch.ones((x.shape[0], 256))

    net = Identity()

    def diff(a, b):
        return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max())

    return {
        "normalize": (
            lambda: normalize_image(cyx),
            lambda: transforms.normalize_img(yxc[np.newaxis].copy()),
            lambda o, r: diff(o, r[0].transpose(2, 0, 1)),
        ),
        "resize_down": (
            lambda: resize_bilinear(cyx, (1365, 1365)),
            lambda: cv2.resize(yxc, (1365, 1365), interpolation=cv2.INTER_LINEAR),
            lambda o, r: diff(o, r.transpose(2, 0, 1)),
        ),
        "resize_up": (
            lambda: resize_bilinear(flows, (2048, 2048)),
            lambda: cv2.resize(flows_yxc, (2048, 2048), interpolation=cv2.INTER_LINEAR),
            lambda o, r: diff(o, r.transpose(2, 0, 1)),
        ),
        "resize_nearest": (
            lambda: resize_nearest(labels, (2048, 2048)),
            lambda: cv2.resize(labels, (2048, 2048), interpolation=cv2.INTER_NEAREST),
            diff,
        ),
        "tiling": (
            lambda: run_tiled(small, lambda b: (b, np.ones((len(b), 256), np.float32)), nout=2)[0],
            lambda: core.run_net(net, small_yxc[np.newaxis])[0],
            lambda o, r: diff(o, r[0].transpose(2, 0, 1)),
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "preprocess")
    args = parser.parse_args()

    environment, started = _fingerprint(), dt.datetime.now(dt.timezone.utc).isoformat()  # before the load we add
    cases = _cases()
    for ours, ref, _ in cases.values():
        for _ in range(args.warmup):
            ours()
            ref()
    times: dict[str, dict[str, list[float]]] = {k: {"cp3rt": [], "reference": []} for k in cases}
    for _ in range(args.rounds):
        for name, (ours, ref, _) in cases.items():
            for side, fn in (("cp3rt", ours), ("reference", ref)):
                t0 = time.perf_counter()
                fn()
                times[name][side].append(time.perf_counter() - t0)

    results = {}
    for name, (ours, ref, compare) in cases.items():
        row = {"max_abs_diff": compare(ours(), ref())}
        for side, values in times[name].items():
            v = np.array(values)
            row[side] = {"median_s": float(np.median(v)), "q1_s": float(np.percentile(v, 25)),
                         "q3_s": float(np.percentile(v, 75)), "min_s": float(v.min()),
                         "max_s": float(v.max())}
        row["speedup_vs_reference"] = row["reference"]["median_s"] / row["cp3rt"]["median_s"]
        results[name] = row

    record = {
        "benchmark": "preprocess", "date": started,
        "command": " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]),
        "ld_preload": os.environ.get("LD_PRELOAD", ""), "warmup": args.warmup,
        "rounds": args.rounds, "environment": environment, "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    lines = [
        "# Pre-processing / tiling cost outside the net (cp3rt vs reference)", "",
        f"Date: {record['date']}  ", f"Command: `{record['command']}` (LD_PRELOAD="
        f"`{record['ld_preload'] or 'none'}`)  ",
        f"Environment: {json.dumps(record['environment'])}  ",
        f"Warm-up {args.warmup} calls each, {args.rounds} interleaved rounds; seconds.", "",
        "| operation | cp3rt median [q1, q3] | reference median [q1, q3] | ref/cp3rt | max abs diff |",
        "|---|---|---|---|---|",
    ]
    for name, row in results.items():
        c, r = row["cp3rt"], row["reference"]
        lines.append(
            f"| {name} | {c['median_s']:.4f} [{c['q1_s']:.4f}, {c['q3_s']:.4f}] | "
            f"{r['median_s']:.4f} [{r['q1_s']:.4f}, {r['q3_s']:.4f}] | "
            f"{row['speedup_vs_reference']:.2f} | {row['max_abs_diff']:.3g} |"
        )
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
