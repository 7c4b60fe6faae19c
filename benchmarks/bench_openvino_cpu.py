"""OpenVINO vs onnxruntime as the CPU backend, on the same ONNX graphs (issue 19).

Protocol
--------
* Graphs: cp3rt's fp32 ONNX exports of the trained starters embedded at Cellpose width
  (``denoise_nuclei`` restore, ``nuclei`` segment; built by ``bench_cpu_speed.py --prepare``,
  the graphs the end-to-end benchmark runs) and the shipped narrow starter graphs.
* Inputs: a batch of 8 tiles of 224 x 224 (the default tiling's batch) and one 320 x 320 tile
  (what ``--tile-size 448`` gives a 1024 x 1024 image at diameter 60), random normal values.
* Backends: onnxruntime CPU with cp3rt's engine options (``OrtEngine``: intra-op threads = one
  per physical core, no spinning), OpenVINO CPU with ``INFERENCE_PRECISION_HINT=f32`` (fp32
  arithmetic, as onnxruntime; on AMX/AVX512-BF16 CPUs OpenVINO otherwise runs bf16) and, for
  information only, OpenVINO's default hint (bf16 on this CPU). Same thread count, latency hint.
* Timing: per shape, the backends alternate call by call (warm-up 2 calls each), ``--repeats``
  rounds; median seconds per call, tiles/s. Outputs are compared with onnxruntime's (max abs
  error per output).

Run:  .venv/bin/python benchmarks/bench_openvino_cpu.py [--work /tmp/cpu19]
      (results -> benchmarks/results/openvino_cpu.json and .md)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ASSETS = HERE.parent / "src" / "cp3rt" / "assets" / "models"
SHAPES = {"8 x 224x224": (8, 224, 224), "1 x 320x320": (1, 320, 320)}


def _graphs(work: Path) -> dict[str, Path]:
    found = {f"{n} (Cellpose width)": next((work / "cache" / "onnx").glob(f"*-fp32-{n}/{n}.fp32.onnx"))
             for n in ("denoise_nuclei", "nuclei")}
    found.update({f"{n} (shipped, narrow)": ASSETS / f"{n}.onnx" for n in ("cp3rt_denoise_nuclei", "cp3rt_nuclei")})
    return found


def _runners(path: Path, threads: int) -> dict:
    import openvino as ov

    from cp3rt.engines.ort import OrtEngine

    ort = OrtEngine(path, threads=threads)
    core = ov.Core()
    model = core.read_model(str(path))
    runners = {"onnxruntime fp32": lambda x: ort.infer(x)}
    for label, hint in (("openvino fp32", {"INFERENCE_PRECISION_HINT": "f32"}), ("openvino default (bf16)", {})):
        compiled = core.compile_model(model, "CPU", {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads, **hint})
        request = compiled.create_infer_request()
        names = [o.get_any_name() for o in compiled.outputs]

        def run(x, request=request, names=names):
            request.infer({0: x})
            return {n: request.get_tensor(n).data.copy() for n in names}

        runners[label] = run
    return runners


def measure(path: Path, shape: tuple[int, int, int], repeats: int, threads: int) -> dict:
    runners = _runners(path, threads)
    import onnx

    nchan = onnx.load(str(path), load_external_data=False).graph.input[0].type.tensor_type.shape.dim[1].dim_value
    x = np.random.default_rng(0).standard_normal((shape[0], nchan, shape[1], shape[2])).astype(np.float32)
    ref = runners["onnxruntime fp32"](x)
    times: dict[str, list[float]] = {k: [] for k in runners}
    errors = {}
    for k, run in runners.items():
        out = run(x)
        run(x)
        errors[k] = {n: float(np.abs(out[n] - ref[n]).max()) for n in ref}
    for _ in range(repeats):
        for k, run in runners.items():
            t = time.perf_counter()
            run(x)
            times[k].append(time.perf_counter() - t)
    return {k: {"median_s": statistics.median(v), "min_s": min(v), "max_s": max(v),
                "tiles_per_s": shape[0] / statistics.median(v), "max_abs_err_vs_ort": errors[k]}
            for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", default="/tmp/cpu19")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--out", default=str(HERE / "results" / "openvino_cpu"))
    args = ap.parse_args()
    import onnxruntime
    import openvino

    from cp3rt.engines.probe import cpu_model

    res: dict = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                 "cpu": cpu_model(), "threads": args.threads, "repeats": args.repeats,
                 "onnxruntime": onnxruntime.__version__, "openvino": openvino.__version__,
                 "load_before": list(os.getloadavg()), "results": {}}
    for gname, path in _graphs(Path(args.work)).items():
        for sname, shape in SHAPES.items():
            res["results"][f"{gname}, {sname}"] = measure(path, shape, args.repeats, args.threads)
            print(gname, sname, {k: round(v["tiles_per_s"], 2) for k, v in res["results"][f"{gname}, {sname}"].items()}, flush=True)
    res["load_after"] = list(os.getloadavg())
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(res, indent=2) + "\n")
    out.with_suffix(".md").write_text(_markdown(res))


def _markdown(r: dict) -> str:
    lines = ["# OpenVINO vs onnxruntime, CPU, same ONNX graphs", "",
             f"- date: {r['date']}; CPU: {r['cpu']}; threads {r['threads']}; onnxruntime {r['onnxruntime']}, openvino {r['openvino']}",
             f"- load average before/after (1/5/15 min): {r['load_before']} / {r['load_after']} (machine shared with other jobs)",
             f"- {r['repeats']} alternating rounds per graph and shape; median seconds per call (see the script docstring)", "",
             "| graph, batch | backend | tiles/s | median s | min-max s | vs onnxruntime | max abs err vs ort |",
             "|---|---|---|---|---|---|---|"]
    for key, rows in r["results"].items():
        base = rows["onnxruntime fp32"]["median_s"]
        for name, v in rows.items():
            err = ", ".join(f"{k} {e:.1e}" for k, e in v["max_abs_err_vs_ort"].items())
            lines.append(f"| {key} | {name} | {v['tiles_per_s']:.2f} | {v['median_s']:.3f} | "
                         f"{v['min_s']:.3f}-{v['max_s']:.3f} | {base / v['median_s']:.2f}x | {err} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
