"""Huge volumes in blocks (issue 7): (a) grid vs exact 3-D sampling, blocks vs one piece, on
blobs whose peaks fall between voxels; (b) peak memory of blocks vs one piece on a larger volume.

Protocol
--------
* Engine: the gradient stand-in ``SoftEngine`` of ``tests/runtime/volume_testutil.py`` (flows up
  the intensity gradient, fading at blob peaks; foreground where the normalised intensity is
  above 0.3), diameter 10 = its diam_mean (no rescaling), ``do_3D=True``, ``min_size=10``.
  Blocks: ``segment_volume_blocks`` with a halo of 2 diameters (20 px, ``ceil(20 / anisotropy)``
  planes). One piece: ``Pipeline.run`` with the (low, high) the blocks used.
* (a) Scene: the placement of ``volume_testutil.seam_volume`` (blobs of radius 5 on the Z, Y, X
  seam planes, at their corner and elsewhere, centres > 14 apart; 2 Z layers of
  ``20 / anisotropy`` planes x 128 x 128, 2 x 2 x 2 = 8 blocks of 64 px) but the centres are NOT
  rounded to voxels: a peak between voxels is where ``sampling_3d="grid"`` (the reference's,
  which reads the field at ``p * L / (L - 1) - 0.5``, an offset that depends on the length L)
  differs between a block and the whole volume. Anisotropy 1 and 2, ``--seeds`` scenes each,
  ``sampling_3d`` grid and exact in both runs (``segment_volume_blocks(sampling_3d=None)``).
  Reported per run: AP at IoU 0.5/0.75/0.9 (cp3rt.runtime.quality.metrics) of blocks vs one piece and
  AP@0.5 of each vs the drawn labels, object counts, drawn objects crossing a seam and how many
  of them carry more than one label (split) in blocks and in one piece (a peak between voxels
  can give the stand-in two sinks in one blob in one piece too), seconds; median, min and max
  of AP@0.9 over the seeds; 'split in blocks only' counts seam-crossing objects split in blocks
  but whole in one piece. A discarded warm-up run first (numba compile / cache load).
* (b) Scene: each of ``--mem-shapes`` (default 48 x 384 x 384 and 96 x 768 x 768, 8x the voxels)
  of radius-5 blobs on a jittered 15-voxel grid (peaks on voxels, anisotropy 1), written to a
  zarr with chunks of one block core; blocks of ``--mem-block-z`` x ``--mem-block`` (default
  24 x 96 x 96: 32 and 256 blocks). Blocks read that zarr and write a zarr with the same chunks;
  one piece reads the whole volume into memory and returns its masks in memory. Each measurement is a fresh process (peak RSS only grows within a process):
  it runs the same 24 x 64 x 64 warm-up corner through its own path (numba kernels, zarr's
  reader), resets its peak with ``/proc/self/clear_refs`` = 5, then segments. Reported: VmHWM
  (peak RSS after the reset) and VmRSS before the run (/proc/self/status), seconds;
  ``--repeats`` processes per mode, alternating, median and spread. One more process per mode
  runs with ``tracemalloc`` on (its peak counts numpy buffers, not the interpreter or numba; its
  seconds are not reported). AP of blocks vs one piece and AP@0.5 of each vs the drawn blobs,
  from the first repeat's masks. Seconds are of a shared 2-core machine (load average saved).
Run: .venv/bin/python benchmarks/bench_blocks_3d.py   (results -> results/blocks_3d.{json,md})
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests" / "runtime"))
from _scale_common import RESULTS, fingerprint  # noqa: E402
from volume_testutil import BLOCK, DIAM, SoftEngine, blob_volume  # noqa: E402

THRESHOLDS = (0.5, 0.75, 0.9)
MIN_SIZE = 10
RADIUS = 5.0
MEM_SPACING = 15  # blob grid of (b): not a divisor of the block sides, so blobs cross seams
WARM_SHAPE = (24, 64, 64)  # (b)'s warm-up: a corner of the volume, the same in both modes


# ---- scenes ----------------------------------------------------------------------------------


def between_voxel_scene(anisotropy: float, seed: int, z_layers: int = 2):
    """``seam_volume``'s placement with the centres left where they fall (between voxels)."""
    block_z = int(20 / anisotropy)
    shape = (z_layers * block_z, 2 * BLOCK, 2 * BLOCK)
    seams = (list(range(block_z, shape[0], block_z)), [BLOCK], [BLOCK])
    rng = np.random.default_rng(seed)
    lo = np.array([6 / anisotropy, 6, 6])
    cand = [np.array([seams[0][0], BLOCK, BLOCK], float) + 0.5]  # the corner, off the voxels
    for _ in range(3000):
        c = rng.uniform(lo, np.array(shape) - lo)
        axis = rng.integers(0, 4)
        if axis < 3:  # on a seam plane, within 2 voxels
            c[axis] = rng.choice(seams[axis]) + rng.uniform(-2, 2)
        cand.append(c)
    keep: list[np.ndarray] = []
    for c in cand:
        if all(np.sqrt((((c - k) * [anisotropy, 1, 1]) ** 2).sum()) > 14 for k in keep):
            keep.append(c)
    vol, truth = blob_volume(shape, keep, radius=RADIUS, anisotropy=anisotropy)
    return vol, truth, block_z, seams


