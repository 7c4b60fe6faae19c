"""Recover a Cellpose v3 weight file from an ONNX graph that cp3rt exported (fp32 or fp16-stored).

Why: the starter models ship as ONNX only (MODEL_CARD.md), yet the torch backends and the GPU
benchmarks need a weight file. The graph holds every parameter: each Conv, BatchNormalization
and Gemm node reads them as initializers (directly, or through the Cast that an fp16-stored
graph puts in front). A fresh CPnet of the same shape, traced with distinct values in every
tensor, tells which node input carries which state-dict key; the shipped graph's nodes of those
types come in the same order, so its values land on the same keys. The result is checked by
running both on one tile: the recovered net must compute what the graph computes.

Only graphs of cp3rt's own exporter are accepted (unfolded BatchNorm, i.e. not ``fold_bn``):
anything else is refused with one sentence.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from cp3rt.errors import WeightFileError
from cp3rt.export._trace import INPUT_NAME, OUTPUT_NAMES, role_for, trace_to_onnx
from cp3rt.models._blocks import BN_EPS
from cp3rt.models.cpnet import DIAM_KEYS, CPnet

PARAM_OPS = ("Conv", "BatchNormalization", "Gemm")
# max |torch - onnx| allowed as a fraction of the output range: both compute in fp32 from the
# same values, so only the summation order differs.
RECOVERY_TOLERANCE = 1e-4
_LEVELS = 4  # Cellpose v3 CPnets have four encoder levels, each doubling the width
_TRACE_PREFIX = "net."  # the export wrapper holds the CPnet as ``net``
# BatchNorm parameters that make it the identity: (x - 0) / sqrt(var + eps) * 1 + 0 with
# var + eps == 1 in float32.
_IDENTITY_BN = {"weight": 1.0, "bias": 0.0, "running_mean": 0.0, "running_var": float(np.float32(1.0) - np.float32(BN_EPS))}


def recover_cpnet(onnx_path: str | os.PathLike[str], *, diam_mean: float, diam_labels: float) -> CPnet:
    """The CPnet whose forward pass equals the graph's (eval mode), with the given diameters."""
    path = Path(onnx_path)
    model = _load(path)
    nchan, nout, width = _shape_of(path, model)
    net = CPnet((nchan, *(width * 2**k for k in range(_LEVELS))), nout, diam_mean=diam_mean)
    keys_by_slot = _slots_of_fresh_trace(net, role_for(nout))
    values_by_slot = _slot_values(model)
    if len(values_by_slot) != len(keys_by_slot):
        raise WeightFileError(
            f"{path}: has {len(values_by_slot)} parameter inputs on {'/'.join(PARAM_OPS)} nodes where a "
            f"CPnet of this shape has {len(keys_by_slot)}; it is not a plain cp3rt export."
        )
    state = net.state_dict()  # BNs the exporter folded away stay the identity set by the trace
    for slot, key in keys_by_slot.items():
        _, value = values_by_slot.get(slot, ("", None))
        if value is None or tuple(value.shape) != tuple(state[key].shape):
            raise WeightFileError(f"{path}: parameter {key} is missing or has another shape in the graph.")
        state[key] = torch.from_numpy(value.astype(np.float32))
    state["diam_mean"] = torch.full((1,), float(diam_mean))
    state["diam_labels"] = torch.full((1,), float(diam_labels))
    net.load_state_dict(state)
    net.eval()
    _check_same_function(path, model, net, role_for(nout))
    return net


def recover_weight_file(onnx_path: str | os.PathLike[str], out: str | os.PathLike[str]) -> Path:
    """Write the recovered weights as a Cellpose v3 state dict; diameters from the manifest."""
    from cp3rt.manifest import EngineManifest, manifest_path_for

    manifest = EngineManifest.read(manifest_path_for(Path(onnx_path)))
    net = recover_cpnet(onnx_path, diam_mean=manifest.diam_mean, diam_labels=manifest.diam_labels)
    return net.save(out)


