"""Huge images in blocks: (a) blocks vs one piece on a 4096x4096 scene, (b) a huge zarr end
to end with its peak memory.

Protocol
--------
* Scene: discs (radius 8-11 px) on a jittered 29-px grid, one per cell (~20k on 4096^2), the
  known labels. The 'image' given to cp3rt is that label image; the engine stand-in
  (``_scale_common.LabelFlowEngine``) decodes each tile's labels from the normalised pixels
  and serves flows built from them (masks_to_flows x 5, cellprob +-5): a net that finds these
  cells. Diameter 30 = the stand-in's diam_mean (no rescaling); cp3rt defaults otherwise.
* (a) One piece: ``Pipeline.run`` with the same global (low, high) as the blocks use.
  Blocks: ``segment_blocks`` with ``--block-size`` (default 1024: 3 seams each way), halo
  2 diameters. Reported: AP@0.9 blocks vs one piece and vs the known labels (cp3rt.metrics),
  objects crossing a seam, and objects split at a seam (a known disc crossing a seam whose
  pixels carry more than one block label; must be 0), seconds of each run (one run each: the
  comparison is of masks, not speed).
* (b) A ``--huge-side`` square zarr (uint32 labels as image, 1024 chunks, written band by
  band) is segmented by ``segment_blocks`` (block 2048) into an NGFF labels group in a
  separate process; its peak RSS is ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` at the end
  and /proc/self/status VmHWM (writing the input happens in the parent, so it is not
  counted; (b) runs before (a) because a forked child's ru_maxrss starts at the parent's
  RSS). The peak does not grow with the image (blocks in flight, label frames on disk), so a
  smaller --huge-side stands for 30000 when 30000 does not fit the time budget. Checked: object count vs
  the known count, and splits on every seam line (read band by band).
Results: benchmarks/results/blocks.json and blocks.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _scale_common import GRID, RESULTS, LabelFlowEngine, disc_labels, fingerprint  # noqa: E402

DIAM = 30.0
GOAL_RSS_GB = 3.0


def _pipe(lowhigh):
    from cp3rt import Pipeline
    from cp3rt.runtime.config import RunConfig

    return Pipeline.from_engines(LabelFlowEngine(lowhigh[0]), run=RunConfig(diameter=DIAM))


def seam_splits(truth: np.ndarray, pred: np.ndarray, seams_y, seams_x, y_offset: int = 0) -> tuple[int, int]:
    """(known objects crossing a seam, of those: split into more than one predicted label)."""
    t, p = truth.ravel().astype(np.int64), pred.ravel().astype(np.int64)
    crossing = set()
    for s in seams_y:
        if y_offset < s <= y_offset + truth.shape[0] - 1:
            a, b = truth[s - 1 - y_offset], truth[s - y_offset]
            crossing |= set(np.intersect1d(a[a > 0], b[b > 0]).tolist())
    for s in seams_x:
        a, b = truth[:, s - 1], truth[:, s]
        crossing |= set(np.intersect1d(a[a > 0], b[b > 0]).tolist())
    both = (t > 0) & (p > 0)
    pairs = np.unique(np.stack([t[both], p[both]]), axis=1)
    ids, n_pred = np.unique(pairs[0], return_counts=True)
    split = set(ids[n_pred > 1].tolist())
    return len(crossing), len(crossing & split)


def part_a(side: int, block: int) -> dict:
    from cp3rt.runtime.batch.blocks import global_lowhigh, segment_blocks
    from cp3rt.runtime.config import RunConfig
    from cp3rt.runtime.prep.normalize import NormalizeConfig
    from cp3rt.runtime.quality.metrics import average_precision

    truth = disc_labels(0, side, side)
    lowhigh = global_lowhigh(truth)
    out = np.zeros(truth.shape, np.uint32)
    t = time.perf_counter()
    with _pipe(lowhigh) as p:
        summary = segment_blocks(p, truth, out, diameter=DIAM, block_size=block)
    t_blocks = time.perf_counter() - t
    t = time.perf_counter()
    with _pipe(lowhigh) as p:
        whole = p.run(truth, run=RunConfig(diameter=DIAM, normalize=NormalizeConfig(lowhigh=lowhigh))).masks
    t_whole = time.perf_counter() - t
    seams = list(range(block, side, block))
    crossing, split = seam_splits(truth, out, seams, seams)
    _, split_whole = seam_splits(truth, whole, seams, seams)
    return {
        "side": side, "block_size": block, "halo": summary.halo, "blocks": summary.n_blocks,
        "known_objects": int(truth.max()), "objects_blocks": int(out.max()), "objects_one_piece": int(whole.max()),
        "ap90_blocks_vs_one_piece": float(average_precision(whole, out, [0.9])[0][0]),
        "ap90_blocks_vs_known": float(average_precision(truth, out, [0.9])[0][0]),
        "ap90_one_piece_vs_known": float(average_precision(truth, whole, [0.9])[0][0]),
        "objects_crossing_seams": crossing, "split_at_seams_blocks": split,
        "split_at_seams_one_piece_same_lines": split_whole,
        "seconds_blocks": t_blocks, "seconds_one_piece": t_whole,
    }


def write_zarr(root: Path, side: int, band: int = 1024) -> None:
    import zarr

    g = zarr.open_group(str(root), mode="w", zarr_format=2)
    g.attrs["multiscales"] = [{"version": "0.4", "name": "image", "axes": [{"name": "y", "type": "space"},
                               {"name": "x", "type": "space"}], "datasets": [{"path": "0"}]}]
    arr = g.create_array("0", shape=(side, side), chunks=(band, band), dtype="uint32", fill_value=0)
    for y in range(0, side, band):
        arr[y : y + band] = disc_labels(y, min(side, y + band), side)


def worker_b(root: str, block: int) -> None:
    """Runs in its own process: segment the zarr into labels/cp3rt, print JSON with maxrss."""
    from cp3rt.runtime.batch.blocks import global_lowhigh, segment_blocks
    from cp3rt.runtime.batch.blocks.lazy import open_plane
    from cp3rt.runtime.io.zarr_io import create_ngff_labels, mark_complete

    image = open_plane(root)
    lowhigh = global_lowhigh(image)
    out = create_ngff_labels(root, image.shape, overwrite=True)
    t = time.perf_counter()
    with _pipe(lowhigh) as p:
        summary = segment_blocks(p, image, out, diameter=DIAM, block_size=block)
    seconds = time.perf_counter() - t
    mark_complete(out, n_objects=summary.n_objects)
    maxrss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with open("/proc/self/status") as fh:  # peak RSS of this program since exec
        hwm_kb = next(int(line.split()[1]) for line in fh if line.startswith("VmHWM"))
    side = image.shape[0]
    seams = list(range(block, side, block))
    crossing = split = 0
    r = GRID  # a band one grid cell each side of a horizontal seam holds every disc crossing it
    for s in seams:
        c, k = seam_splits(disc_labels(s - r, s + r, side), np.asarray(out[s - r : s + r]), [s], seams, s - r)
        crossing, split = crossing + c, split + k
    for s in seams:  # vertical seams, in bands of rows
        for y in range(0, side, 4096):
            y1 = min(side, y + 4096)
            t_band = disc_labels(y, y1, side)[:, s - r : s + r]
            c, k = seam_splits(t_band, np.asarray(out[y:y1, s - r : s + r]), [], [r])
            crossing, split = crossing + c, split + k  # a disc cut by a band edge may count twice
    known = (-(-side // GRID)) ** 2
    print(json.dumps({"side": side, "block_size": block, "blocks": summary.n_blocks, "halo": summary.halo,
                      "seconds": seconds, "maxrss_gb": maxrss_kb / 1024**2, "vmhwm_gb": hwm_kb / 1024**2, "known_objects": known,
                      "objects": summary.n_objects, "objects_crossing_seams": crossing,
                      "split_at_seams": split}))


def part_b(side: int, block: int) -> dict:
    work = Path(tempfile.mkdtemp(prefix="bench_blocks_"))
    root = work / "huge.ome.zarr"
    t = time.perf_counter()
    write_zarr(root, side)
    t_write = time.perf_counter() - t
    proc = subprocess.run([sys.executable, __file__, "--worker-b", str(root), "--huge-block", str(block)],
                          capture_output=True, text=True, check=True)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["seconds_write_input"] = t_write
    result["goal_rss_gb"] = GOAL_RSS_GB
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--side", type=int, default=4096)
    ap.add_argument("--block-size", type=int, default=1024)
    ap.add_argument("--huge-side", type=int, default=30000)
    ap.add_argument("--huge-block", type=int, default=2048)
    ap.add_argument("--skip-a", action="store_true")
    ap.add_argument("--skip-b", action="store_true")
    ap.add_argument("--worker-b", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", default="blocks")
    args = ap.parse_args()
    if args.worker_b:
        worker_b(args.worker_b, args.huge_block)
        return
    env = fingerprint()
    result = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "environment": env}
    # (b) first: ru_maxrss of a forked child starts from the parent's RSS at fork on Linux,
    # so the child is started while this process is still small (VmHWM is reported as well).
    if not args.skip_b:
        result["b_huge_zarr"] = part_b(args.huge_side, args.huge_block)
        print(json.dumps(result["b_huge_zarr"], indent=1), flush=True)
    if not args.skip_a:
        result["a_blocks_vs_one_piece"] = part_a(args.side, args.block_size)
        print(json.dumps(result["a_blocks_vs_one_piece"], indent=1), flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps(result, indent=2))
    md = [f"# Huge images in blocks ({result['date']})", "", f"Command: `{env['command']}`", "",
          f"CPU: {env['cpu']} x{env['cores']}; tcmalloc preloaded: {env['tcmalloc_preloaded']} (no torch in these runs); "
          f"load average at start: {env['load_average_at_start']}", "",
          "Engine: LabelFlowEngine stand-in (flows built from the known disc labels per tile; see the protocol).", ""]
    if "a_blocks_vs_one_piece" in result:
        a = result["a_blocks_vs_one_piece"]
        md += [f"## (a) {a['side']}x{a['side']}, blocks of {a['block_size']} + halo {a['halo']} ({a['blocks']} blocks)", "",
               "| measure | value |", "|---|---|"]
        md += [f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in a.items()]
        md.append("")
    if "b_huge_zarr" in result:
        b = result["b_huge_zarr"]
        md += [f"## (b) {b['side']}x{b['side']} zarr end to end, blocks of {b['block_size']}", "",
               f"Peak RSS **{b['maxrss_gb']:.2f} GB** ru_maxrss, {b['vmhwm_gb']:.2f} GB VmHWM (goal < {GOAL_RSS_GB} GB); {b['objects']} objects of "
               f"{b['known_objects']} known; {b['split_at_seams']} split of {b['objects_crossing_seams']} seam crossings; "
               f"{b['seconds']:.0f} s.", ""]
    (RESULTS / f"{args.out}.md").write_text("\n".join(md) + "\n")


if __name__ == "__main__":
    main()