def grid_blob_volume(shape, seed: int = 0, spacing: int = MEM_SPACING):
    """``blob_volume``'s blobs (anisotropy 1) on a jittered grid, drawn in windows of +-3 radii
    (the Gaussian is < 1e-5 of the peak there) so a large volume takes seconds, not hours."""
    rng = np.random.default_rng(seed)
    axes = [np.arange(spacing / 2, s - spacing / 2 + 1e-9, spacing) for s in shape]
    centres = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    centres = np.round(centres + rng.uniform(-1, 1, centres.shape))  # peaks on voxels
    img = np.zeros(shape, np.float32)
    labels = np.zeros(shape, np.uint32)
    best = np.full(shape, np.inf, np.float32)
    w = int(3 * RADIUS)
    for k, c in enumerate(centres, start=1):
        lo = np.maximum(c.astype(int) - w, 0)
        hi = np.minimum(c.astype(int) + w + 1, shape)
        sl = tuple(slice(a, b) for a, b in zip(lo, hi))
        zz, yy, xx = np.ogrid[sl]
        d2 = ((zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2).astype(np.float32)
        np.maximum(img[sl], np.exp(-d2 / (2 * (RADIUS * 0.6) ** 2)), out=img[sl])
        inside = (d2 <= RADIUS**2) & (d2 < best[sl])
        labels[sl][inside], best[sl][inside] = k, d2[inside]
    return (img * 60000).astype(np.uint16), labels


# ---- measures --------------------------------------------------------------------------------


def _ap(true, pred, ths=THRESHOLDS) -> list[float]:
    from cp3rt.runtime.quality.metrics import average_precision

    return [float(v) for v in average_precision(true, pred, list(ths))[0]]


def seam_crossing(truth: np.ndarray, seams) -> set[int]:
    """Drawn objects with voxels on both sides of a seam plane (Z, Y or X)."""
    crossing: set[int] = set()
    for axis, planes in enumerate(seams):
        for s in planes:
            a, b = np.take(truth, s - 1, axis=axis), np.take(truth, s, axis=axis)
            crossing |= set(np.intersect1d(a[a > 0], b[b > 0]).tolist())
    return crossing


def split_objects(truth: np.ndarray, pred: np.ndarray) -> set[int]:
    """Drawn objects whose voxels carry more than one predicted label."""
    both = (truth > 0) & (pred > 0)
    pairs = np.unique(np.stack([truth[both].astype(np.int64), pred[both].astype(np.int64)]), axis=1)
    ids, n = np.unique(pairs[0], return_counts=True)
    return set(ids[n > 1].tolist())


def _pipeline():
    from cp3rt import Pipeline

    return Pipeline.from_engines(SoftEngine(diam_mean=DIAM))


def _run_blocks(vol, run, block, block_z):
    from cp3rt.runtime.batch.blocks.volume import segment_volume_blocks

    out = np.zeros(vol.shape, np.uint32)
    with _pipeline() as p:
        summary = segment_volume_blocks(p, vol, out, diameter=DIAM, run=run, block_size=block,
                                        block_size_z=block_z, sampling_3d=None)
    return out, summary


def _run_one_piece(vol, run, lowhigh):
    from cp3rt.runtime.prep.normalize import NormalizeConfig

    cfg = run.replace(diameter=DIAM, z_axis=0, normalize=NormalizeConfig(lowhigh=lowhigh))
    with _pipeline() as p:
        return p.run(np.asarray(vol), run=cfg).masks


# ---- (a) grid vs exact -----------------------------------------------------------------------


def part_a(seeds: list[int]) -> dict:
    from cp3rt.runtime.config import RunConfig

    vol, _, block_z, _ = between_voxel_scene(1.0, 99)  # warm-up: numba compile / cache load
    for s in ("grid", "exact"):
        _run_blocks(vol, RunConfig(do_3D=True, anisotropy=1.0, min_size=MIN_SIZE, sampling_3d=s), BLOCK, block_z)
    runs = []
    for anisotropy in (1.0, 2.0):
        for seed in seeds:
            vol, truth, block_z, seams = between_voxel_scene(anisotropy, seed)
            crossing = seam_crossing(truth, seams)
            for sampling in ("grid", "exact"):
                run = RunConfig(do_3D=True, anisotropy=anisotropy, min_size=MIN_SIZE, sampling_3d=sampling)
                t = time.perf_counter()
                out, summary = _run_blocks(vol, run, BLOCK, block_z)
                t_blocks = time.perf_counter() - t
                t = time.perf_counter()
                whole = _run_one_piece(vol, run, summary.lowhigh)
                t_whole = time.perf_counter() - t
                split_b, split_w = split_objects(truth, out), split_objects(truth, whole)
                runs.append({
                    "anisotropy": anisotropy, "seed": seed, "sampling_3d": sampling, "shape": list(vol.shape),
                    "blocks": summary.n_blocks, "drawn_objects": int(truth.max()),
                    "objects_blocks": int(out.max()), "objects_one_piece": int(whole.max()),
                    "ap_blocks_vs_one_piece": dict(zip(map(str, THRESHOLDS), _ap(whole, out))),
                    "ap50_blocks_vs_drawn": _ap(truth, out, [0.5])[0],
                    "ap50_one_piece_vs_drawn": _ap(truth, whole, [0.5])[0],
                    "drawn_crossing_seams": len(crossing),
                    "crossing_split_blocks": len(crossing & split_b),
                    "crossing_split_one_piece": len(crossing & split_w),
                    "crossing_split_blocks_only": len(crossing & (split_b - split_w)),
                    "split_blocks": len(split_b), "split_one_piece": len(split_w),
                    "seconds_blocks": t_blocks, "seconds_one_piece": t_whole,
                })
                print(json.dumps(runs[-1]), flush=True)
    summary = {}
    for anisotropy in (1.0, 2.0):
        for sampling in ("grid", "exact"):
            sel = [r for r in runs if r["anisotropy"] == anisotropy and r["sampling_3d"] == sampling]
            ap90 = [r["ap_blocks_vs_one_piece"]["0.9"] for r in sel]
            summary[f"anisotropy {anisotropy:g}, {sampling}"] = {
                "ap90_median": statistics.median(ap90), "ap90_min": min(ap90), "ap90_max": max(ap90),
                "drawn_objects": [r["drawn_objects"] for r in sel],
                "crossing_split_blocks": sum(r["crossing_split_blocks"] for r in sel),
                "crossing_split_one_piece": sum(r["crossing_split_one_piece"] for r in sel),
                "crossing_split_blocks_only": sum(r["crossing_split_blocks_only"] for r in sel),
                "drawn_crossing_seams": sum(r["drawn_crossing_seams"] for r in sel),
            }
    return {"seeds": seeds, "runs": runs, "summary": summary}


# ---- (b) memory, one process per measurement ------------------------------------------------


def _status_kb(key: str) -> int:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith(key + ":"))


