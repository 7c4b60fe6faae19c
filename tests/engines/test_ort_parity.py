"""OrtEngine on cp3rt's real ONNX export vs the reference CPnet (cellpose 3.1.1.2), same weights.

Shapes cover what the runtime feeds (§1.8): the smallest tile, rectangular tiles and full
224x224 tiles, several batch sizes. fp32 only here; fp16 accuracy is judged on masks elsewhere.
"""

from __future__ import annotations

from pathlib import Path

import cellpose.core
import cellpose.resnet_torch
import numpy as np
import pytest
import torch

from cp3rt.engines import open_engine
from cp3rt.export.to_onnx import export_onnx

pytestmark = pytest.mark.reference

# onnxruntime vs torch CPU fp32: different conv algorithms and summation order.
FLOWS_ATOL = 1e-4
FLOWS_RTOL = 1e-4
STYLE_ATOL = 1e-5


@pytest.fixture(scope="module")
def seg_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[cellpose.resnet_torch.CPnet, Path]:
    tmp = tmp_path_factory.mktemp("parity")
    torch.manual_seed(5)
    net = cellpose.resnet_torch.CPnet([2, 32, 64, 128, 256], 3, 3)
    net.save_model(str(tmp / "seg"))
    onnx_path = export_onnx(tmp / "seg", tmp / "onnx", verify=False).onnx_path
    return net.eval(), onnx_path


def _compare(name: str, ours: np.ndarray, ref: np.ndarray, atol: float, rtol: float) -> None:
    diff = np.abs(ours - ref)
    bad = diff > atol + rtol * np.abs(ref)
    idx = np.unravel_index(np.argmax(diff), diff.shape)
    assert not bad.any(), (
        f"{name}: worst at {idx}: ours {ours[idx]} reference {ref[idx]} (|d|={diff[idx]:.3g}); "
        f"mismatch rate {bad.mean():.3%}"
    )


@pytest.mark.parametrize("shape", [(1, 2, 32, 32), (3, 2, 224, 96), (2, 2, 48, 208), (1, 2, 224, 224)])
def test_matches_reference(seg_pair, shape: tuple[int, ...]) -> None:  # noqa: ANN001
    net, onnx_path = seg_pair
    rng = np.random.default_rng(sum(shape))
    x = rng.normal(0.3, 0.5, size=shape).astype(np.float32)
    ref_y, ref_style = cellpose.core._forward(net, x)
    with open_engine(onnx_path, "ort") as eng:
        assert eng.manifest is not None and eng.manifest.nchan == 2
        out = eng.infer(x)
    _compare("flows", out["flows"], ref_y, FLOWS_ATOL, FLOWS_RTOL)
    _compare("style", out["style"], ref_style, STYLE_ATOL, 0.0)
