"""Huge-image blocks with a real trained net on real microscopy: a 4096x4096 mosaic of CTC
simulated nuclei frames segmented by the shipped starter model ``cp3rt_nuclei``, in blocks
(in this process and as Dask tasks) vs in one piece.

Protocol
--------
* Image: the first 42 frames of ``../shared/data/ctc_sim_nuclei`` seq01 (690x628, uint16,
  median nucleus diameter 49.1 px per its README) tiled 6 x 7 and cropped to 4096x4096, with
  their ground-truth masks tiled the same way (labels made unique). Frame edges make real
  discontinuities, so seams of the mosaic are not seams of the blocks (blocks are 1024).
* Model: ``cp3rt_nuclei`` (onnxruntime CPU, fp32), diameter 49.1 -> the net sees the image at
  17/49.1 scale, so a block is resized on its own: its sampling grid is not the one-piece
  image's, and the net's outputs differ slightly near nothing but the grid phase. This is the
  real-world difference between blocks and one piece that the label-flow stand-in of
  ``bench_blocks.py`` cannot show.
* One piece: ``Pipeline.run`` with the same global (low, high) the blocks use. Blocks:
  ``segment_blocks`` (block 1024, halo 2 diameters = 99 px) and
  ``cp3rt.distributed.segment_blocks_on_cluster`` on a 2-worker LocalCluster.
* Control: the one-piece run repeated on the image shifted by 7 px (only the resize and tile
  grids move against the image), compared with the one-piece masks in a common window (100 px
  from the edges), next to blocks vs one piece in the same window: how much of the
  blocks/one-piece difference is grid phase that any shift causes.
* Reported: AP at IoU 0.5/0.75/0.9 (cp3rt.metrics) of blocks vs one piece and of each vs the
  ground truth; objects of the one-piece masks and of the truth that cross a block seam, and
  how many of those carry more than one label in the block result (split); whether the
  cluster labels equal the single-process block labels; seconds (one run each, a shared
  2-vCPU VM: the comparison is of masks, not speed).
Run: .venv/bin/python benchmarks/bench_blocks_real.py   (results -> results/blocks_real.{json,md})
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _scale_common import RESULTS, fingerprint  # noqa: E402
from bench_blocks import seam_splits  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "ctc_sim_nuclei"
DIAM = 49.1
MODEL = "cp3rt_nuclei"
SHIFT, MARGIN = 7, 100  # control run: image shifted by SHIFT px; compared away from the edges


def mosaic(side: int, rows: int = 6, cols: int = 7) -> tuple[np.ndarray, np.ndarray]:
    import tifffile

    names = sorted((DATA / "images").glob("seq01_t*.tif"))[: rows * cols]
    imgs = [tifffile.imread(p) for p in names]
    masks = [tifffile.imread(DATA / "masks" / p.name).astype(np.uint32) for p in names]
    h, w = imgs[0].shape
    image = np.zeros((rows * h, cols * w), imgs[0].dtype)
    truth = np.zeros((rows * h, cols * w), np.uint32)
    offset = 0
    for k, (im, m) in enumerate(zip(imgs, masks)):
        y, x = (k // cols) * h, (k % cols) * w
        image[y : y + h, x : x + w] = im
        truth[y : y + h, x : x + w] = np.where(m > 0, m + offset, 0)
        offset += int(m.max())
    return np.ascontiguousarray(image[:side, :side]), _consecutive(truth[:side, :side])


def _consecutive(labels: np.ndarray) -> np.ndarray:
    """1..N labels (a cropped window drops some; the metric counts labels up to the max)."""
    _, inverse = np.unique(labels, return_inverse=True)
    return inverse.reshape(labels.shape).astype(np.uint32)


def _ap(a: np.ndarray, b: np.ndarray) -> list[float]:
    from cp3rt.runtime.quality.metrics import average_precision

    a, b = _consecutive(a), _consecutive(b)
    return [round(float(v), 4) for v in average_precision(a, b, [0.5, 0.75, 0.9])[0]]


def run(side: int, block: int, workers: int) -> dict:
    from cp3rt import Pipeline
    from cp3rt.distributed import close_client, open_client, segment_blocks_on_cluster
    from cp3rt.runtime.batch.blocks import global_lowhigh, segment_blocks
    from cp3rt.runtime.batch.blocks.lazy import open_plane
    from cp3rt.runtime.config import PipelineConfig, RunConfig
    from cp3rt.runtime.prep.normalize import NormalizeConfig

    import tifffile

    image, truth = mosaic(side)
    cfg = PipelineConfig(segment=MODEL, backend="ort")
    run_cfg = RunConfig(diameter=DIAM, channels=(0, 0))
    res: dict = {"side": side, "block_size": block, "model": MODEL, "diameter": DIAM,
                 "truth_objects": int(truth.max())}
    with Pipeline.from_config(cfg, run=run_cfg) as p:
        t = time.perf_counter()
        blocks = np.zeros(image.shape, np.uint32)
        summary = segment_blocks(p, image, blocks, diameter=DIAM, block_size=block)
        res["seconds_blocks"] = time.perf_counter() - t
        lowhigh = global_lowhigh(image, channels=(0, 0), nchan=p.segment_net.nchan)
        assert lowhigh == summary.lowhigh
        t = time.perf_counter()
        one = p.run(image, run=run_cfg.replace(normalize=NormalizeConfig(lowhigh=lowhigh))).masks
        res["seconds_one_piece"] = time.perf_counter() - t
        # Control: the same one-piece run on the image shifted by SHIFT px moves the resize and
        # tile grids against the image, which is all blocks do to the pixels they share.
        shifted = p.run(image[SHIFT:, SHIFT:], run=run_cfg.replace(normalize=NormalizeConfig(lowhigh=lowhigh))).masks
        inner = (slice(SHIFT + MARGIN, side - MARGIN),) * 2
        res[f"control_ap_one_piece_vs_shifted_{SHIFT}px"] = _ap(one[inner], shifted[tuple(
            slice(i.start - SHIFT, i.stop - SHIFT) for i in inner)])
        res["control_ap_blocks_vs_one_piece_same_window"] = _ap(one[inner], blocks[inner])
        nchan = p.segment_net.nchan
    res.update(blocks=summary.n_blocks, halo=summary.halo, objects_blocks=int(blocks.max()),
               objects_one_piece=int(one.max()))
    res["ap_blocks_vs_one_piece"] = _ap(one, blocks)
    res["ap_one_piece_vs_truth"] = _ap(truth, one)
    res["ap_blocks_vs_truth"] = _ap(truth, blocks)
    seams = list(range(block, side, block))
    res["one_piece_objects_crossing_seams"], res["of_those_split_in_blocks"] = seam_splits(one, blocks, seams, seams)
    res["truth_objects_crossing_seams"], res["of_those_split_in_blocks_truth"] = seam_splits(truth, blocks, seams, seams)
    _, res["of_those_split_in_one_piece_truth"] = seam_splits(truth, one, seams, seams)
    if workers:
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "mosaic.tif"
            tifffile.imwrite(path, image)
            client = open_client(f"local:{workers}")
            try:
                cluster = np.zeros(image.shape, np.uint32)
                t = time.perf_counter()
                segment_blocks_on_cluster(client, cfg, path, open_plane(path), cluster, nchan=nchan,
                                          diameter=DIAM, run=run_cfg, scratch_parent=d, block_size=block)
                res["seconds_cluster"] = time.perf_counter() - t
            finally:
                close_client(client)
        res["cluster_workers"] = workers
        res["cluster_labels_equal_single_process_blocks"] = bool(np.array_equal(cluster, blocks))
        res["ap_cluster_vs_blocks"] = _ap(blocks, cluster)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--side", type=int, default=4096)
    ap.add_argument("--block-size", type=int, default=1024)
    ap.add_argument("--workers", type=int, default=2, help="LocalCluster workers (0: skip the cluster run)")
    ap.add_argument("--out", default="blocks_real")
    args = ap.parse_args()
    env = fingerprint()
    result = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "environment": env, "result": run(args.side, args.block_size, args.workers)}
    r = result["result"]
    print(json.dumps(r, indent=1))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps(result, indent=2) + "\n")
    md = [f"# Blocks with a real net on real microscopy ({result['date']})", "",
          f"Command: `{env['command']}`", "",
          f"CPU: {env['cpu']} x{env['cores']}; onnxruntime {env['onnxruntime']}; numba {env['numba']}; "
          f"load average at start: {env['load_average_at_start']}", "",
          f"{r['side']}x{r['side']} mosaic of CTC-sim seq01 frames, model {r['model']}, diameter {r['diameter']}, "
          f"blocks of {r['block_size']} + halo {r['halo']} ({r['blocks']} blocks). Protocol: benchmarks/bench_blocks_real.py.",
          "", "| measure | value |", "|---|---|"]
    md += [f"| {k} | {v:.2f} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in r.items()]
    md += ["", "AP lists are [AP@0.5, AP@0.75, AP@0.9] (cp3rt.metrics.average_precision, first argument = reference)."]
    (RESULTS / f"{args.out}.md").write_text("\n".join(md) + "\n")


if __name__ == "__main__":
    main()
