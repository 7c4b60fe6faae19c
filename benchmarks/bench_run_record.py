"""What keeping the run record up to date costs as a run grows (a day-long `cp3rt watch`, a
screen of many thousand files): one rewrite of the record at N images, and the share of each
image's time that rewriting takes.

Protocol
--------
* The record of ``cp3rt run`` (``start_run_record``), filled with N image entries shaped as a real
  run writes them (path, status, objects, diameter, 6 stage timings, 2 outputs); then
  ``RunRecorder.write()`` timed ``--rounds`` times (median): JSON encoding, the atomic
  temporary file, fsync and rename, onto this machine's disk.
* ``add()`` rewrites the record when its last write is older than the flush interval, so with
  images slower than that interval every image pays one rewrite: the overhead per image is the
  write time over the image's seconds (``--image-seconds``, a 1024² restore -> segment on this
  2-core CPU is about 2 s; a GPU run is far faster, so its share is larger).
* In the same run, the same record written as before commit "run record: one line per image"
  (``json.dumps(record, indent=2)``, the pure-Python encoder, one rewrite per image).
* Overhead now: ``add()`` rewrites at most every max(FLUSH_SECONDS, FLUSH_COST_FACTOR x the last
  write's seconds), so the share of an image's time is write / max(image, flush, factor x write).
Run:  .venv/bin/python benchmarks/bench_run_record.py   (-> results/run_record.{md,json})
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def filled_recorder(folder: Path, n: int):  # noqa: ANN201
    from cp3rt.runtime import OutputOptions, PipelineConfig, RunConfig
    from cp3rt.runtime.batch.files import ImageOutcome
    from cp3rt.runtime.batch.run_record import start_run_record

    out = folder / f"n{n}"
    out.mkdir()
    recorder = start_run_record(PipelineConfig(), None, out, run=RunConfig(), outputs=OutputOptions(out_dir=out),
                                command=["cp3rt", "watch", "/data/acq"], flush_seconds=1e9)
    timings = {"read": 0.012, "normalize": 0.051, "restore": 0.83, "segment": 0.91, "dynamics": 0.24, "write": 0.02}
    for i in range(n):
        stem = f"/data/acq/plate07/A{i % 24:02d}/t{i:06d}"
        recorder.add(ImageOutcome(Path(f"{stem}.tif"), "done", n_objects=150 + i % 90, timings=timings,
                                  outputs=(Path(f"{stem}_cp_masks.tif"), Path(f"{stem}_cp_objects.csv")),
                                  diameter=27.5))
    return recorder


def write_as_before(recorder, path: Path) -> None:  # noqa: ANN001
    """The record as the recorder wrote it before: the whole of it through ``indent=2``."""
    import json

    from cp3rt._fs import atomic_write_bytes

    data = {**recorder.record.to_dict(), "complete": False, "finished": None, "summary": None,
            "images": list(recorder._entries)}
    atomic_write_bytes(path, (json.dumps(data, indent=2, allow_nan=False) + "\n").encode("utf-8"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10_000, 50_000])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--image-seconds", type=float, default=2.0)
    ap.add_argument("--out", default="run_record")
    args = ap.parse_args()
    from _scale_common import fingerprint, write_results

    from cp3rt.runtime.batch.run_record import FLUSH_COST_FACTOR, FLUSH_SECONDS

    started, env = datetime.datetime.now().isoformat(timespec="seconds"), fingerprint()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_run_record_", dir=HERE.parent) as tmp:  # the repo's disk
        for n in args.sizes:
            recorder = filled_recorder(Path(tmp), n)
            now, before = [], []
            for _ in range(args.rounds):
                t0 = time.perf_counter()
                path = recorder.write()
                t1 = time.perf_counter()
                write_as_before(recorder, path.with_name("before.json"))
                now.append(t1 - t0)
                before.append(time.perf_counter() - t1)
            w_now, w_before = statistics.median(now), statistics.median(before)
            interval = max(args.image_seconds, FLUSH_SECONDS, FLUSH_COST_FACTOR * w_now)
            rows.append({"images": n, "write_s": w_now, "bytes": path.stat().st_size, "write_before_s": w_before,
                         "bytes_before": path.with_name("before.json").stat().st_size,
                         "overhead_per_image": w_now / interval, "overhead_before": w_before / args.image_seconds})
            print(rows[-1], flush=True)
    result = {"date": started, "environment": env, "image_seconds": args.image_seconds, "rows": rows,
              "flush_seconds": FLUSH_SECONDS, "flush_cost_factor": FLUSH_COST_FACTOR}
    write_results(args.out, result, report(result))


def report(res: dict) -> str:
    from _scale_common import environment_line

    env = res["environment"]
    md = [f"# Cost of rewriting the run record as a run grows ({res['date']})", "",
          f"Command: `{env['command']}`", "", environment_line(env), "",
          f"Images of {res['image_seconds']:g} s each. Before: the whole record through `json.dumps(indent=2)`, "
          "rewritten after every image. Now: one line per image through the C encoder, rewritten at most every "
          f"max({res['flush_seconds']:g} s, {res['flush_cost_factor']} x the last write).", "",
          "| images in the record | rewrite before (s) | rewrite now (s) | file before / now (MB) | "
          "share of each image's time before | now |", "|---|---|---|---|---|---|"]
    for r in res["rows"]:
        md.append(f"| {r['images']} | {r['write_before_s']:.4f} | {r['write_s']:.4f} | "
                  f"{r['bytes_before'] / 1e6:.2f} / {r['bytes'] / 1e6:.2f} | "
                  f"{100 * r['overhead_before']:.2f} % | {100 * r['overhead_per_image']:.2f} % |")
    return "\n".join(md) + "\n"


if __name__ == "__main__":
    main()