def worker_b(args) -> None:
    """Runs in its own process: one measured run of ``args.mode`` on the zarr ``args.worker_b``;
    prints one JSON line. Blocks write a zarr next to it; one piece saves its masks (.npy)."""
    import tracemalloc

    import zarr

    from cp3rt.runtime.config import RunConfig
    from cp3rt.runtime.prep.normalize import NormalizeConfig

    lowhigh = tuple(json.loads(args.lowhigh))
    run = RunConfig(do_3D=True, anisotropy=1.0, min_size=MIN_SIZE, sampling_3d="exact")
    block_run = run.replace(normalize=NormalizeConfig(lowhigh=lowhigh))
    src = Path(args.worker_b)
    zin = zarr.open_array(str(src / "volume.zarr"), mode="r")
    # warm-up, the same in both modes: numba kernels compiled / loaded, zarr's reader started
    warm = np.asarray(zin[: WARM_SHAPE[0], : WARM_SHAPE[1], : WARM_SHAPE[2]])
    if args.mode == "blocks":
        _run_blocks(warm, block_run, args.mem_block, args.mem_block_z)
    else:
        _run_one_piece(warm, run, lowhigh)
    del warm
    with open("/proc/self/clear_refs", "w") as fh:  # VmHWM := VmRSS now: the warm-up is not counted
        fh.write("5")
    rss_before = _status_kb("VmRSS")
    if args.tracemalloc:
        tracemalloc.start()
    t = time.perf_counter()
    if args.mode == "blocks":
        from cp3rt.runtime.batch.blocks.volume import segment_volume_blocks

        zout = zarr.open_array(str(src / "blocks.zarr"), mode="w", shape=zin.shape, dtype="uint32",
                               chunks=(args.mem_block_z, args.mem_block, args.mem_block), fill_value=0)
        with _pipeline() as p:
            summary = segment_volume_blocks(p, zin, zout, diameter=DIAM, run=block_run, block_size=args.mem_block,
                                            block_size_z=args.mem_block_z, sampling_3d=None)
        n_blocks, n_objects = summary.n_blocks, summary.n_objects
    else:
        masks = _run_one_piece(zin[...], run, lowhigh)
        n_blocks, n_objects = 1, int(masks.max())
    seconds = time.perf_counter() - t
    hwm = _status_kb("VmHWM")
    traced = tracemalloc.get_traced_memory()[1] if args.tracemalloc else None
    tracemalloc.stop()
    if args.mode == "one_piece" and args.save:
        np.save(src / "one_piece.npy", masks)
    print(json.dumps({"mode": args.mode, "blocks": n_blocks, "seconds": seconds, "vmhwm_mb": hwm / 1024,
                      "vmrss_before_mb": rss_before / 1024,
                      "tracemalloc_peak_mb": None if traced is None else traced / 1024**2, "objects": n_objects}))


