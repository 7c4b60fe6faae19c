"""Many-core hosts (issue 16 item 4): do the dynamics let other threads run, and does the
streaming engine use the cores?

Protocol
--------
* GIL: a 1024² scene of discs (``disc_labels``; flows = masks_to_flows x 5, cellprob +-5, mild
  seeded noise) goes through ``compute_masks`` in a loop on one thread with one numba thread,
  while the main thread counts in pure Python. Reported: the main thread's count rate during
  the dynamics over its rate with the dynamics idle, i.e. the fraction of the dynamics' wall time
  in which another Python thread can run (1.0: the dynamics never hold the GIL; on a 2-core
  machine both threads have a core of their own), and the dynamics' seconds per call.
* GIL convoy: the same 1024² dynamics on one thread, alone, beside a pure-Python thread and
  beside a thread spinning in a nogil numba loop (the CPU contention without the GIL one), with
  Python's 5 ms switch interval and with the stream's 0.5 ms.
* Stream: ``--n-images`` mixed-size blob images (bench_stream's folder, seed 0) through a small
  random-init net (nbase [2,8,16,32,64], ONNX, onnxruntime CPU, diameter 30), by the plain loop
  (``run_batch``) and by ``stream_batch`` in each configuration of ``--stream`` (``W`` workers,
  or ``WxK``: K numba threads per worker; ``auto`` = the defaults; ``@MS`` / ``@off``: the GIL
  switch interval). Warm-up on 4 images first.
* Every measurement runs in a fresh interpreter (numba's thread pool and layer are per process);
  ``--rev REV`` also measures the code at git revision REV (a temporary worktree, same
  benchmark code) as the 'before', and rounds alternate between the two so load drifts hit both.
* Masks: every configuration's label images are compared with the current code's plain loop.
Results: benchmarks/results/<--out>.json and .md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
SRC = HERE.parent / "src"


# ------------------------------------------------------------------ inner measurements (one process)
def _scene(side: int = 1024, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    from _scale_common import disc_labels

    from cp3rt.runtime.dynamics import masks_to_flows

    lab = disc_labels(0, side, side, seed)
    rng = np.random.default_rng(seed)
    dP = (5 * masks_to_flows(lab) + rng.normal(0, 0.3, (2, side, side))).astype(np.float32)
    cellprob = (np.where(lab > 0, 5.0, -5.0) + rng.normal(0, 1.0, lab.shape)).astype(np.float32)
    return dP, cellprob


def _count_for(seconds: float) -> float:
    n, end = 0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        n += 1
    return n / seconds


def _image_job(model: str):
    """One 1024² image through the whole host path: normalise, tiles, net (1 ORT thread), blend,
    dynamics, as ``Pipeline.run`` does it."""
    from _scale_common import SmallNetEngine, blob_image

    from cp3rt import Pipeline
    from cp3rt.runtime.config import RunConfig

    run = RunConfig(diameter=30.0, channels=(0, 0))
    pipe = Pipeline.from_engines(SmallNetEngine(Path(model), threads=1), run=run)
    image = blob_image((1024, 1024), 650, 0)
    return lambda: pipe.run(image)


def inner_gil(seconds: float, what: str, model: str | None) -> dict:
    import numba

    if what == "dynamics":
        from cp3rt.runtime.dynamics import compute_masks

        dP, cellprob = _scene()

        def job():
            return compute_masks(dP, cellprob)
    else:
        job = _image_job(model)
    job()  # compile / load the kernels, warm the engine
    calls, stop = [], threading.Event()

    def dynamics() -> None:
        numba.set_num_threads(1)  # one core for the job, the other for the counting thread
        while not stop.is_set():
            t = time.perf_counter()
            job()
            calls.append(time.perf_counter() - t)

    solo = threading.Thread(target=dynamics)  # the job on its own thread, nobody counting
    calls_before = len(calls)
    solo.start()
    time.sleep(seconds)
    stop.set()
    solo.join()
    job_alone = statistics.median(calls[calls_before:])
    stop.clear()
    del calls[:]
    alone = _count_for(seconds)
    worker = threading.Thread(target=dynamics)
    worker.start()
    time.sleep(0.2)
    during = _count_for(seconds)
    stop.set()
    worker.join()
    import cp3rt

    return {"cp3rt": cp3rt.__file__, "count_rate_alone": alone, "count_rate_during": during, "free_fraction": during / alone,
            "job_s_alone": job_alone, "dynamics_s_per_call": statistics.median(calls), "calls": len(calls)}


def inner_convoy(seconds: float) -> dict:
    import numba

    from cp3rt.runtime.dynamics import compute_masks

    dP, cellprob = _scene()
    compute_masks(dP, cellprob)

    @numba.njit(nogil=True)
    def spin(n):  # pragma: no cover - compiled
        x = 0.0
        for i in range(n):
            x += np.sin(i)
        return x

    spin(10)

    def beside(kind: str, stop: threading.Event) -> None:
        while not stop.is_set():
            if kind == "python":
                n = 0
                for _ in range(100_000):
                    n += 1
            else:
                spin(2_000_000)

    def timed() -> float:
        numba.set_num_threads(1)
        out, end = [], time.perf_counter() + seconds
        while time.perf_counter() < end:
            t = time.perf_counter()
            compute_masks(dP, cellprob)
            out.append(time.perf_counter() - t)
        return statistics.median(out)

    result = {}
    for interval in (0.005, 0.0005):
        sys.setswitchinterval(interval)
        for kind in ("alone", "nogil spinner", "python"):
            stop, other = threading.Event(), None
            if kind != "alone":
                other = threading.Thread(target=beside, args=(kind, stop))
                other.start()
            got: list = []
            job = threading.Thread(target=lambda: got.append(timed()))
            job.start()
            job.join()
            stop.set()
            if other:
                other.join()
            result[f"{interval * 1000:g} ms, {kind}"] = got[0]
    return result


def inner_stream(model: str, images: list[str], out: str, spec: str) -> dict:
    from _scale_common import SmallNetEngine

    from cp3rt import Pipeline
    from cp3rt.runtime.batch.files import OutputOptions, run_batch
    from cp3rt.runtime.batch.stream import StreamConfig, stream_batch
    from cp3rt.runtime.config import RunConfig

    run = RunConfig(diameter=30.0, channels=(0, 0))
    paths = [Path(p) for p in images]
    pipe = Pipeline.from_engines(SmallNetEngine(Path(model)), run=run)
    if spec == "plain":
        def go(dest, imgs):
            return run_batch(pipe, imgs, run, OutputOptions(out_dir=dest, overwrite=True))
        config = {}
    else:
        kw: dict = {}
        shape, _, switch = spec.partition("@")
        if shape != "auto":
            workers, _, threads = shape.partition("x")
            kw["workers"] = int(workers)
            if threads:
                kw["kernel_threads"] = int(threads)
        if switch:
            kw["gil_switch_s"] = None if switch == "off" else float(switch) / 1000
        cfg = StreamConfig(**kw)
        config = {"workers": cfg.workers, "kernel_threads": getattr(cfg, "kernel_threads", None),
                  "gil_switch_s": getattr(cfg, "gil_switch_s", None)}
        if hasattr(cfg, "threads_per_worker"):
            config["threads_per_worker"] = cfg.threads_per_worker()

        def go(dest, imgs):
            return stream_batch(pipe, imgs, run, OutputOptions(out_dir=dest, overwrite=True), stream=cfg)
    go(Path(out) / "warm", paths[:4])
    t = time.perf_counter()
    summary = go(Path(out) / "masks", paths)
    seconds = time.perf_counter() - t
    pipe.close()
    assert summary.ok, [o.error for o in summary.outcomes if o.error]
    return {"seconds": seconds, "config": config, "objects": sum(o.n_objects for o in summary.outcomes),
            "masks": [str(o.outputs[-1]) for o in summary.outcomes]}


# ------------------------------------------------------------------ outer: fresh processes, rounds
def _spawn(src: Path, args: list[str], env_extra: dict | None = None) -> dict:
    env = dict(os.environ, PYTHONPATH=str(src), **(env_extra or {}))
    proc = subprocess.run([sys.executable, __file__, "--inner", *args], env=env, capture_output=True, text=True,
                          timeout=3600)
    if proc.returncode != 0:
        raise SystemExit(f"inner run failed ({args}): {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _worktree(rev: str) -> Path:
    where = Path(tempfile.mkdtemp(prefix="bench_cores_rev_")) / "tree"
    subprocess.run(["git", "-C", str(HERE.parent), "worktree", "add", "--detach", str(where), rev],
                   check=True, capture_output=True)
    return where


def _same_masks(a: list[str], b: list[str]) -> int:
    import tifffile

    return sum(bool(np.array_equal(tifffile.imread(x), tifffile.imread(y))) for x, y in zip(a, b))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--inner":
        kind, rest = sys.argv[2], sys.argv[3:]
        if kind == "convoy":
            out = inner_convoy(float(rest[0]))
        elif kind == "gil":
            out = inner_gil(float(rest[0]), rest[1], rest[2])
        else:
            out = inner_stream(rest[0], json.loads(rest[1]), rest[2], rest[3])
        print(json.dumps(out))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rev", default=None, help="also measure this git revision (the 'before')")
    ap.add_argument("--n-images", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--gil-seconds", type=float, default=4.0)
    ap.add_argument("--stream", nargs="+", default=["plain", "auto", "auto@0.5", "3x1"],
                    help="configurations: plain, or a stream: auto (the defaults) or W (workers) or WxK (K numba "
                         "threads per worker), optionally @MS (GIL switch interval in ms) or @off (Python's own)")
    ap.add_argument("--before-stream", nargs="+", default=["plain", "3"], help="configurations run on --rev")
    ap.add_argument("--out", default="cores")
    args = ap.parse_args()

    from _scale_common import fingerprint, small_net_onnx, write_results
    from bench_stream import make_folder

    env = fingerprint()
    env["numba_threads_default"] = os.environ.get("NUMBA_NUM_THREADS", "all cores")
    work = Path(tempfile.mkdtemp(prefix="bench_cores_"))
    (work / "in").mkdir()
    images = [str(p) for p in make_folder(work / "in", args.n_images)]
    model = str(small_net_onnx(work / "net"))
    trees = {"after": SRC}
    if args.rev:
        trees["before"] = _worktree(args.rev) / "src"
    plan = [(who, "gil", what) for who in trees for what in ("dynamics", "image")] + [("after", "convoy", None)]
    plan += [("after", "stream", s) for s in args.stream]
    plan += [("before", "stream", s) for s in (args.before_stream if args.rev else [])]
    rows: dict[tuple, list] = {}
    for r in range(args.rounds):
        for who, kind, spec in (plan if r % 2 == 0 else plan[::-1]):
            key = (who, kind, spec)
            if kind == "convoy":
                res = _spawn(trees[who], ["convoy", str(args.gil_seconds)])
            elif kind == "gil":
                res = _spawn(trees[who], ["gil", str(args.gil_seconds), spec, model])
            else:
                dest = work / f"{who}_{spec}_{r}"
                res = _spawn(trees[who], ["stream", model, json.dumps(images), str(dest), spec])
            rows.setdefault(key, []).append(res)
            print(who, kind, spec or "", {k: v for k, v in res.items() if k != "masks"}, flush=True)
    reference = rows[("after", "stream", "plain")][-1]["masks"] if ("after", "stream", "plain") in rows else None
    result = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "environment": env,
              "rev_before": args.rev, "n_images": len(images), "rounds": args.rounds, "gil": {}, "stream": {},
              "convoy": {}}
    for (who, kind, spec), runs in rows.items():
        if kind == "convoy":
            result["convoy"] = {k: [x[k] for x in runs] for k in runs[0]}
        elif kind == "gil":
            result["gil"][f"{who} {spec}"] = {"cp3rt": runs[-1]["cp3rt"], "free_fraction": [x["free_fraction"] for x in runs],
                                  "job_s_alone": [x["job_s_alone"] for x in runs],
                                  "dynamics_s_per_call": [x["dynamics_s_per_call"] for x in runs]}
        else:
            secs = [x["seconds"] for x in runs]
            result["stream"][f"{who} {spec}"] = {
                "seconds": secs, "median_s": statistics.median(secs),
                "images_per_s": len(images) / statistics.median(secs), "config": runs[-1]["config"],
                "objects": runs[-1]["objects"],
                "identical_to_after_plain": _same_masks(runs[-1]["masks"], reference) if reference else None}
    if args.rev:  # leave no worktree registered in the repository
        subprocess.run(["git", "-C", str(HERE.parent), "worktree", "remove", "--force", str(trees["before"].parent)],
                       check=False, capture_output=True)
    write_results(args.out, result, report(result))


def report(res: dict) -> str:
    from _scale_common import environment_line

    env = res["environment"]
    md = [f"# Many-core hosts: GIL and streaming ({res['date']})", "",
          f"Command: `{env['command']}`", "",
          environment_line(env),
          f"Before = git revision {res['rev_before']}; after = this tree. {res['n_images']} images, "
          f"{res['rounds']} rounds (alternating order), each measurement in a fresh interpreter.", "",
          "## The GIL (1024², 1 numba thread, 1 onnxruntime thread)", "",
          "`dynamics`: compute_masks alone; `image`: Pipeline.run of a blob image (normalise, tiles, net, "
          "blend, dynamics). Fraction = another Python thread's progress during the job / alone; "
          "1 - fraction is the share of the job's wall that holds the GIL.", "",
          "| code, job | other thread runs (fraction of its alone rate), per round | job s/call alone | job s/call beside the counting thread |", "|---|---|---|---|"]
    for who, g in res["gil"].items():
        md.append(f"| {who} | {' / '.join(f'{x:.2f}' for x in g['free_fraction'])} | "
                  f"{' / '.join(f'{x:.3f}' for x in g['job_s_alone'])} | "
                  f"{' / '.join(f'{x:.3f}' for x in g['dynamics_s_per_call'])} |")
    md += ["", "## GIL convoy: 1024² dynamics (s/call, 1 numba thread) beside another thread", "",
           "| switch interval, beside | s/call per round |", "|---|---|"]
    for name, vals in res["convoy"].items():
        md.append(f"| {name} | {' / '.join(f'{x:.3f}' for x in vals)} |")
    md += ["", "## Folder through the streaming engine", "",
           "| code, configuration | workers x numba threads | median s | images/s | rounds (s) | identical masks |",
           "|---|---|---|---|---|---|"]
    for name, s in res["stream"].items():
        c = s["config"]
        shape = (f"{c.get('workers')} x {c.get('threads_per_worker', 'all cores')}, switch "
                 f"{c['gil_switch_s'] * 1000 if c.get('gil_switch_s') else 5:g} ms" if c else "plain loop")
        md.append(f"| {name} | {shape} | {s['median_s']:.1f} | {s['images_per_s']:.2f} | "
                  f"{' / '.join(f'{x:.1f}' for x in s['seconds'])} | {s['identical_to_after_plain']}/{res['n_images']} |")
    return "\n".join(md) + "\n"


if __name__ == "__main__":
    main()
