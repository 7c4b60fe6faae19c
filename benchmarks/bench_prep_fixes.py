"""Two reference defects in the optional pre-normalisation steps, fixed by default
(docs/deviations.md rows 12-13), measured against the reference's behaviour (``reference_bugs``):

1. smoothing (``smooth_radius``): a unit impulse on planes of several shapes -> where its
   centre of mass lands and the Gaussian's sigma in Y and X (asked: 2 px, impulse at 40, 60);
2. tiled normalisation (``tile_norm_blocksize``): the shared data's real images (DSB2018 nuclei,
   CTC MSC cells) times a left-right illumination ramp (x1 -> x20) -> how equal the normalised
   objects are across the ramp (coefficient of variation of the objects' median normalised
   intensity; ground-truth masks) and how smooth the normalised background is (the 99th
   percentile of |step| between adjacent columns of the column medians, and adjacent rows of
   the row medians, outside objects); the ramp runs along X, then along Y.

    python benchmarks/bench_prep_fixes.py --out benchmarks/results/prep_fixes.md
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import tifffile

from cp3rt.runtime.prep.filters import smooth_sharpen
from cp3rt.runtime.prep.normalize import NormalizeConfig, normalize_image

from train_fingerprint import fingerprint

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
SHAPES = ((256, 256), (256, 512), (512, 256), (255, 257))
SETS = (("stardist_dsb2018_nuclei", 64), ("ctc_msc_cells", 128))
RAMP = (1.0, 20.0)


def impulse_rows() -> list[str]:
    rows = []
    for ly, lx in SHAPES:
        img = np.zeros((1, 1, ly, lx))
        img[0, 0, 40, 60] = 1.0
        yy, xx = np.mgrid[:ly, :lx]
        for reference in (True, False):
            out = smooth_sharpen(img, 2.0, 0.0, reference=reference)[0, 0].astype(np.float64)
            w = out / out.sum()
            my, mx = (w * yy).sum(), (w * xx).sum()
            sy, sx = np.sqrt((w * (yy - my) ** 2).sum()), np.sqrt((w * (xx - mx) ** 2).sum())
            rows.append(f"| {ly}x{lx} | {'reference' if reference else 'cp3rt'} | ({my:.2f}, {mx:.2f}) | "
                        f"{sy:.2f} | {sx:.2f} |")
    return rows


def _tile_metrics(img: np.ndarray, masks: np.ndarray, blocksize: int, reference: bool) -> tuple[float, float]:
    norm = normalize_image(img[None], NormalizeConfig(tile_norm_blocksize=blocksize, reference_bugs=reference))[0]
    labels = np.unique(masks)[1:]
    medians = np.array([np.median(norm[masks == k]) for k in labels])
    cv = float(medians.std() / medians.mean())
    background = np.where(masks == 0, norm, np.nan)
    steps = [np.abs(np.diff(np.nanmedian(background, axis=a))) for a in (0, 1)]  # along X, along Y
    step = float(np.nanpercentile(np.concatenate(steps), 99))
    return cv, step


def tile_rows() -> list[str]:
    rows = []
    for name, blocksize in SETS:
        for path in sorted((DATA / name / "images").glob("*.tif"))[:3]:
            img = tifffile.imread(path).astype(np.float32)
            if img.ndim == 3:
                img = img[..., 0] if img.shape[-1] <= 4 else img[0]
            masks = tifffile.imread(DATA / name / "masks" / path.name)
            for axis in ("X", "Y"):
                ramp = np.linspace(*RAMP, img.shape[1 if axis == "X" else 0], dtype=np.float32)
                x = img * (ramp[None, :] if axis == "X" else ramp[:, None])
                (cv_r, st_r), (cv_c, st_c) = (_tile_metrics(x, masks, blocksize, r) for r in (True, False))
                rows.append(f"| {name}/{path.name} {img.shape[0]}x{img.shape[1]} | {axis} | {blocksize} | "
                            f"{cv_r:.3f} | {cv_c:.3f} | {st_r:.4f} | {st_c:.4f} |")
                print(rows[-1], flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    imp, tiles = impulse_rows(), tile_rows()
    env = fingerprint()
    text = "\n".join([
        "# Pre-normalisation fixes: smoothing kernel and tiled normalisation", "",
        f"- date (UTC): {env['date_utc']}", f"- command: `{env['command']}`",
        f"- machine: {env['cpu']}, {env['cores']} cores; python {env['python']}, numpy {env['numpy']}", "",
        "## 1. Smoothing a unit impulse at (40, 60), smooth_radius = 2 px", "",
        "| plane | kernel | centre of mass (y, x) | sigma Y | sigma X |", "|---|---|---|---|---|", *imp, "",
        f"## 2. Tiled normalisation of real images times an illumination ramp x{RAMP[0]:g} -> x{RAMP[1]:g}", "",
        "CV = coefficient of variation of the objects' median normalised intensity (lower: objects "
        "equalised across the ramp); step = 99th percentile of |change| between adjacent columns of "
        "the background's column medians and adjacent rows of its row medians (lower: no block-wide "
        "steps).", "",
        "| image | ramp along | blocksize | CV reference | CV cp3rt | step reference | step cp3rt |",
        "|---|---|---|---|---|---|---|", *tiles, ""])
    args.out.write_text(text)


if __name__ == "__main__":
    main()