def _child(work: Path, mode: str, args, lowhigh, save: bool = False, trace: bool = False) -> dict:
    cmd = [sys.executable, __file__, "--worker-b", str(work), "--mode", mode, "--lowhigh", json.dumps(lowhigh),
           "--mem-block", str(args.mem_block), "--mem-block-z", str(args.mem_block_z)]
    cmd += ["--save"] if save else []
    cmd += ["--tracemalloc"] if trace else []
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"{mode} worker failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    print(json.dumps(result), flush=True)
    return result


def part_b(shape: tuple[int, int, int], args) -> dict:
    import zarr

    from cp3rt.runtime.batch.blocks.volume import volume_lowhigh

    work = Path(tempfile.mkdtemp(prefix="bench_blocks_3d_"))
    try:
        t = time.perf_counter()
        vol, truth = grid_blob_volume(shape)
        t_scene = time.perf_counter() - t
        zin = zarr.open_array(str(work / "volume.zarr"), mode="w", shape=shape, dtype="uint16",
                              chunks=(args.mem_block_z, args.mem_block, args.mem_block), fill_value=0)
        zin[...] = vol
        lowhigh = [list(map(float, lh)) for lh in volume_lowhigh(vol, nchan=1)]
        del vol, zin
        runs: dict[str, list[dict]] = {"blocks": [], "one_piece": []}
        for i in range(args.repeats):
            for mode in runs:
                runs[mode].append(_child(work, mode, args, lowhigh, save=i == 0))
            if i == 0:  # the first repeat's masks; later blocks runs overwrite blocks.zarr
                masks = {"blocks": np.asarray(zarr.open_array(str(work / "blocks.zarr"), mode="r")[...]),
                         "one_piece": np.load(work / "one_piece.npy")}
        traced = {mode: _child(work, mode, args, lowhigh, trace=True)["tracemalloc_peak_mb"] for mode in runs}
    finally:
        shutil.rmtree(work)

    def stats(mode, key):
        v = [r[key] for r in runs[mode]]
        return {"median": statistics.median(v), "min": min(v), "max": max(v), "runs": v}

    return {
        "shape": list(shape), "voxels": int(np.prod(shape)), "block_size": args.mem_block,
        "block_size_z": args.mem_block_z, "blocks": runs["blocks"][0]["blocks"], "repeats": args.repeats,
        "drawn_objects": int(truth.max()), "seconds_draw_scene": t_scene, "lowhigh": lowhigh,
        **{f"{mode}_{key}": stats(mode, key) for mode in runs
           for key in ("vmhwm_mb", "vmrss_before_mb", "seconds")},
        **{f"{mode}_tracemalloc_peak_mb": traced[mode] for mode in runs},
        "objects_blocks": int(masks["blocks"].max()), "objects_one_piece": int(masks["one_piece"].max()),
        "ap_blocks_vs_one_piece": dict(zip(map(str, THRESHOLDS), _ap(masks["one_piece"], masks["blocks"]))),
        "ap50_blocks_vs_drawn": _ap(truth, masks["blocks"], [0.5])[0],
        "ap50_one_piece_vs_drawn": _ap(truth, masks["one_piece"], [0.5])[0],
    }


