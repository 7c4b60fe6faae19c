"""Train the size model (style -> diameter, §2.4) of the starter ``cp3rt_nuclei`` on its own
training set, and measure the diameter estimate on the held-out nuclei sets (issue 20).

    python benchmarks/train_data.py --work /tmp/cp3rt_size --n-synth 150 --n-wide 300  # the starter's data
    LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4 OMP_NUM_THREADS=1 \\
        .venv/bin/python benchmarks/train_size.py --work /tmp/cp3rt_size

Method (Cellpose's ``train_size``, spec §2.4): ``--epochs`` (10) passes over the 600 training
images of the starter (ctc_sim_nuclei sequence 02 + 150 procedural + 300 wide-appearance
procedural images, MODEL_CARD.md); each
pass draws per image a zoom ``s`` uniform in [0.5, 1.5] (Cellpose's ``scale_range=1``), a random
flip / 90-degree turn and a crop of at most 240 x 240 (one 128 x 128 tile at the net's scale:
Cellpose crops 512 x 512, too slow for the shared 2-core machine); the style comes from the same path the
estimate uses at run time (1-99 % normalisation, the net at ``diam_mean / diam_labels``, i.e. what
``Pipeline.run`` without a diameter computes first), the target is
``ln(s * d) - ln(diam_mean)`` with ``d`` the median equivalent-circle diameter of the image's
labels. Ridge regression on mean-centred styles, lambda 1: ``A = (X^T X + I)^-1 X^T (y - ymean)``.
The file is Cellpose's format (a pickled dict A, smean, diam_mean, ymean in an .npy), read by
``cp3rt.zoo.SizeModel``. Reference difference: Cellpose takes the training styles straight from
the net on 512 x 512 crops (zero padded); here they go through the tiled inference path so that
training and run time see the same numbers.

Evaluation (held out only: every 4th frame of ctc_sim_nuclei sequence 01, ctc_gowt1_nuclei, the DSB2018 sample;
never the training images): ``Pipeline("cp3rt_nuclei").run(image)`` without a diameter = the
two-step estimate (style -> d_style, segment at that scale, median mask diameter), compared to
the ground truth's median diameter computed the same way, and AP of the resulting masks.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

import numpy as np
import tifffile

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
DATA = HERE.parent / ".." / "shared" / "data"
MODELS = HERE.parent / "src" / "cp3rt" / "assets" / "models"
RESULTS = HERE / "results"
NAME = "train_size_cp3rt_nuclei"
HELD_OUT = {"ctc_sim_nuclei seq01": ("ctc_sim_nuclei", "seq01_"),
            "ctc_gowt1_nuclei": ("ctc_gowt1_nuclei", ""), "stardist_dsb2018_nuclei": ("stardist_dsb2018_nuclei", "")}
STRIDE = {"ctc_sim_nuclei seq01": 4}  # 17 of its 65 near-duplicate frames: CPU time
CROP, LAMBDA, SEED = 240, 1.0, 0  # 240 * 17 / 32.9 = 124 px at net scale: one 128 x 128 tile per style


def _style_fn(pipe):
    from cp3rt.runtime.config import RunConfig
    from cp3rt.runtime.prep.axes import to_cyx
    from cp3rt.runtime.prep.normalize import normalize_image
    from cp3rt.runtime.stages.segment import rescale_for, run_segment_net

    seg, cfg = pipe.segment_net, RunConfig()

    def style(img: np.ndarray) -> np.ndarray:
        x = normalize_image(to_cyx(img, nchan=seg.nchan), cfg.normalize)
        return run_segment_net(x, seg, rescale=rescale_for(None, seg), resample=False, tiles=cfg.tiles).style

    return style


def _augment(rng, img: np.ndarray) -> tuple[np.ndarray, float]:
    from cp3rt.runtime.prep.resize import resize_bilinear

    s = float(rng.uniform(0.5, 1.5))
    ly, lx = img.shape
    x = resize_bilinear(img.astype(np.float32), (max(16, round(ly * s)), max(16, round(lx * s))))
    x = np.rot90(x, int(rng.integers(4)))
    if rng.random() < 0.5:
        x = x[:, ::-1]
    y0 = int(rng.integers(max(1, x.shape[0] - CROP + 1)))
    x0 = int(rng.integers(max(1, x.shape[1] - CROP + 1)))
    return np.ascontiguousarray(x[y0:y0 + CROP, x0:x0 + CROP]), s


def train(work: Path, epochs: int) -> tuple[dict, dict]:
    from cp3rt import Pipeline
    from cp3rt.runtime.quality.labels import diameters

    images = sorted((work / "train" / "images").glob("*.tif"))
    diams = np.array([diameters(tifffile.imread(work / "train" / "masks" / p.name)) for p in images])
    rng = np.random.default_rng(SEED)
    styles, targets = [], []
    t0 = time.perf_counter()
    with Pipeline("cp3rt_nuclei", backend="ort") as pipe:
        style, diam_mean = _style_fn(pipe), pipe.segment_net.diam_mean
        raw = [tifffile.imread(p) for p in images]
        for epoch in range(epochs):
            for img, d in zip(raw, diams):
                x, s = _augment(rng, img)
                styles.append(style(x))
                targets.append(np.log(s * d) - np.log(diam_mean))
            print(f"epoch {epoch + 1}/{epochs}: {len(styles)} styles, {time.perf_counter() - t0:.0f} s", flush=True)
    S, y = np.asarray(styles, np.float64), np.asarray(targets, np.float64)
    smean, ymean = S.mean(0), y.mean()
    X = S - smean
    A = np.linalg.solve(X.T @ X + LAMBDA * np.eye(X.shape[1]), X.T @ (y - ymean))
    fit = X @ A + ymean
    model = {"A": A.astype(np.float32), "smean": smean.astype(np.float32), "diam_mean": float(diam_mean),
             "ymean": float(ymean)}
    info = {"images": len(images), "epochs": epochs, "styles": len(styles), "lambda": LAMBDA,
            "train_seconds": round(time.perf_counter() - t0, 1),
            "train_diameter_median_px": round(float(np.median(diams)), 2),
            "train_log_target_rmse": round(float(np.sqrt(np.mean((fit - y) ** 2))), 4),
            "train_log_target_std": round(float(y.std()), 4)}
    return model, info


def save(model: dict, path: Path) -> str:
    import hashlib

    buf = io.BytesIO()
    np.save(buf, np.array(model, dtype=object), allow_pickle=True)
    path.write_bytes(buf.getvalue())
    return hashlib.sha256(buf.getvalue()).hexdigest()


def evaluate() -> dict:
    from cp3rt import Pipeline
    from cp3rt.runtime.quality.labels import diameters
    from cp3rt.runtime.quality.matching import average_precision

    out = {}
    with Pipeline("cp3rt_nuclei", backend="ort") as pipe:
        for name, (folder, prefix) in HELD_OUT.items():
            rows = []
            for p in sorted((DATA / folder / "images").glob(f"{prefix}*.tif"))[::STRIDE.get(name, 1)]:
                gt = tifffile.imread(DATA / folder / "masks" / p.name)
                res = pipe.run(tifffile.imread(p))
                ap = average_precision(gt, res.masks.astype(np.int32), (0.5, 0.75, 0.9))[0]
                rows.append({"image": p.name, "gt_diameter": round(diameters(gt), 2),
                             "estimate": round(res.diameter, 2), "ap": [round(float(v), 3) for v in ap]})
            ratio = np.array([r["estimate"] / r["gt_diameter"] for r in rows])
            out[name] = {"images": len(rows), "median_ratio": round(float(np.median(ratio)), 3),
                         "worst_ratio": round(float(ratio[np.argmax(np.abs(ratio - 1))]), 3),
                         "within_15pct": int((np.abs(ratio - 1) <= 0.15).sum()),
                         "mean_ap": [round(float(np.mean([r["ap"][k] for r in rows])), 3) for k in range(3)],
                         "per_image": rows}
            print(name, {k: v for k, v in out[name].items() if k != "per_image"}, flush=True)
    return out


def write(report: dict) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{NAME}.json").write_text(json.dumps(report, indent=2) + "\n")
    env, tr = report["environment"], report["training"]
    md = [f"# {NAME}: the size model of cp3rt_nuclei (style -> diameter, §2.4)", "",
          f"Date (UTC): {env['date_utc']}. Command: `{env['command']}`.", "",
          f"Environment: {env['cpu']}, {env['cores']} cores (shared, load {env['load_average'][0]:.1f}), "
          f"Python {env['python']}, numpy {env['numpy']}, onnxruntime {env['onnxruntime']}; "
          f"tcmalloc preloaded: {env['tcmalloc_preloaded']}; OMP_NUM_THREADS={env['OMP_NUM_THREADS']}.", "",
          f"Training (the starter's training set, method in the script's docstring): {tr['images']} images x "
          f"{tr['epochs']} epochs = {tr['styles']} styles, ridge lambda {tr['lambda']}, {tr['train_seconds']} s; "
          f"fit RMSE of ln(diameter) {tr['train_log_target_rmse']} (target std {tr['train_log_target_std']}). "
          f"File `{report['file']}`, sha256 `{report['sha256']}`.", "",
          "## Held-out estimate (`Pipeline('cp3rt_nuclei').run(image)`, no diameter) vs the ground truth's "
          "median diameter", "",
          "| set | images | median estimate / GT | worst | within 15 % | mean AP@0.5 / 0.75 / 0.9 |",
          "|---|---|---|---|---|---|"]
    for name, r in report["held_out"].items():
        md.append(f"| {name} | {r['images']} | {r['median_ratio']:.3f} | {r['worst_ratio']:.3f} | "
                  f"{r['within_15pct']}/{r['images']} | " + " / ".join(f"{v:.3f}" for v in r["mean_ap"]) + " |")
    (RESULTS / f"{NAME}.md").write_text("\n".join(md) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, required=True, help="folder made by benchmarks/train_data.py")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--eval-only", action="store_true", help="measure the shipped size model only")
    args = ap.parse_args()
    from train_fingerprint import fingerprint

    path = MODELS / "cp3rt_nuclei_size.npy"
    report = {"file": f"src/cp3rt/assets/models/{path.name}"}
    if args.eval_only:
        import hashlib

        prev = json.loads((RESULTS / f"{NAME}.json").read_text())
        report.update(training=prev["training"], sha256=hashlib.sha256(path.read_bytes()).hexdigest())
    else:
        model, report["training"] = train(args.work, args.epochs)
        report["sha256"] = save(model, path)
    report["held_out"] = evaluate()
    report["environment"] = fingerprint()
    write(report)


if __name__ == "__main__":
    main()
