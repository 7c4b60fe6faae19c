"""Behaviour snapshot: run a fixed set of jobs and record the sha256 of every file they write.

Why: a reorganisation of the runtime must not change one output byte. Run this before and
after a move, then compare the two manifests (``--compare``). The jobs go through the CLI
(``cp3rt.cli.app.main``, in this process so numba compiles once) with the shipped starter
models on ONNX Runtime CPU, on crops of the shipped sample image:

- ``2d_folder``      two 2-D images (the streaming batch path), masks + flows + seg.npy + overlay
- ``2d_single``      one 2-D image (the plain batch path)
- ``restore``        denoise -> segment, restored image written too
- ``volume_3d``      an 8-plane stack with --do-3d
- ``volume_stitch``  the same stack, planes stitched by IoU
- ``blocks``         a TIFF segmented in 128-px blocks (halo, seam merge, BigTIFF labels)
- ``plate``          a 2-well OME-Zarr HCS plate (labels into the plate, wells CSV); needs zarr
- ``degrade`` / ``eval``  the quality tools: degrade two crops, score the block-wise masks

The inputs are written by the script itself (deterministic crops), so the manifest lists
outputs only. Protocol: one run per job, run twice on one commit to check the outputs are
deterministic before comparing two commits; about 1 minute on 2 cores.

    python benchmarks/house_snapshot.py --out benchmarks/results/house_snapshot_before.json
    python benchmarks/house_snapshot.py --out after.json --compare before.json
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.resources
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile

MODELS = Path(str(importlib.resources.files("cp3rt"))) / "assets" / "models"
SEGMENT = str(MODELS / "cp3rt_nuclei.onnx")
RESTORE = str(MODELS / "cp3rt_denoise_nuclei.onnx")
COMMON = ["--model", SEGMENT, "--backend", "ort", "--diameter", "24"]


def _sample() -> np.ndarray:
    path = Path(str(importlib.resources.files("cp3rt"))) / "assets" / "samples" / "dsb2018_nuclei.tif"
    return tifffile.imread(path)


def _write_inputs(root: Path, img: np.ndarray) -> dict[str, Path]:
    """Crops of the 512x512 sample: small enough for seconds per job, big enough for several tiles."""
    dirs = {name: root / "in" / name for name in ("folder", "single", "restore", "volume", "blocks", "gt")}
    for d in dirs.values():
        d.mkdir(parents=True)
    tifffile.imwrite(dirs["folder"] / "a.tif", img[:256, :256])
    tifffile.imwrite(dirs["folder"] / "b.tif", img[256:, 256:])
    tifffile.imwrite(dirs["single"] / "c.tif", img[128:384, 64:320])
    tifffile.imwrite(dirs["restore"] / "d.tif", img[:192, 300:492])
    # A "volume" of 8 overlapping crops shifted by 6 px a plane: objects continue across planes.
    tifffile.imwrite(dirs["volume"] / "stack.tif", np.stack([img[6 * z:6 * z + 96, 200:296] for z in range(8)]))
    tifffile.imwrite(dirs["blocks"] / "big.tif", img[:384, :384])
    masks = tifffile.imread(Path(str(importlib.resources.files("cp3rt"))) / "assets" / "samples"
                            / "dsb2018_nuclei_masks.tif")
    tifffile.imwrite(dirs["gt"] / "big_masks.tif", masks[:384, :384])
    return dirs


def _write_plate(path: Path, img: np.ndarray) -> bool:
    """A 1-row, 2-well, 1-field NGFF 0.4 plate (as tests/runtime/scale_testutil.write_plate)."""
    try:
        import zarr
    except ImportError:
        return False
    from cp3rt.runtime.io.zarr_io import write_ngff_image

    root = zarr.open_group(str(path), mode="w", zarr_format=2)
    wells = [("A", "1"), ("A", "2")]
    root.attrs["plate"] = {
        "version": "0.4", "field_count": 1, "rows": [{"name": "A"}],
        "columns": [{"name": "1"}, {"name": "2"}],
        "wells": [{"path": f"{r}/{c}", "rowIndex": 0, "columnIndex": i} for i, (r, c) in enumerate(wells)],
    }
    for i, (r, c) in enumerate(wells):
        well = root.require_group(f"{r}/{c}")
        well.attrs["well"] = {"version": "0.4", "images": [{"path": "0"}]}
        write_ngff_image(path / r / c / "0", img[96 * i:96 * i + 96, 100:212], chunks=64)
    return True


def _jobs(dirs: dict[str, Path], out: Path, plate: Path | None) -> list[tuple[str, list[str]]]:
    o = lambda name: ["--out", str(out / name)]  # noqa: E731 - one line per job below
    jobs = [
        ("2d_folder", ["run", str(dirs["folder"]), *COMMON, "--save-flows", "--save-seg", "--overlay", *o("2d_folder")]),
        ("2d_single", ["run", str(dirs["single"] / "c.tif"), *COMMON, "--save-flows", "--save-seg", *o("2d_single")]),
        ("restore", ["run", str(dirs["restore"] / "d.tif"), *COMMON, "--restore", RESTORE, "--save-restored",
                     "--save-flows", *o("restore")]),
        ("volume_3d", ["run", str(dirs["volume"] / "stack.tif"), *COMMON, "--do-3d", "--save-flows", *o("volume_3d")]),
        ("volume_stitch", ["run", str(dirs["volume"] / "stack.tif"), *COMMON, "--stitch-threshold", "0.25",
                           "--save-flows", *o("volume_stitch")]),
        ("blocks", ["run", str(dirs["blocks"] / "big.tif"), *COMMON, "--blocks", "--block-size", "128", *o("blocks")]),
        ("degrade", ["degrade", str(dirs["folder"]), "--noise", "poisson", "--seed", "3", *o("degrade")]),
        ("eval", ["eval", "--pred", str(out / "blocks"), "--gt", str(dirs["gt"]),
                  "--json", str(out / "eval" / "scores.json")]),
    ]
    if plate is not None:  # labels go into the plate itself; the wells CSV into --out
        jobs.insert(6, ("plate", ["run", str(plate), *COMMON, *o("plate")]))
    return jobs


def _digest(folder: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file; a run record (named by its UTC start, holding
    timings and the host) counts by its presence only."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if not p.is_file():
            continue
        if p.name.startswith("cp3rt_run_") and p.suffix == ".json":
            out[str(p.relative_to(folder).with_name("cp3rt_run_<UTC>.json"))] = "run record"
            continue
        out[str(p.relative_to(folder))] = hashlib.sha256(_stable_bytes(p)).hexdigest()
    return out


def _stable_bytes(path: Path) -> bytes:
    """The file's bytes, except the degrade record's wall-clock "date", which no run repeats.
    (Input paths inside seg.npy and the records repeat because the work folder is fixed.)"""
    if path.name == "cp3rt_degrade.json":
        record = json.loads(path.read_text())
        record.pop("date", None)
        return json.dumps(record, sort_keys=True).encode()
    return path.read_bytes()


def snapshot(work: Path) -> dict:
    from cp3rt.cli.app import main

    img = _sample()
    dirs = _write_inputs(work, img)
    plate = work / "in" / "plate.zarr"
    has_plate = _write_plate(plate, img)
    out = work / "out"
    (out / "eval").mkdir(parents=True)
    jobs, seconds = {}, {}
    for name, argv in _jobs(dirs, out, plate if has_plate else None):
        t = time.perf_counter()
        code = main(argv)
        seconds[name] = round(time.perf_counter() - t, 2)
        if code:
            raise SystemExit(f"job {name} failed with exit code {code}: cp3rt {' '.join(argv)}")
        jobs[name] = _digest(out / name) if (out / name).exists() else {}
    if has_plate:  # the plate's labels group is an output too
        jobs["plate"].update({f"plate.zarr/{k}": v for k, v in _digest(plate).items() if "/labels/" in f"/{k}"})
    return {"jobs": jobs, "seconds": seconds, "plate": has_plate}


def _commit() -> str:
    """HEAD of the checkout this runs in ("+dirty" when tracked files differ), so a manifest says what it measured."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "src"], cwd=root,
                               capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def compare(before: dict, after: dict) -> list[str]:
    """Every difference as one line; empty when every job wrote the same files, byte for byte."""
    lines = []
    for job in sorted(set(before["jobs"]) | set(after["jobs"])):
        b, a = before["jobs"].get(job, {}), after["jobs"].get(job, {})
        for f in sorted(set(b) | set(a)):
            if b.get(f) != a.get(f):
                lines.append(f"{job}/{f}: {b.get(f, 'missing')[:12]} -> {a.get(f, 'missing')[:12]}")
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="Manifest JSON to write.")
    ap.add_argument("--compare", type=Path, help="An earlier manifest: exit 1 if any output differs.")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "cp3rt_house_snapshot",
                    help="Scratch folder, emptied first; fixed so that paths written into outputs repeat.")
    args = ap.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    t = time.perf_counter()
    try:
        result = snapshot(args.work)
    finally:
        shutil.rmtree(args.work, ignore_errors=True)
    result["total_seconds"] = round(time.perf_counter() - t, 1)
    result["commit"] = _commit()
    n = sum(len(v) for v in result["jobs"].values())
    result["files"] = n
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    print(f"{n} output files from {len(result['jobs'])} jobs in {result['total_seconds']} s -> {args.out}")
    if args.compare:
        diffs = compare(json.loads(args.compare.read_text()), result)
        print("\n".join(diffs) if diffs else f"identical to {args.compare}: every file byte for byte")
        return 1 if diffs else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
