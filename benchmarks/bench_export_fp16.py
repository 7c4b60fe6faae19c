"""Export cost and fp16-graph accuracy of ``cp3rt.export.to_onnx.export_onnx`` (CPU).

Protocol
--------
* Weights: two random-init Cellpose v3 nets written by the reference ``cellpose==3.1.1.2``
  ``CPnet.save_model`` (segmentation: nbase [2,32,64,128,256], nout 3; restoration: nchan 1,
  nout 1), BatchNorm statistics/affine randomised (seed fixed) so no BN is the identity.
  No real zoo weights are reachable from this machine: real-weight activations may be larger.
* Export time: per net and precision, 1 warm-up export, then ``--repeats`` timed exports with
  ``verify=False`` (the self-check is timed separately once); median, min, max reported.
* Accuracy: tiles cut from three real images (GOWT1 nuclei, MSC cells, DSB2018 nuclei), each
  1-99 % normalised; tile batches 8x224x224, 8x96x160, 8x32x32 (the runtime's shape range).
  Ground truth = the reference torch net (fp32). Compared in the same run: exported fp32 ONNX
  on onnxruntime CPU (default optimisations), fp16 ONNX on onnxruntime CPU with all graph
  optimisations off (every intermediate tensor rounded to fp16, compute in fp32: close to a
  TensorRT fp16 engine with fp32 accumulation) and with default optimisations.
* Metrics per output: max |diff|, max |diff| / (max - min of the reference output), mean |diff|;
  for segmentation, the fraction of pixels whose cellprob logit changes sign.
* torch runs with tcmalloc preloaded (the script re-executes itself with LD_PRELOAD).

Run:  .venv/bin/python benchmarks/bench_export_fp16.py   (-> benchmarks/results/export_fp16.*)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DATA = HERE.parents[0] / ".." / "shared" / "data"
IMAGES = [
    DATA / "ctc_gowt1_nuclei" / "images" / "seq01_t031.tif",
    DATA / "ctc_msc_cells" / "images",
    DATA / "stardist_dsb2018_nuclei" / "images",
]
TCMALLOC = "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4"
SHAPES = [(8, 224, 224), (8, 96, 160), (8, 32, 32)]
NETS = {"segment": ([2, 32, 64, 128, 256], 3), "restore": ([1, 32, 64, 128, 256], 1)}


def _first_image(entry: Path) -> Path:
    return entry if entry.is_file() else sorted(entry.glob("*.tif"))[0]


def _tiles(nchan: int, b: int, h: int, w: int) -> np.ndarray:
    import tifffile

    out = np.zeros((b, nchan, h, w), np.float32)
    for i in range(b):
        img = tifffile.imread(_first_image(IMAGES[i % len(IMAGES)])).astype(np.float32)
        img = img if img.ndim == 2 else img[..., 0] if img.shape[-1] <= 4 else img[0]
        lo, hi = np.percentile(img, [1, 99])
        img = (img - lo) / max(hi - lo, 1e-3)
        y = (i * 37) % max(1, img.shape[0] - h)
        x = (i * 53) % max(1, img.shape[1] - w)
        crop = img[y:y + h, x:x + w]
        out[i, 0, : crop.shape[0], : crop.shape[1]] = crop
    return out


def _ref_net(kind: str, folder: Path):
    import torch
    from cellpose.resnet_torch import CPnet

    nbase, nout = NETS[kind]
    torch.manual_seed(0)
    net = CPnet(nbase, nout, 3)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_(torch.rand(c, generator=gen) - 0.5)
                m.running_var.copy_(0.5 + 1.5 * torch.rand(c, generator=gen))
                m.weight.copy_(0.5 + torch.rand(c, generator=gen))
                m.bias.copy_(0.4 * torch.rand(c, generator=gen) - 0.2)
    net.eval()
    path = folder / f"random_{kind}"
    net.save_model(str(path))
    return net, path


def _time_exports(path: Path, out: Path, repeats: int) -> dict:
    from cp3rt.export.to_onnx import export_onnx

    res = {}
    for precision in ("fp32", "fp16"):
        export_onnx(path, out, precision=precision, verify=False)  # warm-up
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            export_onnx(path, out, precision=precision, verify=False)
            times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        verified = export_onnx(path, out, precision=precision, verify=True)
        res[precision] = {
            "median_s": round(float(np.median(times)), 3), "min_s": round(min(times), 3),
            "max_s": round(max(times), 3), "times_s": [round(t, 3) for t in times],
            "with_verify_s": round(time.perf_counter() - t0, 3),
            "self_check_max_abs_error": verified.max_abs_error,
            "file_mb": round(verified.onnx_path.stat().st_size / 1e6, 2),
            "path": verified.onnx_path,
        }
    return res


def _errors(got: list[np.ndarray], want: list[np.ndarray], names: list[str]) -> dict:
    out = {}
    for name, g, w in zip(names, got, want):
        d = np.abs(g.astype(np.float64) - w)
        span = float(w.max() - w.min())
        out[name] = {"max_abs": float(d.max()), "max_rel_range": float(d.max() / span),
                     "mean_abs": float(d.mean()), "ref_range": span}
        if name == "flows":
            out[name]["cellprob_sign_flips"] = float(np.mean((g[:, 2] > 0) != (w[:, 2] > 0)))
    return out


def _accuracy(kind: str, net, onnx_paths: dict) -> dict:
    import onnxruntime as ort
    import torch

    sessions = {}
    for label, (prec, level) in {
        "onnx fp32": ("fp32", ort.GraphOptimizationLevel.ORT_ENABLE_ALL),
        "onnx fp16 (no fusions)": ("fp16", ort.GraphOptimizationLevel.ORT_DISABLE_ALL),
        "onnx fp16 (default opt)": ("fp16", ort.GraphOptimizationLevel.ORT_ENABLE_ALL),
    }.items():
        opts = ort.SessionOptions()
        opts.graph_optimization_level = level
        sessions[label] = ort.InferenceSession(str(onnx_paths[prec]), opts,
                                               providers=["CPUExecutionProvider"])
    names = ["flows", "style"] if kind == "segment" else ["restored"]
    res = {}
    for b, h, w in SHAPES:
        x = _tiles(NETS[kind][0][0], b, h, w)
        with torch.no_grad():
            y, style, _ = net(torch.from_numpy(x))
        want = [y.numpy(), style.numpy()][: len(names)]
        res[f"{b}x{h}x{w}"] = {
            label: _errors(s.run(names, {"image": x}), want, names) for label, s in sessions.items()
        }
    return res


def _environment() -> dict:
    import numba
    import onnx
    import onnxruntime
    import torch

    cpu = "unknown"
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpu_model": cpu, "logical_cpus": os.cpu_count(), "machine": platform.machine(),
        "python": platform.python_version(), "numpy": np.__version__, "numba": numba.__version__,
        "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
        "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
        "tcmalloc_preloaded": TCMALLOC in os.environ.get("LD_PRELOAD", ""),
        "loadavg_start": list(os.getloadavg()),
    }


def _markdown(report: dict) -> str:
    lines = [f"# Export time and fp16 accuracy ({report['date']})", "",
             f"Command: `{report['command']}`", "", "## Environment", ""]
    lines += [f"- {k}: {v}" for k, v in report["environment"].items()]
    lines += ["", "## Export time (s, verify=False; median [min, max])", "",
              "| net | precision | median | min | max | with self-check | file MB |",
              "|---|---|---|---|---|---|---|"]
    for kind, per in report["export"].items():
        for prec, r in per.items():
            lines.append(f"| {kind} | {prec} | {r['median_s']} | {r['min_s']} | {r['max_s']} | "
                         f"{r['with_verify_s']} | {r['file_mb']} |")
    lines += ["", "## Error vs the reference torch net (fp32)", "",
              "| net | tiles | graph | output | max abs | max abs / range | mean abs | cellprob sign flips |",
              "|---|---|---|---|---|---|---|---|"]
    for kind, per_shape in report["accuracy"].items():
        for shape, per_graph in per_shape.items():
            for graph, per_out in per_graph.items():
                for name, e in per_out.items():
                    flips = e.get("cellprob_sign_flips")
                    lines.append(
                        f"| {kind} | {shape} | {graph} | {name} | {e['max_abs']:.3g} | "
                        f"{e['max_rel_range']:.3g} | {e['mean_abs']:.3g} | "
                        f"{'' if flips is None else f'{flips:.2e}'} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    if os.path.exists(TCMALLOC) and TCMALLOC not in os.environ.get("LD_PRELOAD", ""):
        env = dict(os.environ, LD_PRELOAD=TCMALLOC)
        os.execve(sys.executable, [sys.executable, *sys.argv], env)
    report = {"date": dt.datetime.now().isoformat(timespec="seconds"),
              "command": " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]),
              "environment": _environment(), "export": {}, "accuracy": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in NETS:
            net, path = _ref_net(kind, Path(tmp))
            timing = _time_exports(path, Path(tmp) / "onnx", args.repeats)
            paths = {p: r.pop("path") for p, r in timing.items()}
            report["export"][kind] = timing
            report["accuracy"][kind] = _accuracy(kind, net, paths)
    report["environment"]["loadavg_end"] = list(os.getloadavg())
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "export_fp16.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "export_fp16.md").write_text(_markdown(report))
    print(_markdown(report))


if __name__ == "__main__":
    main()
