"""benchmarks/bench_gpu.py refuses in one line, with a non-zero exit, where no CUDA GPU is visible."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_gpu.py"


def test_refuses_without_cuda() -> None:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # hides every GPU, also on a GPU machine
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick"], capture_output=True, text=True,
                          timeout=300, env=env)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bench_gpu: no CUDA GPU is visible")
    assert proc.stdout == ""


def test_embedded_weights_compute_the_small_nets_function(tmp_path: Path) -> None:
    """bench_gpu's GPU results rest on ``embed_weights``: a narrower trained net written in cyto3's
    shape must give the same outputs (the extra channels stay exactly zero)."""
    import importlib.util

    import numpy as np
    import torch

    from cp3rt.models.cpnet import CPnet
    from cp3rt.models.weights import load_cpnet, read_weight_file

    spec = importlib.util.spec_from_file_location("bench_gpu", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    torch.manual_seed(0)
    small = CPnet((2, 8, 16, 32, 64), 3, diam_mean=17.0).eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics, as a trained net has
        for m in small.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.3, 0.3)
                m.running_var.uniform_(0.5, 2.0)
    src = small.save(tmp_path / "small")
    full_path = bench.embed_weights(src, tmp_path / "full")
    full_file = read_weight_file(full_path)
    assert tuple(full_file.nbase) == (2, *bench.CYTO3_NBASE)
    full = load_cpnet(full_file).eval()
    x = torch.randn(2, 2, 64, 96, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want_y, want_style = small(x)[:2]
        got_y, got_style = full(x)[:2]
    np.testing.assert_allclose(got_y.numpy(), want_y.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got_style[:, :64].numpy(), want_style.numpy(), rtol=1e-5, atol=1e-6)
    assert not got_style[:, 64:].any()  # the extra style channels are exactly zero
