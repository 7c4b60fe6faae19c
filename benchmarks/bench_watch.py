"""``cp3rt watch`` latency: images dropped into a watched folder at fixed rates (issue 18 item 5).

Protocol
--------
* Image: the shipped sample ``src/cp3rt/assets/samples/dsb2018_nuclei.tif`` (512 x 512 uint16,
  ~116 nuclei), in its four 90-degree rotations so successive files differ. Model: the shipped
  ``cp3rt_nuclei.onnx``, ``--diameter 17``, backend ``ort`` (CPU), all else default. Every
  cp3rt process gets ``LD_PRELOAD`` of tcmalloc when the library is present (fingerprinted).
* A drop is ``tifffile.imwrite`` straight to the final name in the watched folder (as a camera
  driver writes); "file complete" is ``time.time()`` after the write returned. "Masks written"
  is the ``time`` of the file's record in ``cp3rt_watch.jsonl``, appended right after its
  outputs were renamed into place (same clock, same machine). Latency = written - complete; it
  includes the settle interval (``--settle``, default 0.5 s) and the time spent in the queue.
* Cold first image: a fresh watch process gets one image once it says it is watching:
  (a) on empty caches (numba cache dir and cp3rt cache, through NUMBA_CACHE_DIR /
  CP3RT_CACHE_DIR), nothing prepared; (b) on empty caches after ``cp3rt warmup`` (when the
  command exists); (c) on the caches (a) filled (a restart). With the start -> watching time.
* Rates: one warm watch process; its service time s is the median processing seconds of images
  3-5 of 5 dropped one at a time (the first two warm the process up). Then for each factor f in
  ``--rates`` (multiples of 1/s), ``--n-per-rate`` images are dropped every s/f seconds.
  Reported per rate: latency p50 / p99 (numpy's interpolated percentiles: with 12 images the
  p99 is nearly their max), the backlog (dropped, not yet written) at each drop, and whether it
  grew (backlog at the last drop > 1). The highest rate without growth is the highest sustained
  rate measured.
* Against ``cp3rt run`` per file: ``--run-files`` images, one ``cp3rt run FILE`` process each
  (warm caches), started as soon as the file is complete: latency = that process's wall time,
  so the highest rate of run-per-file is 1 / its median.
Results: benchmarks/results/watch_latency.json and watch_latency.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import tifffile
from _scale_common import RESULTS, fingerprint

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "src" / "cp3rt" / "assets" / "samples" / "dsb2018_nuclei.tif"
MODEL = ROOT / "src" / "cp3rt" / "assets" / "models" / "cp3rt_nuclei.onnx"
TCMALLOC = Path("/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4")
OPTS = ["--model", str(MODEL), "--diameter", "17", "--backend", "ort"]
IMAGES = [np.ascontiguousarray(np.rot90(tifffile.imread(SAMPLE), k)) for k in range(4)]


def _env(caches: Path) -> dict[str, str]:
    env = dict(os.environ, NUMBA_CACHE_DIR=str(caches / "numba"), CP3RT_CACHE_DIR=str(caches / "cp3rt"),
               COLUMNS="200")
    if TCMALLOC.exists():
        env["LD_PRELOAD"] = str(TCMALLOC)
    return env


def _cp3rt(*args: str) -> list[str]:
    return [sys.executable, "-m", "cp3rt.cli.app", *args]


class Watch:
    """A ``cp3rt watch`` process on ``folder``; ``records()`` reads its journal."""

    def __init__(self, folder: Path, out: Path, caches: Path, settle: float) -> None:
        self.out, self.t_start = out, time.time()
        self.proc = subprocess.Popen(_cp3rt("watch", str(folder), *OPTS, "--out", str(out), "--settle", str(settle)),
                                     env=_env(caches), stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        self.lines: list[str] = []
        self.watching = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        if not self.watching.wait(600):
            raise RuntimeError("watch did not start:\n" + "\n".join(self.lines))
        self.t_watching = time.time()

    def _read(self) -> None:
        for line in self.proc.stderr:  # type: ignore[union-attr]
            self.lines.append(line.rstrip())
            if line.startswith("watching"):
                self.watching.set()

    def records(self) -> dict[str, dict]:
        path = self.out / "cp3rt_watch.jsonl"
        if not path.exists():
            return {}
        recs = [json.loads(x) for x in path.read_text().splitlines() if x.endswith("}")]
        return {r["file"]: r for r in recs}

    def wait_for(self, names: list[str], seconds: float = 900) -> dict[str, dict]:
        deadline = time.monotonic() + seconds
        while True:
            recs = self.records()
            if all(n in recs for n in names):
                return recs
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("watch stopped or timed out:\n" + "\n".join(self.lines[-20:]))
            time.sleep(0.01)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(120)


def _drop(folder: Path, name: str, k: int) -> float:
    tifffile.imwrite(folder / name, IMAGES[k % 4])
    return time.time()


def _cold(work: Path, label: str, settle: float, caches: Path, warmup: bool) -> dict:
    folder, out = work / f"cold_{label}", work / f"cold_{label}_out"
    folder.mkdir()
    res: dict = {"label": label}
    if warmup:
        t = time.time()
        subprocess.run(_cp3rt("warmup", *OPTS[:2], "--backend", "ort", "--no-volumes"), env=_env(caches),
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        res["warmup_s"] = round(time.time() - t, 2)
    watch = Watch(folder, out, caches, settle)
    res["start_to_watching_s"] = round(watch.t_watching - watch.t_start, 2)
    t_done = _drop(folder, "first.tif", 0)
    rec = watch.wait_for(["first.tif"])["first.tif"]
    watch.stop()
    res.update(latency_s=round(rec["time"] - t_done, 2), processing_s=rec["seconds"])
    return res


def _rate(watch: Watch, folder: Path, tag: str, interval: float, n: int) -> dict:
    names, complete, backlog = [f"{tag}_{i:03d}.tif" for i in range(n)], {}, []
    t_next = time.monotonic()
    for i, name in enumerate(names):
        time.sleep(max(0.0, t_next - time.monotonic()))
        t_next += interval
        recs = watch.records()
        backlog.append(sum(1 for x in names[:i] if x not in recs))
        complete[name] = _drop(folder, name, i)
    recs = watch.wait_for(names)
    lat = np.array([recs[x]["time"] - complete[x] for x in names])
    detect = np.array([recs[x]["ready"] - complete[x] for x in names])
    return {"interval_s": round(interval, 3), "rate_per_s": round(1 / interval, 3), "n": n,
            "latency_p50_s": round(float(np.percentile(lat, 50)), 3),
            "latency_p99_s": round(float(np.percentile(lat, 99)), 3),
            "complete_to_ready_p50_s": round(float(np.median(detect)), 3),
            "backlog_at_drops": backlog, "grew": backlog[-1] > 1}


def _run_per_file(work: Path, caches: Path, n: int) -> dict:
    folder = work / "run_each"
    folder.mkdir()
    lat = []
    for i in range(n):
        _drop(folder, f"r{i}.tif", i)
        t = time.time()
        subprocess.run(_cp3rt("run", str(folder / f"r{i}.tif"), *OPTS, "--out", str(work / "run_each_out")),
                       env=_env(caches), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        lat.append(time.time() - t)
    return {"n": n, "latency_s": [round(x, 2) for x in lat], "latency_p50_s": round(float(np.median(lat)), 3),
            "max_rate_per_s": round(1 / float(np.median(lat)), 3)}


def _has_warmup(caches: Path) -> bool:
    return subprocess.run(_cp3rt("warmup", "--help"), env=_env(caches), stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL).returncode == 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rates", type=float, nargs="+", default=[0.5, 0.8, 1.0, 1.25, 1.6])
    ap.add_argument("--n-per-rate", type=int, default=12)
    ap.add_argument("--settle", type=float, default=0.5)
    ap.add_argument("--run-files", type=int, default=4)
    ap.add_argument("--name", default="watch_latency")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_watch_"))
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    env_fp = fingerprint()
    env_fp["tcmalloc_preloaded"] = TCMALLOC.exists()  # preloaded into every cp3rt process, not this one
    env_fp["git"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                   text=True).stdout.strip()
    try:
        cold_caches = work / "caches_a"
        cold = [_cold(work, "nothing_prepared", args.settle, cold_caches, warmup=False)]
        has_warmup = _has_warmup(work / "caches_b")
        if has_warmup:
            cold.append(_cold(work, "after_cp3rt_warmup", args.settle, work / "caches_b", warmup=True))
        cold.append(_cold(work, "caches_filled_by_a_previous_session", args.settle, cold_caches, warmup=False))
        folder = work / "rates"
        folder.mkdir()
        watch = Watch(folder, work / "rates_out", cold_caches, args.settle)
        for i in range(5):  # one at a time: the process warm, then the service time
            _drop(folder, f"service_{i}.tif", i)
            watch.wait_for([f"service_{i}.tif"])
        s = float(np.median([watch.records()[f"service_{i}.tif"]["seconds"] for i in range(2, 5)]))
        rates = [_rate(watch, folder, f"f{f:g}", s / f, args.n_per_rate) for f in args.rates]
        watch.stop()
        run_each = _run_per_file(work, cold_caches, args.run_files)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    env_fp["load_average_at_end"] = os.getloadavg()
    result = {"started": started, "environment": env_fp, "settle_s": args.settle, "service_s": round(s, 3),
              "warmup_command": has_warmup, "cold": cold, "rates": rates, "run_per_file": run_each}
    (RESULTS / f"{args.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / f"{args.name}.md").write_text(_markdown(result))
    print(_markdown(result))


def _markdown(r: dict) -> str:
    e = r["environment"]
    lines = [f"# cp3rt watch: latency from file complete to masks written ({r['started']})", "",
             f"Command: `{e['command']}`", "",
             f"CPU: {e['cpu']} x{e['cores']}; tcmalloc preloaded into the cp3rt processes: {e['tcmalloc_preloaded']}; "
             f"load average at start / end: {tuple(round(x, 2) for x in e['load_average_at_start'])} / "
             f"{tuple(round(x, 2) for x in e.get('load_average_at_end', ()))} (the machine is shared); onnxruntime "
             f"{e['onnxruntime']}, numba {e['numba']}, Python {e['python']}; cp3rt at {e['git']}", "",
             "Image: the shipped sample (512 x 512, ~116 nuclei), model cp3rt_nuclei.onnx, --diameter 17, "
             f"--backend ort; settle interval {r['settle_s']} s (in every latency below). Protocol: the script's docstring.",
             "", "## Cold first image", "", "| session | start -> watching s | cp3rt warmup s | latency s | of which processing s |",
             "|---|---|---|---|---|"]
    for c in r["cold"]:
        lines.append(f"| {c['label'].replace('_', ' ')} | {c['start_to_watching_s']} | {c.get('warmup_s', '-')} | "
                     f"{c['latency_s']} | {c['processing_s']} |")
    if not r["warmup_command"]:
        lines += ["", "`cp3rt warmup` was not in this checkout: the warm row is a session started on the caches "
                  "the first session filled (what a warm-up leaves)."]
    lines += ["", f"## Fixed rates (one warm watch process; service time s = {r['service_s']} s per image)", "",
              "| rate /s | every s | images | latency p50 s | latency p99 s | complete -> ready p50 s | backlog at the drops | grew |",
              "|---|---|---|---|---|---|---|---|"]
    for x in r["rates"]:
        lines.append(f"| {x['rate_per_s']} | {x['interval_s']} | {x['n']} | {x['latency_p50_s']} | {x['latency_p99_s']} | "
                     f"{x['complete_to_ready_p50_s']} | {' '.join(map(str, x['backlog_at_drops']))} | {x['grew']} |")
    ok = [x["rate_per_s"] for x in r["rates"] if not x["grew"]]
    lines += ["", "Backlog = images dropped and not yet written when the next one is dropped (the one in flight "
              "included); it grew when more than one was waiting at the last drop.", f"Highest sustained rate measured (no backlog growth): **{max(ok) if ok else 'none'} images/s**.", "",
              "## cp3rt run per file (a new process per image, warm caches)", "",
              f"Latency p50 {r['run_per_file']['latency_p50_s']} s over {r['run_per_file']['n']} files "
              f"({', '.join(map(str, r['run_per_file']['latency_s']))}); highest rate one process at a time: "
              f"{r['run_per_file']['max_rate_per_s']} images/s.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
