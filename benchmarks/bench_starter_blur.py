"""How wide does a segmenter draw blurred nuclei? Mask diameter / true diameter vs optical blur (issue 20).

    python benchmarks/bench_starter_blur.py --model old=/tmp/old/cp3rt_nuclei.onnx --model new=cp3rt_nuclei \
        --out benchmarks/results/starter_blur.md

Why: the size model's estimate is the median diameter of the net's own masks (§2.4), so a net
that draws blurred nuclei too wide makes the estimate too large by the same factor. Each model
segments, at the true median diameter, procedural images (``cp3rt.train.synth``, seed 777: not
a training seed) at PSF sigma 1-4 px without and with an out-of-focus glow, and the DSB2018
sample; reported: median diameter of its masks / of the true labels (1.0 = right size) and
AP@0.5/0.75/0.9. ``--model NAME=PATH|ZOO_NAME`` (ONNX or zoo name, onnxruntime CPU). The old
starter is in git: ``git show d0b56e2:src/cp3rt/assets/models/cp3rt_nuclei.onnx`` (and its
``.onnx.json``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import tifffile

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
DATA = HERE.parent / ".." / "shared" / "data"
SEED, PER_CELL = 777, 3
PSFS = (1.0, 2.0, 3.0, 4.0)
GLOWS = (0.0, 0.4)
THRESHOLDS = (0.5, 0.75, 0.9)


def _scenes():
    from cp3rt.train.synth import SynthNuclei, synth_nuclei

    rng = np.random.default_rng(SEED)
    for psf in PSFS:
        for glow in GLOWS:
            settings = SynthNuclei(shape=(320, 320), diameter=(18.0, 28.0), photons=(300.0, 300.0),
                                   psf_sigma=(psf, psf), background=(0.1, 0.1), halo=(glow, glow),
                                   halo_sigma=(3.0, 3.0))
            yield f"synthetic PSF {psf:g} px, glow {glow:g}", [synth_nuclei(rng, settings) for _ in range(PER_CELL)]
    name = "stardist_dsb2018_nuclei"
    pairs = [(tifffile.imread(p), tifffile.imread(DATA / name / "masks" / p.name))
             for p in sorted((DATA / name / "images").glob("*.tif"))]
    yield "DSB2018 sample (real)", pairs


def measure(model: str) -> list[dict]:
    from cp3rt import Pipeline
    from cp3rt.runtime.quality.metrics import average_precision, diameters

    rows = []
    with Pipeline(segment=model, backend="ort") as pipe:
        for scene, pairs in _scenes():
            ratios, aps = [], []
            for img, truth in pairs:
                d = diameters(truth)
                masks = pipe.run(img.astype(np.float32), diameter=d).masks
                ratios.append(diameters(masks) / d)
                aps.append(average_precision(truth, masks.astype(np.int32), THRESHOLDS)[0])
            rows.append({"scene": scene, "images": len(pairs), "mask_over_true_diameter": round(float(np.mean(ratios)), 3),
                         "ap": [round(float(v), 3) for v in np.mean(aps, axis=0)]})
            print(model, rows[-1], flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", required=True, help="NAME=PATH or NAME=ZOO_NAME")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    from train_fingerprint import fingerprint

    models = dict(m.split("=", 1) for m in args.model)
    report = {"models": models, "results": {name: measure(path) for name, path in models.items()},
              "environment": fingerprint()}
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    env = report["environment"]
    names = list(models)
    md = ["# Starter segmenter vs optical blur: mask diameter / true diameter (issue 20)", "",
          f"Date (UTC): {env['date_utc']}. Command: `{env['command']}`.", "",
          f"Environment: {env['cpu']}, {env['cores']} cores (load {env['load_average'][0]:.1f}), Python {env['python']}, "
          f"numpy {env['numpy']}, onnxruntime {env['onnxruntime']}. Models: "
          + ", ".join(f"{k} = `{v}`" for k, v in models.items()) + ".", "",
          "Each model runs at the true median diameter (onnxruntime CPU). Ratio 1.0 = masks of the right size; "
          f"synthetic rows: {PER_CELL} images each (320 x 320, diameters 18-28 px, seed {SEED}).", "",
          "| scene | " + " | ".join(f"{n}: ratio | {n}: AP@0.5 / 0.75 / 0.9" for n in names) + " |",
          "|---|" + "---|---|" * len(names)]
    for k, row in enumerate(report["results"][names[0]]):
        cells = []
        for n in names:
            r = report["results"][n][k]
            cells.append(f"{r['mask_over_true_diameter']:.3f} | " + " / ".join(f"{v:.3f}" for v in r["ap"]))
        md.append(f"| {row['scene']} | " + " | ".join(cells) + " |")
    args.out.write_text("\n".join(md) + "\n")


if __name__ == "__main__":
    main()
