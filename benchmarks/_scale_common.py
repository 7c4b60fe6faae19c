"""Shared pieces of the scale benchmarks (bench_stream, bench_blocks): environment fingerprint,
blob images with known labels, and a small random-init CPnet exported to ONNX.

The small net is nbase [2, 8, 16, 32, 64]; its style vector is 64 wide while the runtime
expects Cellpose's 256, so ``SmallNetEngine`` zero-pads the style (only the size model reads
styles, and every benchmark gives the diameter). Its output head is rescaled so that flows and
cell probabilities have a trained net's spread on a blob tile: the dynamics find real masks.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path

import numpy as np

from cp3rt.engines.base import BaseEngine

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
HEAD_TARGETS = ((0.0, 5.0), (0.0, 5.0), (0.3, 1.5))


def fingerprint() -> dict:
    import numba
    import onnxruntime

    cpu = "unknown"
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/self/maps") as fh:
        tcmalloc = "tcmalloc" in fh.read()
    torch_version = sys.modules["torch"].__version__ if "torch" in sys.modules else "not imported"
    return {
        "cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
        "numpy": np.__version__, "numba": numba.__version__, "numba_threading_layer": _layer(),
        "onnxruntime": onnxruntime.__version__, "torch": torch_version,
        "tcmalloc_preloaded": tcmalloc, "load_average_at_start": os.getloadavg(),
        "command": " ".join([sys.executable, *sys.argv]),
    }


def environment_line(env: dict) -> str:
    """The one Markdown line of a results file that says what machine and libraries measured it."""
    return (f"CPU: {env['cpu']} x{env['cores']}; numba {env['numba']}; onnxruntime {env['onnxruntime']}; "
            f"tcmalloc preloaded: {env['tcmalloc_preloaded']}; load average at start: {env['load_average_at_start']}")


def run_cp3rt(args: list[str], env: dict) -> dict:
    """One ``cp3rt ARGS...`` process as a user starts it: its peak resident memory (GiB), wall
    seconds and CPU seconds (user + system, every thread: the kernel's rusage of the child)."""
    import subprocess
    import tempfile
    import time

    with tempfile.TemporaryFile() as log:  # a file, not a pipe: a chatty run cannot block on it
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "cp3rt.cli.app", *args], env=env,
                                stdout=subprocess.DEVNULL, stderr=log)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage (ru_maxrss in KiB on Linux)
        seconds = time.perf_counter() - t0
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            log.seek(0)
            raise SystemExit(f"cp3rt {' '.join(args)} failed ({code}): {log.read().decode(errors='replace')[-2000:]}")
    return {"peak_rss_gib": usage.ru_maxrss * 1024 / 2**30, "seconds": seconds,
            "cpu_seconds": usage.ru_utime + usage.ru_stime}


def write_results(name: str, result: dict, report: str) -> None:
    """``results/<name>.json`` and ``.md`` (the Markdown also printed)."""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2))
    (RESULTS / f"{name}.md").write_text(report)
    print(report)


def _layer() -> str:
    import numba

    try:
        return numba.threading_layer()
    except ValueError:
        return "not initialised"


def blob_image(shape, n, seed, radius=9.0):
    """uint16 image of smooth bright discs (Gaussian profile) at random centres."""
    rng = np.random.default_rng(seed)
    img = np.zeros(shape, np.float32)
    sig2 = 2 * (radius * 0.6) ** 2
    r = int(2 * radius)
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    for cy, cx in zip(rng.integers(r, shape[0] - r, n), rng.integers(r, shape[1] - r, n)):
        patch = img[cy - r : cy + r + 1, cx - r : cx + r + 1]
        np.maximum(patch, np.exp(-((yy**2 + xx**2) / sig2)), out=patch)
    return (img * 60000).astype(np.uint16)


def small_net_weights(folder: Path, nbase=(2, 8, 16, 32, 64), seed: int = 0) -> Path:
    """The small random-init CPnet with its head calibrated on a blob tile, as a weight file."""
    import torch

    from cp3rt.models.cpnet import CPnet

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    net = CPnet(list(nbase), 3, diam_mean=30.0).eval()
    img = blob_image((224, 224), 60, 99).astype(np.float32)
    tile = np.zeros((1, net.nchan, 224, 224), np.float32)
    tile[0, 0] = img / img.max()
    with torch.no_grad():
        y = net(torch.from_numpy(tile))[0][0].numpy().astype(np.float64)
        head = net.output[2]
        for c, (mean, std) in enumerate(HEAD_TARGETS):
            scale = std / y[c].std()
            head.weight[c] *= scale
            head.bias[c] = float((head.bias[c].item() - y[c].mean()) * scale + mean)
    return net.save(folder / "small_seg")


def small_net_onnx(folder: Path, nbase=(2, 8, 16, 32, 64), seed: int = 0) -> Path:
    from cp3rt.export.to_onnx import export_onnx

    return export_onnx(small_net_weights(folder, nbase, seed), folder, verify=False).onnx_path


