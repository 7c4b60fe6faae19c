"""int8 vs fp32 on onnxruntime CPU with the starter nets: which calibration keeps masks best, how
well int8 masks match fp32 masks on held-out images, and how fast the int8 tiles run.

Protocol
--------
* Nets: the shipped starters ``cp3rt_nuclei`` (segment) and ``cp3rt_denoise_nuclei`` (restore).
  int8 graphs are made by the library side of ``cp3rt export --precision int8 --calibrate DIR``
  (:func:`cp3rt.calibrate.export_int8`) with the bar set to 0 so every variant is reported.
* Calibration / held-out split (no image in both), per dataset of ``../shared/data``:
  ctc_sim_nuclei (diameter 46.6, README): calibrate on 4 frames of both sequences, hold out 8
  others; ctc_gowt1_nuclei (diameter 60.0): calibrate on 3, hold out the other 5.
* Part 1, method: segment net, every method (minmax / entropy / percentile) x activations
  (u8 asymmetric / s8 symmetric) on both datasets: AP@0.5 / AP@0.75 of the int8 pipeline's masks
  against the fp32 pipeline's masks (true/false positives summed over images).
* Part 2, restore -> segment on GOWT1 (the issue's pipeline): the restore net calibrated with
  ``segment_with=cp3rt_nuclei``, the segment net with ``restore_with=cp3rt_denoise_nuclei``,
  default method; masks of int8 restore + int8 segment against the shipped fp32 pair (cp3rt's
  default) on the held-out images.
* Part 3, speed: one batch of 8 tiles 224x224 (random normalised pixels) through ``OrtEngine``
  with cp3rt's default session settings (threads: one per physical core), graphs alternating,
  1 warm-up + ``--repeats`` timed runs each, median and min-max; the shipped fp32 graph (what
  ``cp3rt run`` opens), the folded fp32 graph that is quantized, int8 u8, int8 s8.
* The machine is shared: its load average at start and end is recorded. Run with tcmalloc:
  LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4 .venv/bin/python benchmarks/bench_int8.py
  (results -> results/int8.{json,md})
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _scale_common import RESULTS, fingerprint  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SPLITS = {  # dataset: (diameter, calibration frames, held-out frames)
    "ctc_sim_nuclei": (46.6, ["seq01_t000", "seq01_t040", "seq02_t030", "seq02_t110"],
                       ["seq01_t020", "seq01_t060", "seq02_t005", "seq02_t050", "seq02_t070",
                        "seq02_t090", "seq02_t130", "seq02_t149"]),
    "ctc_gowt1_nuclei": (60.0, ["seq01_t021", "seq01_t039", "seq02_t052"],
                         ["seq01_t031", "seq01_t033", "seq02_t001", "seq02_t055", "seq02_t072"]),
}
SEG, RESTORE = "cp3rt_nuclei", "cp3rt_denoise_nuclei"


def _split(root: Path, dataset: str) -> tuple[float, Path, Path]:
    diameter, calib, hold = SPLITS[dataset]
    out = []
    for name, frames in (("calib", calib), ("holdout", hold)):
        folder = root / dataset / name
        folder.mkdir(parents=True)
        for f in frames:
            os.symlink(DATA / dataset / "images" / f"{f}.tif", folder / f"{f}.tif")
        out.append(folder)
    return diameter, out[0], out[1]


def _acc(a) -> dict | None:
    return None if a is None else {"ap50": a.ap50, "ap75": a.ap75, "objects_fp32": a.objects_fp32,
                                   "objects_int8": a.objects_int8, "images": a.images}


def part_methods(root: Path, out: Path, methods: list[str]) -> list[dict]:
    from cp3rt.calibrate import Int8Config, export_int8

    rows = []
    for dataset in SPLITS:
        diameter, calib, hold = _split(root, dataset)
        for method in methods:
            for act in ("u8", "s8"):
                t0 = time.perf_counter()
                res = export_int8(Int8Config(SEG, calib, out, holdout=hold, method=method, activations=act,
                                             min_ap50=0, min_ap75=0, diameter=diameter,
                                             name=f"{dataset}_{method}_{act}"))
                cal = res.manifest.calibration
                rows.append({"dataset": dataset, "method": method, "activations": act, "tiles": cal.tiles,
                             "calibration": _acc(cal.accuracy), "holdout": _acc(cal.holdout_accuracy),
                             "export_s": round(time.perf_counter() - t0, 1), "onnx": str(res.onnx_path)})
                print(json.dumps(rows[-1]), flush=True)
    return rows


def part_chain(root: Path, out: Path, method: str) -> dict:
    from cp3rt.calibrate import Int8Config, agreement, export_int8
    from cp3rt.runtime import Pipeline
    from cp3rt.runtime.io import find_images

    diameter, _, _ = SPLITS["ctc_gowt1_nuclei"]
    calib, hold = root / "ctc_gowt1_nuclei" / "calib", root / "ctc_gowt1_nuclei" / "holdout"
    rest = export_int8(Int8Config(RESTORE, calib, out, holdout=hold, method=method, min_ap50=0, min_ap75=0,
                                  diameter=diameter, segment_with=SEG, name="restore_chain"))
    seg = export_int8(Int8Config(SEG, calib, out, holdout=hold, method=method, min_ap50=0, min_ap75=0,
                                 diameter=diameter, restore_with=RESTORE, name="segment_chain"))
    files = find_images([hold])
    masks, seconds = {}, {}
    for label, (s, r) in {"fp32": (SEG, RESTORE), "int8": (str(seg.onnx_path), str(rest.onnx_path))}.items():
        with Pipeline(s, r, backend="ort", diameter=diameter) as pipe:
            pipe.run(files[0])  # warm-up (numba, sessions)
            t0 = time.perf_counter()
            masks[label] = [np.asarray(pipe.run(f).masks) for f in files]
            seconds[label] = round(time.perf_counter() - t0, 2)
    both = agreement(masks["fp32"], masks["int8"])
    return {"method": method, "restore_alone": {"calibration": _acc(rest.manifest.calibration.accuracy),
                                                 "holdout": _acc(rest.manifest.calibration.holdout_accuracy)},
            "segment_after_restore": {"calibration": _acc(seg.manifest.calibration.accuracy),
                                      "holdout": _acc(seg.manifest.calibration.holdout_accuracy)},
            "int8_restore_and_segment_holdout": _acc(both), "holdout_seconds_one_pass": seconds,
            "onnx": [str(rest.onnx_path), str(seg.onnx_path)]}


def part_speed(root: Path, graphs: dict[str, Path], repeats: int) -> dict:
    from cp3rt.engines.ort import OrtEngine

    engines = {k: OrtEngine(v) for k, v in graphs.items()}
    rng = np.random.default_rng(0)
    times: dict[str, list[float]] = {k: [] for k in graphs}
    for k, e in engines.items():
        nchan = e.inputs[0].shape[1]
        e.infer(rng.standard_normal((8, nchan, 224, 224)).astype(np.float32))  # warm-up
    for _ in range(repeats):
        for k, e in engines.items():
            x = rng.standard_normal((8, e.inputs[0].shape[1], 224, 224)).astype(np.float32)
            t0 = time.perf_counter()
            e.infer(x)
            times[k].append(time.perf_counter() - t0)
    base = times[next(iter(times))]  # the shipped fp32 graph, timed right before the others
    return {k: {"tiles_per_s_median": round(8 / statistics.median(v), 2),
                "tiles_per_s_range": [round(8 / max(v), 2), round(8 / min(v), 2)],
                # per round: shipped fp32 seconds / this graph's seconds (same moment, same load)
                "speedup_vs_fp32_shipped_median_of_rounds": round(statistics.median(
                    b / t for b, t in zip(base, v)), 2),
                "seconds": [round(t, 4) for t in v]} for k, v in times.items()}


def _folded(spec: str, root: Path) -> Path:
    from cp3rt.artefacts import resolve_model
    from cp3rt.export.int8 import folded_fp32_graph

    src = resolve_model(spec, precision="fp32", backend="ort")
    path = root / f"{spec}.folded.onnx"
    path.write_bytes(folded_fp32_graph(src.path, src.manifest))
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default="minmax,entropy,percentile")
    ap.add_argument("--chain-method", default="percentile")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--skip", default="", help="comma list of parts to skip: methods,chain,speed")
    ap.add_argument("--out", default="int8")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    env = fingerprint()
    result: dict = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                    "environment": env}
    with tempfile.TemporaryDirectory() as tmp:
        root, out = Path(tmp), Path(tmp) / "engines"
        if "methods" not in skip:
            result["methods"] = part_methods(root, out, args.methods.split(","))
        elif "chain" not in skip:
            _split(root, "ctc_gowt1_nuclei")
        if "chain" not in skip:
            result["chain"] = part_chain(root, out, args.chain_method)
            print(json.dumps(result["chain"]), flush=True)
        if "speed" not in skip:
            from cp3rt.artefacts import resolve_model

            speed = {}
            for spec, chain_name in ((SEG, "segment_chain"), (RESTORE, "restore_chain")):
                graphs = {"fp32 shipped": resolve_model(spec, precision="fp32", backend="ort").path,
                          "fp32 folded": _folded(spec, root)}
                for act in ("u8", "s8"):
                    graphs[f"int8 {act}"] = _int8_for_speed(spec, act, root, out)
                if spec == RESTORE:  # the default keeps Gemm/Add/Mul fp32; all-int8 for comparison
                    graphs["int8 u8 keep none"] = _int8_for_speed(spec, "u8", root, out, keep=())
                speed[spec] = part_speed(root, graphs, args.repeats)
                print(spec, json.dumps(speed[spec]), flush=True)
            result["speed_batch8_224"] = speed
    result["load_average_at_end"] = os.getloadavg()
    (RESULTS / f"{args.out}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS / (args.out + '.json')}")


def _int8_for_speed(spec: str, act: str, root: Path, out: Path, keep: tuple[str, ...] | None = None) -> Path:
    """An int8 graph of ``spec`` (calibrated on GOWT1's calibration frames; speed does not
    depend on the ranges)."""
    from cp3rt.calibrate import Int8Config, export_int8

    calib = root / "ctc_gowt1_nuclei" / "calib"
    if not calib.is_dir():
        _split(root, "ctc_gowt1_nuclei")
    res = export_int8(Int8Config(spec, calib, out, activations=act, min_ap50=0, min_ap75=0, diameter=60.0,
                                 segment_with=SEG if spec == RESTORE else None,
                                 keep_fp32=keep, name=f"speed_{spec}_{act}{'' if keep is None else '_all'}"))
    return res.onnx_path


if __name__ == "__main__":
    main()
