"""The README quick start's diameter: AP of the shipped starter nets on the shipped sample
(DSB2018 nuclei, 125 ground-truth objects, median diameter ~23.7 px) over a range of diameters,
with and without the shipped denoiser, and with the size model's estimate (no diameter).

Why a benchmark: the quick start passes ``--diameter 17`` although the true diameter is ~24;
this measures what each choice gives, so the README can say it (results/quickstart_diameter.md).

    python benchmarks/bench_quickstart_diameter.py --out benchmarks/results/quickstart_diameter.md
"""

from __future__ import annotations

import argparse
import importlib.resources
from pathlib import Path

import numpy as np

from cp3rt.runtime.io.read import read_image, read_masks
from cp3rt.runtime.pipeline import Pipeline
from cp3rt.runtime.quality.metrics import average_precision, diameters

from train_fingerprint import fingerprint

THRESHOLDS = (0.5, 0.75, 0.9)
DIAMETERS: tuple[float | None, ...] = (14.0, 17.0, 20.0, 24.0, 28.0, None)  # None: the size model


def _sample() -> tuple[np.ndarray, np.ndarray]:
    root = importlib.resources.files("cp3rt") / "assets" / "samples"
    return np.asarray(read_image(Path(str(root / "dsb2018_nuclei.tif")))), np.asarray(
        read_masks(Path(str(root / "dsb2018_nuclei_masks.tif"))))


def measure() -> list[dict]:
    image, truth = _sample()
    rows = []
    for restore in (None, "cp3rt_denoise_nuclei"):
        with Pipeline(segment="cp3rt_nuclei", restore=restore, backend="ort") as pipe:
            for diameter in DIAMETERS:
                res = pipe.run(image, diameter=diameter, channels=(0, 0))
                ap = average_precision([truth], [res.masks], THRESHOLDS)[0][0]
                rows.append({"restore": restore or "-", "given": diameter, "used": float(res.diameter),
                             "objects": int(res.n_objects), "ap": [float(v) for v in ap]})
                print(rows[-1], flush=True)
    return rows


def render(rows: list[dict], env: dict) -> str:
    lines = ["# Quick start diameter: starter nets on the shipped sample", "",
             f"- date (UTC): {env['date_utc']}", f"- command: `{env['command']}`",
             f"- machine: {env['cpu']}, {env['cores']} cores, load {env['load_average']}",
             f"- python {env['python']}, numpy {env['numpy']}, onnxruntime {env['onnxruntime']}, "
             f"numba {env['numba']}; tcmalloc preloaded: {env['tcmalloc_preloaded']}", "",
             "Ground truth: `dsb2018_nuclei_masks.tif`, 125 nuclei, median diameter "
             f"{diameters(_sample()[1]):.1f} px. Backend onnxruntime CPU (fp32).", "",
             "| restore | --diameter | used px | objects | AP@0.5 | AP@0.75 | AP@0.9 |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        given = "(size model)" if r["given"] is None else f"{r['given']:g}"
        lines.append(f"| {r['restore']} | {given} | {r['used']:.1f} | {r['objects']} | "
                     + " | ".join(f"{v:.3f}" for v in r["ap"]) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    rows = measure()
    args.out.write_text(render(rows, fingerprint()))


if __name__ == "__main__":
    main()
