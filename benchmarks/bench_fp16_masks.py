"""fp16 vs fp32 masks with a trained net through ``cp3rt check``: on CPU, the fp16 ONNX graph (the
one a strongly typed TensorRT build compiles) against the fp32 graph; on a GPU
(``--backend torch-cuda``), the torch-CUDA fp16 engine against the fp32 torch net on the CPU.

Protocol
--------
* Weights: a trained Cellpose-v3-format file, ``--weights`` (default: the starter
  ``cp3rt_nuclei``, recovered from its shipped ONNX by ``cp3rt.export.from_onnx``; its sha256
  is recorded). Both graphs are exported from
  it by cp3rt (fp16: fp16 weights/activations, style path fp32).
* Per dataset of ``../shared/data`` (GOWT1 nuclei, CTC-sim seq01, DSB2018 sample), up to
  ``--max-images`` images: ``cp3rt check WEIGHTS --precision fp16 --against ort`` cuts the same
  224x224 tiles for both graphs (flows/style error, worst element) and segments each whole image
  with both (masks at the model's diameter; AP at IoU 0.5/0.75/0.9 of fp16 masks vs fp32 masks).
* ``--backend torch-cuda`` runs ``cp3rt check WEIGHTS --backend torch-cuda --precision fp16
  --against torch``: cuDNN's fp16 kernels on the GPU, the real arithmetic of the GPU path.
* Caveat (ort): onnxruntime CPU has few fp16 kernels and may compute some ops in fp32 between fp16
  tensors; TensorRT's fp16 tactics accumulate differently. This bounds the graph's rounding
  (weights and activations stored in fp16), not a GPU's exact numbers.
Run: .venv/bin/python benchmarks/bench_fp16_masks.py   (results -> results/fp16_masks.{json,md})
     python3 benchmarks/bench_fp16_masks.py --backend torch-cuda --out fp16_masks_gpu   (on a GPU)
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _scale_common import RESULTS, fingerprint  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
DATASETS = {"ctc_gowt1_nuclei": "images", "ctc_sim_nuclei": "images", "stardist_dsb2018_nuclei": "images"}
STARTER_ONNX = Path(__file__).resolve().parents[1] / "src" / "cp3rt" / "assets" / "models" / "cp3rt_nuclei.onnx"


AGAINST = {"ort": "ort", "torch-cuda": "torch"}  # fp32 reference of each backend's fp16 run


def check(weights: Path, images: Path, max_images: int, backend: str) -> dict:
    with tempfile.TemporaryDirectory() as d:
        report = Path(d) / "check.json"
        cmd = [sys.executable, "-m", "cp3rt", "check", str(weights), "--backend", backend, "--precision", "fp16",
               "--against", AGAINST[backend], "--images", str(images), "--max-images", str(max_images),
               "--json", str(report)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if not report.is_file():
            raise RuntimeError(f"cp3rt check failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
        out = json.loads(report.read_text())
        out["exit_code"] = proc.returncode
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", type=Path, default=None, help="default: the starter, recovered from its ONNX")
    ap.add_argument("--max-images", type=int, default=8)
    ap.add_argument("--backend", choices=tuple(AGAINST), default="ort")
    ap.add_argument("--data", type=Path, default=DATA, help="folder holding the datasets (default ../shared/data)")
    ap.add_argument("--out", default="fp16_masks")
    args = ap.parse_args()
    if args.weights is None:
        from cp3rt.export.from_onnx import recover_weight_file

        args.weights = recover_weight_file(STARTER_ONNX, Path(tempfile.mkdtemp()) / "cp3rt_nuclei")
    if not args.weights.is_file():
        raise SystemExit(f"{args.weights}: no such weight file.")
    gpu = None
    if args.backend == "torch-cuda":
        import torch

        gpu = torch.cuda.get_device_name(0)
    env = fingerprint()
    rows = {}
    for name, sub in DATASETS.items():
        r = check(args.weights, args.data / name / sub, args.max_images, args.backend)
        aps = [m["ap"] for m in r["masks"]]
        rows[name] = {
            "images": len(aps), "tiles": r["tiles"], "exit_code": r["exit_code"], "ok": r["ok"],
            "mean_ap": [round(sum(a[i] for a in aps) / len(aps), 4) for i in range(3)],
            "min_ap50": min(a[0] for a in aps),
            "objects_fp32": sum(m["n_reference"] for m in r["masks"]),
            "objects_fp16": sum(m["n_engine"] for m in r["masks"]),
            "outputs": r["outputs"],
        }
        print(name, json.dumps({k: v for k, v in rows[name].items() if k != "outputs"}), flush=True)
    result = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), "environment": env,
              "backend": args.backend, "against": AGAINST[args.backend], "gpu": gpu,
              "weights": str(args.weights), "weights_sha256": hashlib.sha256(args.weights.read_bytes()).hexdigest(),
              "datasets": rows}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps(result, indent=2) + "\n")
    what = "onnxruntime CPU (fp16 graph vs fp32 graph)" if args.backend == "ort" else \
        f"torch-cuda fp16 on {gpu} vs fp32 torch on the CPU"
    md = [f"# fp16 vs fp32 masks, trained starter net, {what} ({result['date']})", "",
          f"Command: `{env['command']}`", "",
          f"CPU: {env['cpu']} x{env['cores']}; onnxruntime {env['onnxruntime']}; torch {env['torch']}; load average at start: "
          f"{env['load_average_at_start']}", "",
          f"Weights: `{args.weights.name}` sha256 {result['weights_sha256'][:16]}... (starter cp3rt_nuclei, MODEL_CARD.md). "
          "Protocol and caveats: benchmarks/bench_fp16_masks.py.", "",
          "| dataset | images | tiles | objects fp32 / fp16 | mean AP@0.5 / 0.75 / 0.9 (fp16 vs fp32) | min AP@0.5 | "
          "flows max abs err | cp3rt check |", "|---|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        flows = next((o for o in r["outputs"] if o.get("name") == "flows"), {})
        md.append(f"| {name} | {r['images']} | {r['tiles']} | {r['objects_fp32']} / {r['objects_fp16']} | "
                  f"{' / '.join(f'{v:.4f}' for v in r['mean_ap'])} | {r['min_ap50']:.4f} | "
                  f"{flows.get('max_abs', float('nan')):.4g} | {'PASS' if r['ok'] else 'FAIL'} |")
    (RESULTS / f"{args.out}.md").write_text("\n".join(md) + "\n")


if __name__ == "__main__":
    main()
