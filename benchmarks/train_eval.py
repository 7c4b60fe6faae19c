"""AP of a segmentation model on the held-out nuclei sets (for the model card).

    python benchmarks/train_eval.py MODEL [MODEL2] --work /tmp/cp3rt_starters \
        --json benchmarks/results/train_eval.json

MODEL is a shipped ``.onnx`` (run with onnxruntime) or a weight file (run with the torch
backend). Each image is segmented by the cp3rt Pipeline with ``diameter`` = the median
ground-truth diameter of that image (the usual Cellpose test protocol), channels (0, 0).
Reports the mean AP at IoU 0.5/0.75/0.9 over the images of each set; with MODEL2 also the
AP of MODEL2's masks against MODEL's (agreement of two exports of one net).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from cp3rt.runtime.io.read import read_image, read_masks
from cp3rt.runtime.pipeline import Pipeline
from cp3rt.runtime.quality.metrics import average_precision, diameters

from train_fingerprint import fingerprint

THRESHOLDS = (0.5, 0.75, 0.9)
SETS = ("ctc_sim_seq01", "ctc_gowt1", "dsb2018")


def _backend(model: str) -> str:
    return "ort" if model.endswith(".onnx") else "torch"


def segment_set(model: str, folder: Path, cache: Path) -> tuple[list[np.ndarray], list[np.ndarray]]:
    truths, preds = [], []
    with Pipeline(segment=model, backend=_backend(model), cache_dir=cache) as pipe:
        for img_path in sorted((folder / "images").glob("*.tif")):
            truth = np.asarray(read_masks(folder / "masks" / img_path.name))
            res = pipe.run(read_image(img_path), diameter=diameters(truth), channels=(0, 0))
            truths.append(truth)
            preds.append(res.masks)
    return truths, preds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    cache = args.work / "cache"
    report: dict = {"thresholds": THRESHOLDS, "models": args.models, "sets": {}}
    for name in SETS:
        folder = args.work / "heldout" / name
        t0 = time.perf_counter()
        truths, preds = segment_set(args.models[0], folder, cache)
        ap_all = average_precision(truths, preds, THRESHOLDS)[0]
        entry = {"n_images": len(truths), "n_objects": int(sum(t.max() for t in truths)),
                 "mean_ap": [round(float(v), 4) for v in np.nanmean(ap_all, axis=0)],
                 "seconds": round(time.perf_counter() - t0, 1)}
        if len(args.models) > 1:
            _, other = segment_set(args.models[1], folder, cache)
            agree = average_precision(preds, other, THRESHOLDS)[0]
            entry["agreement_ap_model2_vs_model1"] = [
                round(float(v), 4) for v in np.nanmean(agree, axis=0)]
        report["sets"][name] = entry
        print(name, entry, flush=True)
    report["environment"] = fingerprint()
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
