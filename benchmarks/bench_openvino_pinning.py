"""OpenVINO CPU thread pinning on a shared machine: restore + segment nets (bf16, batch 8 of
224² tiles) compiled as cp3rt's pipeline does (two compiled models in one process), pinning on
(OpenVINO's default) vs off (cp3rt's setting), each in a fresh process, alternating, ``--rounds``.
Prints tiles/s and cores used (process CPU s / wall s) per net.

Run:  .venv/bin/python benchmarks/bench_openvino_pinning.py [--work /tmp/cpu19] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path


def child(work: Path, pin: bool) -> str:
    import numpy as np
    import openvino as ov

    onnx = work / "cache" / "onnx"
    seg = next(onnx.glob("*-fp32-nuclei/nuclei.fp32.onnx"))
    rst = next(onnx.glob("*-fp32-denoise_nuclei/denoise_nuclei.fp32.onnx"))
    xs = np.random.default_rng(0).standard_normal((8, 2, 224, 224)).astype(np.float32)
    out = []
    reqs = []
    for path, x in ((rst, xs[:, :1].copy()), (seg, xs)):
        core = ov.Core()
        cfg = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "bf16", "ENABLE_CPU_PINNING": pin}
        reqs.append((path.stem, core.compile_model(core.read_model(str(path)), "CPU", cfg).create_infer_request(), x))
    for name, req, x in reqs:
        req.infer({0: x})
        samples = []
        for _ in range(3):
            t, c = time.perf_counter(), time.process_time()
            req.infer({0: x})
            samples.append((time.perf_counter() - t, time.process_time() - c))
        wall, cpu = sorted(samples)[1]
        out.append(f"{name} {len(x) / wall:.1f} tiles/s, {cpu / wall:.2f} cores")
    return "; ".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", default="/tmp/cpu19")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--child", choices=("on", "off"))
    args = ap.parse_args()
    if args.child:
        print(child(Path(args.work), args.child == "on"))
        return
    for r in range(args.rounds):
        for pin in ("on", "off"):
            res = subprocess.run([sys.executable, __file__, "--work", args.work, "--child", pin],
                                 capture_output=True, text=True, check=True).stdout.strip()
            print(f"round {r} pinning {pin}: {res} (load {os.getloadavg()[0]:.1f})", flush=True)


if __name__ == "__main__":
    main()
