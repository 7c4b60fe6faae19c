"""How many cores ``cp3rt run`` / ``cp3rt watch`` keep busy, with and without ``--threads``
(an acquisition PC shares its cores with the microscope software: does the cap hold?).

Protocol
--------
* As a user runs it: each measurement is a fresh ``cp3rt`` process; its CPU seconds (user +
  system, every thread: the kernel's rusage of the child) over its wall seconds = the cores it
  kept busy on average, start-up (imports, opening the engines) included.
* Models: the shipped ``cp3rt_denoise_nuclei`` -> ``cp3rt_nuclei`` (the README's quick start),
  onnxruntime CPU, fp32, diameter 17.
* Inputs: GOWT1 mosaics as in bench_workers_memory (``../shared/data/ctc_gowt1_nuclei``):
  one ``--side``² image (``cp3rt run`` of one file: the calling thread runs it), a folder of
  ``--n-images`` of them (``cp3rt run``: the streaming engine), and the same folder under
  ``cp3rt watch --once`` (one image at a time, as on an acquisition PC).
* Each case once without a cap and once per ``--caps`` value; the masks of a capped run are
  compared byte for byte with the uncapped run's.
* A warm-up ``cp3rt warmup`` fills the numba and export caches before anything is timed.
Run:  .venv/bin/python benchmarks/bench_threads_cap.py   (-> results/threads_cap.{md,json})
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
MODELS = ["--model", "cp3rt_nuclei", "--restore", "cp3rt_denoise_nuclei", "--diameter", "17", "--backend", "ort"]


def cases(folder: Path, one: Path) -> dict[str, list[str]]:
    """Command lines by case name (each run adds its own --out)."""
    return {"run one image": ["run", str(one), *MODELS],
            "run folder (stream)": ["run", str(folder), *MODELS],
            "watch --once folder": ["watch", str(folder), "--once", "--settle", "0", *MODELS]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--caps", type=int, nargs="+", default=[1])
    ap.add_argument("--n-images", type=int, default=6)
    ap.add_argument("--side", type=int, default=1536)
    ap.add_argument("--out", default="threads_cap")
    args = ap.parse_args()
    from _scale_common import fingerprint, run_cp3rt, write_results
    from bench_workers_memory import same_bytes, write_inputs

    started, env_start = datetime.datetime.now().isoformat(timespec="seconds"), fingerprint()  # before the load we add
    work = Path(tempfile.mkdtemp(prefix="bench_threads_cap_"))
    folder, _ = write_inputs(work, args.n_images, args.side, 0)
    one = work / "one.tif"
    shutil.copy(sorted(folder.glob("*.tif"))[0], one)
    env = dict(os.environ, PYTHONPATH=str(HERE.parent / "src"), CP3RT_CACHE_DIR=str(work / "cache"))
    subprocess.run([sys.executable, "-m", "cp3rt.cli.app", "warmup", "--model", "cp3rt_nuclei", "--restore", "cp3rt_denoise_nuclei",
                    "--backend", "ort", "--no-volumes"], env=env, check=True, capture_output=True)
    rows = []
    for name, command in cases(folder, one).items():
        for cap in [None, *args.caps]:
            out = work / f"{name.split()[0]}_{len(rows)}"
            res = run_cp3rt([*command, "--out", str(out), *(["--threads", str(cap)] if cap else [])], env)
            first = next((r for r in rows if r["case"] == name), None)
            same, total = same_bytes(out, Path(first["out"]), "*_cp_masks.tif") if first else (None, None)
            rows.append({"case": name, "threads": cap, **res, "cores_busy": res["cpu_seconds"] / res["seconds"],
                         "identical_masks": same, "masks": total, "out": str(out)})
            print(json.dumps(rows[-1]), flush=True)
    result = {"date": started, "environment": env_start,
              "n_images": args.n_images, "side": args.side, "rows": rows}
    write_results(args.out, result, report(result))


def report(res: dict) -> str:
    from _scale_common import environment_line

    env = res["environment"]
    md = [f"# Cores kept busy by `cp3rt run` / `cp3rt watch` with and without `--threads` ({res['date']})", "",
          f"Command: `{env['command']}`", "", environment_line(env), "",
          f"Inputs: {res['n_images']} GOWT1 mosaics of {res['side']}² px (one of them for the single-file case), "
          "restore -> segment (cp3rt_denoise_nuclei -> cp3rt_nuclei, onnxruntime CPU, diameter 17). Cores busy = "
          "CPU seconds (user + system, all threads) / wall seconds of the whole process, start-up included.", "",
          "| case | --threads | wall s | CPU s | cores busy | peak RSS (GiB) | masks identical to the uncapped run's |",
          "|---|---|---|---|---|---|---|"]
    for r in res["rows"]:
        same = f"{r['identical_masks']}/{r['masks']}" if r["masks"] is not None else "(reference)"
        md.append(f"| {r['case']} | {r['threads'] or '-'} | {r['seconds']:.1f} | {r['cpu_seconds']:.1f} | "
                  f"{r['cores_busy']:.2f} | {r['peak_rss_gib']:.2f} | {same} |")
    return "\n".join(md) + "\n"


if __name__ == "__main__":
    main()