class SmallNetEngine(BaseEngine):
    """The small net with its style output zero-padded to 256: an ONNX file on onnxruntime, or
    (``backend="torch-cuda"``) its weight file on the GPU. ``infer_many`` goes through the inner
    engine's, so torch-CUDA keeps pipelining batches as it does in the runtime."""

    def __init__(self, model: Path, backend: str = "ort", precision: str = "fp16",
                 threads: int | None = None) -> None:
        from cp3rt.engines.base import TensorSpec

        if backend == "ort":
            from cp3rt.engines.ort import OrtEngine

            self._inner = OrtEngine(model) if threads is None else OrtEngine(model, threads=threads)
        else:
            from cp3rt.engines.torch_cuda import TorchCudaEngine

            self._inner = TorchCudaEngine(model, precision=precision)
        self.backend = self._inner.backend
        outs = tuple(TensorSpec(o.name, o.dtype, (None, 256)) if o.name == "style" else o
                     for o in self._inner.outputs)
        super().__init__(self._inner.inputs, outs, self._inner.manifest, label=str(model))

    def infer_many(self, batches):  # noqa: ANN001, ANN201
        return (self._pad(o) for o in self._inner.infer_many(batches))

    @staticmethod
    def _pad(out: dict) -> dict:
        out = dict(out)
        out["style"] = np.pad(out["style"], ((0, 0), (0, 256 - out["style"].shape[1])))
        return out

    def _run(self, feeds):
        return self._pad(self._inner.infer(feeds))

    def close(self) -> None:
        self._inner.close()
        super().close()


# ---- known-label scenes and an engine that serves flows built from them (bench_blocks) ------
GRID = 29  # disc grid spacing (px); radius <= 11 and jitter <= 2 keep discs apart


def disc_labels(y0: int, y1: int, width: int, seed: int = 0) -> np.ndarray:
    """Rows y0:y1 of a label image of discs on a jittered 29-px grid (one disc per cell, label
    = cell index + 1, radius 8..11). A pixel can only lie in its own cell's disc (radius +
    jitter < half the spacing), so any band is computed on its own, without the rest."""
    ncx = -(-width // GRID)
    rows = np.arange(y0, y1)[:, None]
    cols = np.arange(width)[None, :]
    cy_idx, cx_idx = rows // GRID, cols // GRID
    cell = cy_idx * ncx + cx_idx
    rng = np.random.default_rng([seed, 0])
    nrows = -(-y1 // GRID)
    jitter = rng.uniform(-2, 2, (nrows * ncx, 2)).astype(np.float32)
    radius = rng.uniform(8, 11, nrows * ncx).astype(np.float32)
    cy = cy_idx * GRID + GRID / 2 + jitter[cell, 0]
    cx = cx_idx * GRID + GRID / 2 + jitter[cell, 1]
    inside = (rows - cy) ** 2 + (cols - cx) ** 2 <= radius[cell] ** 2
    return np.where(inside, cell + 1, 0).astype(np.uint32)


class LabelFlowEngine(BaseEngine):
    """Engine stand-in: the 'image' is a label image; each tile's labels are decoded from the
    normalised pixels (the global (low, high) is known) and the tile's flows are built from
    them: masks_to_flows x 5 and cellprob +5 inside / -5 outside, like a trained net's output
    on cells it recognises."""

    backend = "numpy"

    def __init__(self, lowhigh: tuple[float, float], diam_mean: float = 30.0) -> None:
        from cp3rt.engines.base import TensorSpec
        from cp3rt.manifest import EngineManifest

        manifest = EngineManifest(role="segment", source_model="label-flows", source_sha256="0" * 64, nchan=1,
                                  nout=3, diam_mean=diam_mean, diam_labels=diam_mean, precision="fp32", opset=17)
        image = TensorSpec("image", "float32", (None, 1, None, None))
        outs = (TensorSpec("flows", "float32", (None, 3, None, None)), TensorSpec("style", "float32", (None, 256)))
        super().__init__((image,), outs, manifest, label="label-flows")
        self.lo, self.span = float(lowhigh[0]), float(lowhigh[1]) - float(lowhigh[0])

    def _run(self, feeds):
        from cp3rt.runtime.dynamics import masks_to_flows

        x = feeds["image"][:, 0].astype(np.float64)
        out = np.zeros((x.shape[0], 3, *x.shape[1:]), np.float32)
        for i, t in enumerate(x):
            lab = np.rint(t * self.span + self.lo).astype(np.int64)
            lab[lab < 0] = 0
            uniq, inv = np.unique(lab, return_inverse=True)  # consecutive ids for masks_to_flows
            lab = (inv + (uniq[0] != 0)).reshape(t.shape)  # 0 stays background
            out[i, :2] = 5 * masks_to_flows(lab)
            out[i, 2] = np.where(lab > 0, 5.0, -5.0)
        return {"flows": out, "style": np.full((x.shape[0], 256), 1 / 16, np.float32)}