def _load(path: Path) -> onnx.ModelProto:
    try:
        return onnx.load(os.fspath(path))
    except Exception as exc:  # onnx raises DecodeError, OSError, ...
        raise WeightFileError(f"{path}: cannot be read as an ONNX model ({exc}).") from exc


def _shape_of(path: Path, model: onnx.ModelProto) -> tuple[int, int, int]:
    """(nchan, nout, first encoder width) from the first and the last Conv weights."""
    nodes = [n for n in model.graph.node if n.op_type in PARAM_OPS]
    values = _slot_values(model)
    conv_weights = [values[(i, 1)][1] for i, n in enumerate(nodes) if n.op_type == "Conv" and (i, 1) in values]
    if len(conv_weights) < 2:
        raise WeightFileError(f"{path}: has no Conv weights to recover a CPnet from.")
    first, last = conv_weights[0].shape, conv_weights[-1].shape
    return int(first[1]), int(last[0]), int(first[0])


def _slot_values(model: onnx.ModelProto) -> dict[tuple[int, int], tuple[str, np.ndarray]]:
    """(index among parameter nodes, input index) -> (initializer name, value), in graph order."""
    inits = {t.name: t for t in model.graph.initializer}
    # The exporter shares equal tensors through Identity nodes; fp16 storage adds a Cast.
    aliases = {n.output[0]: n.input[0] for n in model.graph.node if n.op_type in ("Cast", "Identity")}
    values: dict[tuple[int, int], tuple[str, np.ndarray]] = {}
    nodes = [n for n in model.graph.node if n.op_type in PARAM_OPS]
    for i, node in enumerate(nodes):
        for j, name in enumerate(node.input[1:], start=1):
            source = name
            while source not in inits and source in aliases:
                source = aliases[source]
            if source in inits:
                values[(i, j)] = (name, numpy_helper.to_array(inits[source]).astype(np.float32))
    return values


def _slots_of_fresh_trace(net: CPnet, role: str) -> dict[tuple[int, int], str]:
    """Trace ``net`` and read which node input holds which state-dict key.

    The exporter keeps a parameter's name unless it folded a BatchNorm into the conv before it
    (Conv -> BN with nothing between: the encoder's first and third convs). To recognise those
    convs, every BN is made the identity and every conv/Linear tensor gets a distinct marker
    value; the folded BNs' keys then appear nowhere and stay the identity in the recovered net.
    """
    state = net.state_dict()
    marker = {}
    with torch.no_grad():
        for k, (key, tensor) in enumerate(state.items()):
            if key in DIAM_KEYS or key.endswith("num_batches_tracked"):
                continue
            if _is_bn(key, state):
                tensor.copy_(torch.full_like(tensor, _IDENTITY_BN[key.rsplit(".", 1)[1]]))
                continue
            tensor.copy_(torch.linspace(1.0, 2.0, tensor.numel()).reshape(tensor.shape) + 10.0 * k)
            marker[round(float(tensor.flatten()[0]), 2)] = key
    slots = {}
    for slot, (name, value) in _slot_values(trace_to_onnx(net.eval(), role, opset=17)).items():
        key = name.removeprefix(_TRACE_PREFIX)
        if key not in state:
            key = marker.get(round(float(value.flatten()[0]), 2))
        if key is None:
            raise WeightFileError(f"cannot map the traced CPnet's input {name} to a weight; did the exporter change?")
        slots[slot] = key
    return slots


def _is_bn(key: str, state: dict) -> bool:
    return f"{key.rsplit('.', 1)[0]}.running_var" in state


def _check_same_function(path: Path, model: onnx.ModelProto, net: CPnet, role: str) -> None:
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = torch.randn(1, net.nchan, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y, _, _ = net(x)
    got = session.run([OUTPUT_NAMES[role][0]], {INPUT_NAME: x.numpy()})[0]
    span = max(float(y.max() - y.min()), 1e-6)
    err = float(np.abs(got - y.numpy()).max())
    if not err <= RECOVERY_TOLERANCE * span:
        raise WeightFileError(
            f"{path}: the recovered weights compute something else than the graph (max difference "
            f"{err:.3g}, allowed {RECOVERY_TOLERANCE * span:.3g}); it is not a plain cp3rt export."
        )
