"""Stand-in ONNX nets built with the onnx helper API, and a slow numpy reference for them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

STANDIN_NCHAN = 2
STANDIN_STYLE = 256


def _conv_weights(rng: np.random.Generator, cout: int, cin: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    return (rng.normal(0, 0.3, (cout, cin, k, k)).astype(np.float32),
            rng.normal(0, 0.1, cout).astype(np.float32))


def build_standin(path: Path, seed: int = 0) -> dict[str, np.ndarray]:
    """A CPnet-shaped toy: ``image`` (B,2,H,W) -> ``flows`` = conv3x3 (B,3,H,W) and
    ``style`` = L2-normalised spatial mean of a 1x1 conv (B,256). Returns its weights."""
    rng = np.random.default_rng(seed)
    w3, b3 = _conv_weights(rng, 3, STANDIN_NCHAN, 3)
    w1, b1 = _conv_weights(rng, STANDIN_STYLE, STANDIN_NCHAN, 1)
    inits = [numpy_helper.from_array(a, n) for a, n in ((w3, "w3"), (b3, "b3"), (w1, "w1"), (b1, "b1"))]
    inits.append(numpy_helper.from_array(np.array([2, 3], np.int64), "hw_axes"))
    nodes = [
        helper.make_node("Conv", ["image", "w3", "b3"], ["flows"], pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["image", "w1", "b1"], ["feat"]),
        helper.make_node("ReduceMean", ["feat", "hw_axes"], ["pooled"], keepdims=0),
        helper.make_node("LpNormalization", ["pooled"], ["style"], axis=1, p=2),
    ]
    graph = helper.make_graph(
        nodes, "standin",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["B", STANDIN_NCHAN, "H", "W"])],
        [helper.make_tensor_value_info("flows", TensorProto.FLOAT, ["B", 3, "H", "W"]),
         helper.make_tensor_value_info("style", TensorProto.FLOAT, ["B", STANDIN_STYLE])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return {"w3": w3, "b3": b3, "w1": w1, "b1": b1}


def standin_reference(weights: dict[str, np.ndarray], x: np.ndarray) -> dict[str, np.ndarray]:
    """The stand-in net written out with explicit loops over the 3x3 window (float64)."""
    x = x.astype(np.float64)
    b, _, h, w = x.shape
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    flows = np.zeros((b, 3, h, w))
    for dy in range(3):
        for dx in range(3):
            window = padded[:, :, dy:dy + h, dx:dx + w]
            flows += np.einsum("oc,bchw->bohw", weights["w3"][:, :, dy, dx], window)
    flows += weights["b3"][None, :, None, None]
    feat = np.einsum("oc,bchw->bohw", weights["w1"][:, :, 0, 0], x) + weights["b1"][None, :, None, None]
    pooled = feat.mean(axis=(2, 3))
    style = pooled / np.sqrt((pooled ** 2).sum(axis=1, keepdims=True))
    return {"flows": flows, "style": style}


@pytest.fixture
def standin(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    path = tmp_path / "standin.onnx"
    return path, build_standin(path)


@pytest.fixture
def standin_ref():  # noqa: ANN201 - returns the reference function itself
    return standin_reference


@pytest.fixture
def make_standin():  # noqa: ANN201 - a factory: make_standin(path, seed) -> weights
    return build_standin
