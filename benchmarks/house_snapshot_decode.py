"""Decoded comparison of the house-snapshot jobs whose bytes changed (``restore``, ``plate``,
``eval``, ``blocks``, ``2d_folder``): run them with two checkouts of cp3rt on the same inputs and
compare what the files hold (arrays with numpy, TIFF tags, the eval scores), not their bytes.
Why: a file's bytes change with metadata or encoder settings; whether its pixels changed is
what decides if a reorganisation changed behaviour (results/house_snapshot_review.md).

    git worktree add /tmp/before 0f8ecd8
    python benchmarks/house_snapshot_decode.py --before-src /tmp/before/src --after-src src

Each checkout runs in its own process (``--job SRC WORK``); the jobs come from house_snapshot.py.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
JOBS = ("restore", "plate", "eval", "blocks", "2d_folder")


def run_jobs(src: str, work: Path) -> None:
    """In this process, with cp3rt imported from ``src``: the chosen snapshot jobs into ``work``."""
    sys.path[:0] = [src, str(HERE)]
    import house_snapshot as H

    from cp3rt.cli.app import main

    shutil.rmtree(work, ignore_errors=True)
    img = H._sample()
    dirs = H._write_inputs(work, img)
    plate = work / "in" / "plate.zarr"
    H._write_plate(plate, img)
    (work / "out" / "eval").mkdir(parents=True)
    for name, argv in H._jobs(dirs, work / "out", plate):
        if name in JOBS and main(argv) != 0:
            raise SystemExit(f"{src}: job {name} failed")


def _same(a, b) -> str:  # noqa: ANN001
    import numpy as np

    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.dtype != b.dtype:
        return f"differ: {a.shape} {a.dtype} vs {b.shape} {b.dtype}"
    return "equal" if np.array_equal(a, b) else f"differ: max |diff| {np.abs(a.astype(float) - b.astype(float)).max():g}"


def compare(before: Path, after: Path) -> list[str]:
    import tifffile
    import zarr

    b, a = before / "out", after / "out"
    lines = []
    for name in ("restore/d_restored.tif", "restore/d_cp_masks.tif", "blocks/big_cp_masks.tif",
                 "2d_folder/a_cp_masks.tif", "2d_folder/b_cp_masks.tif"):
        lines.append(f"{name}: {_same(tifffile.imread(b / name), tifffile.imread(a / name))}")
        with tifffile.TiffFile(b / name) as t1, tifffile.TiffFile(a / name) as t2:
            tags = [{k: v.value for k, v in t.pages[0].tags.items() if k not in (273, 279)} for t in (t1, t2)]
        lines.append(f"{name} TIFF tags (offsets aside): {'equal' if tags[0] == tags[1] else tags}")
    for well in ("A/1/0", "A/2/0"):  # before: into the input plate; after: the --out plate store
        got = [zarr.open_group(str(p), mode="r")["0"][...] for p in
               (before / "in" / "plate.zarr" / well / "labels" / "cp3rt",
                a / "plate" / "plate.zarr" / well / "labels" / "cp3rt")]
        lines.append(f"plate {well} labels: {_same(*got)}")
    scores = [json.loads((d / "eval" / "scores.json").read_text())["images"][0] for d in (b, a)]
    for key in ("n_true", "n_pred", "ap", "tp", "fp", "fn"):
        lines.append(f"eval {key}: {scores[0][key]} -> {scores[1][key]}")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before-src")
    ap.add_argument("--after-src")
    ap.add_argument("--work", type=Path, default=Path("/tmp/cp3rt_snapshot_decode"))
    ap.add_argument("--job", nargs=2, metavar=("SRC", "WORK"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.job:
        return run_jobs(args.job[0], Path(args.job[1]))
    for side, src in (("before", args.before_src), ("after", args.after_src)):
        subprocess.run([sys.executable, __file__, "--job", str(Path(src).resolve()), str(args.work / side)],
                       check=True, capture_output=True, text=True)
    print("\n".join(compare(args.work / "before", args.work / "after")))


if __name__ == "__main__":
    main()
