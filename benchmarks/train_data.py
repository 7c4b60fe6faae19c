"""Build the training/evaluation folders for the starter models (outside the repository).

    python benchmarks/train_data.py --work /tmp/cp3rt_starters [--n-synth 150]

Writes ``WORK/train/{images,masks}``: the 150 frames of ctc_sim_nuclei sequence 02 (symlinks)
plus ``--n-synth`` procedural nucleus images (cp3rt.train.synth, seeded), plus ``--n-wide``
procedural images of the wider appearance range (PSF blur up to 4 px, out-of-focus glow,
brighter backgrounds: the fine-tuning set of issue 20), and
``WORK/heldout/<set>/{images,masks}`` symlinks: ctc_sim_nuclei sequence 01 (65 frames, the
held-out sequence), ctc_gowt1_nuclei (8) and stardist_dsb2018_nuclei (1). The data itself stays
in shared/data; nothing is copied into the repository.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import tifffile

from cp3rt.train.synth import SynthNuclei, synth_nuclei

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
SYNTH = SynthNuclei(shape=(320, 320), diameter=(14.0, 30.0), photons=(30.0, 2000.0))
SYNTH_SEED = 20260
# Issue 20: the first starter saw only sharp edges (PSF <= 1.6 px) and drew its masks out to the
# end of any wider blur or glow (1.36x the true diameter on the DSB2018 sample). These images
# cover widefield looks: blur up to 4 px, a glow of up to 0.6x the signal, brighter backgrounds.
SYNTH_WIDE = SynthNuclei(shape=(320, 320), diameter=(14.0, 34.0), photons=(30.0, 2000.0),
                         psf_sigma=(0.6, 4.0), background=(0.05, 0.4), halo=(0.0, 0.6),
                         halo_sigma=(2.0, 4.0), density=0.4)
SYNTH_WIDE_SEED = 20261


def _link(src: Path, dst: Path) -> None:
    if dst.is_symlink() or dst.exists():
        dst.unlink()
    os.symlink(src.resolve(), dst)


def _link_set(name: str, prefix: str, out: Path) -> int:
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    n = 0
    for img in sorted((DATA / name / "images").glob(f"{prefix}*.tif")):
        _link(img, out / "images" / img.name)
        _link(DATA / name / "masks" / img.name, out / "masks" / img.name)
        n += 1
    return n


def _write_synth(train: Path, prefix: str, n: int, settings: SynthNuclei, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for i in range(n):
        img, msk = synth_nuclei(rng, settings)
        tifffile.imwrite(train / "images" / f"{prefix}_{i:04d}.tif", img.astype(np.float32), compression="zlib")
        tifffile.imwrite(train / "masks" / f"{prefix}_{i:04d}.tif", msk, compression="zlib")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--n-synth", type=int, default=150)
    ap.add_argument("--n-wide", type=int, default=0, help="wide-appearance procedural images (issue 20)")
    args = ap.parse_args()
    train = args.work / "train"
    n_real = _link_set("ctc_sim_nuclei", "seq02_", train)
    _write_synth(train, "synth", args.n_synth, SYNTH, SYNTH_SEED)
    _write_synth(train, "wide", args.n_wide, SYNTH_WIDE, SYNTH_WIDE_SEED)
    held = args.work / "heldout"
    counts = {
        "ctc_sim_seq01": _link_set("ctc_sim_nuclei", "seq01_", held / "ctc_sim_seq01"),
        "ctc_gowt1": _link_set("ctc_gowt1_nuclei", "", held / "ctc_gowt1"),
        "dsb2018": _link_set("stardist_dsb2018_nuclei", "", held / "dsb2018"),
    }
    print(f"train: {n_real} ctc_sim seq02 + {args.n_synth} synthetic + {args.n_wide} wide; held out: {counts}")


if __name__ == "__main__":
    main()