# ---- report ----------------------------------------------------------------------------------


def _markdown(result: dict) -> str:
    env = result["environment"]
    md = [f"# Huge volumes in blocks ({result['date_utc']} UTC)", "", f"Command: `{env['command']}`", "",
          f"CPU: {env['cpu']} x{env['cores']}; Python {env['python']}, numpy {env['numpy']}, numba {env['numba']} "
          f"({env['numba_threading_layer']}); load average at start: {env['load_average_at_start']}, "
          f"at end: {result['load_average_at_end']} (shared machine).", "",
          "Engine: the gradient stand-in `SoftEngine` of tests/runtime/volume_testutil.py, diameter 10, "
          "do_3D, min_size 10; protocol in the script's docstring.", ""]
    if "a_sampling" in result:
        a = result["a_sampling"]
        md += [f"## (a) grid vs exact sampling, peaks between voxels (seeds {a['seeds']}, 8 blocks of "
               f"{int(2 * DIAM)}/anisotropy x {BLOCK} x {BLOCK} + halo {int(2 * DIAM)})", "",
               "AP@0.9 of blocks vs one piece, both with the same `sampling_3d`:", "",
               "| anisotropy, sampling | AP@0.9 median | min | max | drawn objects | seam-crossing objects split in "
               "blocks / in one piece / in blocks only (of crossing, all seeds) |", "|---|---|---|---|---|---|"]
        for k, s in a["summary"].items():
            md.append(f"| {k} | {s['ap90_median']:.3f} | {s['ap90_min']:.3f} | {s['ap90_max']:.3f} | "
                      f"{s['drawn_objects']} | {s['crossing_split_blocks']} / {s['crossing_split_one_piece']} / "
                      f"{s['crossing_split_blocks_only']} (of {s['drawn_crossing_seams']}) |")
        md += ["", "Per run:", "", "| anis. | seed | sampling | shape | objects blocks / one piece / drawn | "
               "AP 0.5 / 0.75 / 0.9 blocks vs one piece | AP@0.5 vs drawn: blocks / one piece | "
               "split blocks / one piece (all) | s blocks / one piece |", "|---|---|---|---|---|---|---|---|---|"]
        for r in a["runs"]:
            ap = r["ap_blocks_vs_one_piece"]
            md.append(f"| {r['anisotropy']:g} | {r['seed']} | {r['sampling_3d']} | {'x'.join(map(str, r['shape']))} | "
                      f"{r['objects_blocks']} / {r['objects_one_piece']} / {r['drawn_objects']} | "
                      f"{ap['0.5']:.3f} / {ap['0.75']:.3f} / {ap['0.9']:.3f} | "
                      f"{r['ap50_blocks_vs_drawn']:.3f} / {r['ap50_one_piece_vs_drawn']:.3f} | "
                      f"{r['split_blocks']} / {r['split_one_piece']} | "
                      f"{r['seconds_blocks']:.1f} / {r['seconds_one_piece']:.1f} |")
        md += ["", "A peak between voxels can give the stand-in two sinks in one blob, in one piece as in blocks: "
               "splits and AP vs the drawn blobs measure the stand-in; the blocks' own effect is 'in blocks only' "
               "and AP blocks vs one piece.", ""]
    for b in result.get("b_memory", []):
        ap = b["ap_blocks_vs_one_piece"]

        def cell(key):
            s = b[key]
            return f"{s['median']:.0f} ({s['min']:.0f}-{s['max']:.0f})"

        def sec(key):
            s = b[key]
            return f"{s['median']:.1f} ({s['min']:.1f}-{s['max']:.1f})"

        md += [f"## (b) memory: {'x'.join(map(str, b['shape']))} ({b['voxels'] / 1e6:.1f} M voxels, "
               f"{b['drawn_objects']} blobs), {b['blocks']} blocks of {b['block_size_z']} x {b['block_size']} x "
               f"{b['block_size']} + halo {int(2 * DIAM)}", "",
               f"One process per run, {b['repeats']} runs per mode (median (min-max)); VmHWM after a warm-up and a "
               "peak reset. Blocks read a zarr (chunks = block cores) and write a zarr; one piece reads the whole "
               "volume into memory and returns its masks in memory.", "",
               "| mode | peak RSS VmHWM (MB) | RSS before the run (MB) | tracemalloc peak (MB) | seconds | objects |",
               "|---|---|---|---|---|---|"]
        for mode in ("blocks", "one_piece"):
            md.append(f"| {mode.replace('_', ' ')} | {cell(mode + '_vmhwm_mb')} | {cell(mode + '_vmrss_before_mb')} | "
                      f"{b[mode + '_tracemalloc_peak_mb']:.0f} | {sec(mode + '_seconds')} | {b['objects_' + mode]} |")
        md += ["", f"AP blocks vs one piece at 0.5 / 0.75 / 0.9: {ap['0.5']:.3f} / {ap['0.75']:.3f} / {ap['0.9']:.3f}; "
               f"AP@0.5 vs the drawn blobs: blocks {b['ap50_blocks_vs_drawn']:.3f}, one piece "
               f"{b['ap50_one_piece_vs_drawn']:.3f}.", ""]
    return "\n".join(md) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--mem-shapes", nargs="+", default=["48x384x384", "96x768x768"],
                    help="Z x Y x X of the (b) volumes")
    ap.add_argument("--mem-block", type=int, default=96)
    ap.add_argument("--mem-block-z", type=int, default=24)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--skip-a", action="store_true")
    ap.add_argument("--skip-b", action="store_true")
    ap.add_argument("--out", default="blocks_3d")
    ap.add_argument("--worker-b", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--mode", choices=("blocks", "one_piece"), help=argparse.SUPPRESS)
    ap.add_argument("--lowhigh", help=argparse.SUPPRESS)
    ap.add_argument("--save", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--tracemalloc", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker_b:
        worker_b(args)
        return
    env = fingerprint()
    result = {"date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "environment": env}
    t = time.perf_counter()
    if not args.skip_b:
        shapes = [tuple(int(v) for v in s.lower().split("x")) for s in args.mem_shapes]
        result["b_memory"] = [part_b(shape, args) for shape in shapes]
    if not args.skip_a:
        result["a_sampling"] = part_a(args.seeds)
    result["seconds_total"] = time.perf_counter() - t
    result["load_average_at_end"] = os.getloadavg()
    from cp3rt._fs import atomic_write_bytes

    RESULTS.mkdir(exist_ok=True)
    atomic_write_bytes(RESULTS / f"{args.out}.json", json.dumps(result, indent=2).encode())
    atomic_write_bytes(RESULTS / f"{args.out}.md", _markdown(result).encode())


if __name__ == "__main__":
    main()
