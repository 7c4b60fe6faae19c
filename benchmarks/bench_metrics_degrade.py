"""Benchmark: cp3rt metrics, outlines and degradation synthesis vs the Cellpose 3.1.1.2 reference.

Protocol
--------
* Inputs: real ground-truth masks from ``shared/data`` (stardist_dsb2018 512x512 with 125
  objects, ctc_gowt1 1024x1024 with 24 objects); the prediction is the truth shifted by (2, -3)
  pixels with every 7th object removed, so matching has real work to do.
* Cases: ``average_precision`` at IoU 0.5/0.75/0.9 (+ AJI), ``masks_to_outlines``, and
  ``add_noise`` on a (4, 1, 512, 512) batch with pinned parameters (sigma 5, ds 3, pscale 10),
  where the reference runs ``cellpose.denoise.add_noise(poisson=1, blur=1, downsample=0, ...)``
  on CPU torch tensors.
* Each case: outputs are checked for agreement first, then 2 warm-up calls per side, then
  ``--repeats`` timed calls alternating cp3rt / reference (ABAB...) so that drift on the shared
  machine hits both sides alike. Reported: median, interquartile range, min (seconds) and the
  median ratio reference/cp3rt.
* Run with tcmalloc preloaded (the reference is torch):
  ``LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4 .venv/bin/python
  benchmarks/bench_metrics_degrade.py``. The fingerprint records whether it was preloaded and
  the load average, since other jobs may share the machine.
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
from pathlib import Path

import numpy as np
import tifffile

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / ".." / "shared" / "data"
RESULTS = HERE / "results"
NAME = "metrics_degrade"
MASKS = {
    "stardist_512": DATA / "stardist_dsb2018_nuclei" / "masks" / "img2d.tif",
    "gowt1_1024": DATA / "ctc_gowt1_nuclei" / "masks" / "seq01_t021.tif",
}


def fingerprint() -> dict:
    import numba
    import onnxruntime
    import scipy
    import torch

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    maps = Path("/proc/self/maps").read_text() if Path("/proc/self/maps").exists() else ""
    return {
        "cpu": cpu, "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "python": platform.python_version(), "numpy": np.__version__, "scipy": scipy.__version__,
        "numba": numba.__version__, "onnxruntime": onnxruntime.__version__,
        "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
        "tcmalloc_preloaded": "tcmalloc" in maps, "platform": platform.platform(),
        "loadavg_start": os.getloadavg(),
    }


def perturb(m: np.ndarray) -> np.ndarray:
    p = np.zeros_like(m)
    p[2:, :-3] = m[:-2, 3:]
    p[np.isin(p, np.arange(7, int(m.max()) + 1, 7))] = 0
    return p


def timed(fn_a, fn_b, repeats: int) -> tuple[list[float], list[float]]:
    for _ in range(2):
        fn_a()
        fn_b()
    ta, tb = [], []
    for _ in range(repeats):
        for fn, out in ((fn_a, ta), (fn_b, tb)):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
    return ta, tb


def stats(t: list[float]) -> dict:
    q1, med, q3 = np.percentile(t, [25, 50, 75])
    return {"median_s": med, "iqr_s": q3 - q1, "min_s": min(t), "n": len(t)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args()

    import torch
    from cellpose import denoise, metrics, utils

    from cp3rt.runtime.io import masks_to_outlines
    from cp3rt.runtime.quality.degrade import FixedNoise, add_noise_batch
    from cp3rt.runtime.quality.metrics import aggregated_jaccard_index, average_precision

    env = fingerprint()
    cases = []
    ths = [0.5, 0.75, 0.9]
    for name, path in MASKS.items():
        gt = tifffile.imread(path).astype(np.int32)
        pred = perturb(gt)
        ours = average_precision(gt, pred, ths)
        theirs = metrics.average_precision(gt, pred, ths)
        assert all(np.array_equal(a, b) for a, b in zip(ours, theirs)), name
        ta, tb = timed(lambda: (average_precision(gt, pred, ths),
                                aggregated_jaccard_index(gt, pred)),
                       lambda: (metrics.average_precision(gt, pred, ths),
                                metrics.aggregated_jaccard_index([gt], [pred])), args.repeats)
        cases.append({"case": f"average_precision+aji {name}", "objects": int(gt.max()),
                      "cp3rt": stats(ta), "reference": stats(tb)})
        assert np.array_equal(masks_to_outlines(gt), utils.masks_to_outlines(gt)), name
        ta, tb = timed(lambda: masks_to_outlines(gt), lambda: utils.masks_to_outlines(gt),
                       args.repeats)
        cases.append({"case": f"masks_to_outlines {name}", "objects": int(gt.max()),
                      "cp3rt": stats(ta), "reference": stats(tb)})

    rng = np.random.default_rng(0)
    batch = rng.random((4, 1, 512, 512)).astype(np.float32)
    noise = FixedNoise(pscale=10.0, sigma=5.0, ds=3)
    tbatch = torch.from_numpy(batch)

    def ref_noise():
        return denoise.add_noise(tbatch, poisson=1.0, blur=1.0, downsample=0.0, pscale=10.0,
                                 sigma0=5.0, sigma1=5.0, ds=3)

    # Agreement before timing: without Poisson the two outputs match to float32 rounding.
    det = add_noise_batch(batch, FixedNoise(sigma=5.0, ds=3), rng)[0]
    det_ref = denoise.add_noise(tbatch, poisson=0.0, blur=1.0, downsample=0.0, sigma0=5.0,
                                sigma1=5.0, ds=3).numpy()
    max_diff = float(np.abs(det - det_ref).max())
    assert max_diff < 1e-4, max_diff
    ta, tb = timed(lambda: add_noise_batch(batch, noise, rng), ref_noise, args.repeats)
    cases.append({"case": "add_noise 4x1x512x512 sigma5 ds3 pscale10", "objects": None,
                  "cp3rt": stats(ta), "reference": stats(tb),
                  "max_abs_diff_without_poisson": max_diff})
    for c in cases:
        c["speedup_reference_over_cp3rt"] = c["reference"]["median_s"] / c["cp3rt"]["median_s"]
    env["loadavg_end"] = os.getloadavg()
    preload = os.environ.get("LD_PRELOAD", "")
    command = (f"LD_PRELOAD={preload} " if preload else "") + " ".join(
        shlex.quote(a) for a in [".venv/bin/python", "benchmarks/bench_metrics_degrade.py",
                                 *sys.argv[1:]])
    result = {"name": NAME, "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "command": command, "environment": env, "repeats": args.repeats, "cases": cases}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{NAME}.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"# {NAME}", "", f"Date: {result['date']}  ", f"Command: `{command}`  ",
             f"CPU: {env['cpu']} ({env['usable_cores']} usable cores), torch threads "
             f"{env['torch_threads']}, tcmalloc preloaded: {env['tcmalloc_preloaded']}  ",
             f"Versions: python {env['python']}, numpy {env['numpy']}, scipy {env['scipy']}, "
             f"numba {env['numba']}, onnxruntime {env['onnxruntime']}, torch {env['torch']}  ",
             f"Load average start/end: {env['loadavg_start']} / {env['loadavg_end']}", "",
             f"Median of {args.repeats} alternating runs after 2 warm-ups (IQR in brackets), and "
             "the fastest run (less sensitive to other jobs on a shared machine).", "",
             "| case | objects | cp3rt median [IQR] (s) | reference median [IQR] (s) | "
             "reference / cp3rt (median) | cp3rt min (s) | reference min (s) |",
             "|---|---|---|---|---|---|---|"]
    for c in cases:
        a, b = c["cp3rt"], c["reference"]
        lines.append(f"| {c['case']} | {c['objects'] or '-'} | {a['median_s']:.4f} "
                     f"[{a['iqr_s']:.4f}] | {b['median_s']:.4f} [{b['iqr_s']:.4f}] | "
                     f"{c['speedup_reference_over_cp3rt']:.2f}x | {a['min_s']:.4f} | "
                     f"{b['min_s']:.4f} |")
    (RESULTS / f"{NAME}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
