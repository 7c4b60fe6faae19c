"""The fp16 graph: fp32 at the boundary and on the style path, fp16 everywhere else."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from models_testutil import randomise_bn
from onnx import TensorProto, helper, numpy_helper

from cp3rt.errors import Cp3rtError, ExportError, InternalError
from cp3rt.export._trace import trace_to_onnx
from cp3rt.export.fp16 import convert_to_fp16
from cp3rt.models.cpnet import CPnet

FP16_REL_ROUNDING = 2.0 ** -10  # one fp16 rounding of a normal number: relative error <= 2^-11


def _net(seed: int, randomised: bool = True) -> CPnet:
    torch.manual_seed(seed)
    net = CPnet((2, 8, 16, 32, 64), 3)
    if randomised:
        randomise_bn(net, torch.Generator().manual_seed(seed))
    return net.eval()


@pytest.fixture(scope="module")
def graphs() -> tuple[onnx.ModelProto, onnx.ModelProto, CPnet]:
    net = _net(1)
    fp32 = trace_to_onnx(net, "segment", 17)
    return fp32, convert_to_fp16(fp32), net


def _producers(model: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    return {o: n for n in model.graph.node for o in n.output}


def test_boundary_stays_float32(graphs) -> None:
    _, fp16, _ = graphs
    for vi in [*fp16.graph.input, *fp16.graph.output]:
        assert vi.type.tensor_type.elem_type == TensorProto.FLOAT, vi.name
    prod = _producers(fp16)
    assert prod["flows"].op_type == "Cast"  # fp16 flows cast back to fp32 at the output
    assert prod["style"].op_type != "Cast"  # the style is computed in fp32 in the first place


def test_weights_fp16_except_style_linears(graphs) -> None:
    _, fp16, _ = graphs
    inits = {t.name: t for t in fp16.graph.initializer}
    convs = [n for n in fp16.graph.node if n.op_type == "Conv"]
    gemms = [n for n in fp16.graph.node if n.op_type == "Gemm"]
    assert len(convs) == 41 and len(gemms) == 12
    assert all(inits[n.input[1]].data_type == TensorProto.FLOAT16 for n in convs)
    assert all(inits[n.input[1]].data_type == TensorProto.FLOAT for n in gemms)
    assert not [n for n in fp16.graph.node if n.op_type == "BatchNormalization"]


def test_style_pooling_and_norm_run_in_float32(graphs) -> None:
    _, fp16, _ = graphs
    inferred = onnx.shape_inference.infer_shapes(fp16)
    types = {vi.name: vi.type.tensor_type.elem_type for vi in inferred.graph.value_info}
    types.update({vi.name: vi.type.tensor_type.elem_type for vi in inferred.graph.output})
    for node in fp16.graph.node:
        if node.op_type in ("ReduceMean", "ReduceSum", "Sqrt", "Div", "Gemm"):
            assert types[node.output[0]] == TensorProto.FLOAT, node.name
    prod = _producers(fp16)
    (mean,) = [n for n in fp16.graph.node if n.op_type == "ReduceMean"]
    assert prod[mean.input[0]].op_type == "Cast"


def test_batchnorm_becomes_float64_folded_scale_shift(graphs) -> None:
    """Slow reference: gamma / sqrt(var + eps) and beta - mean * scale, per channel, in float64."""
    fp32, fp16, _ = graphs
    inits32 = {t.name: numpy_helper.to_array(t) for t in fp32.graph.initializer}
    inits16 = {t.name: numpy_helper.to_array(t) for t in fp16.graph.initializer}
    bns = [n for n in fp32.graph.node if n.op_type == "BatchNormalization"]
    assert len(bns) == 33
    for bn in bns:
        gamma, beta, mean, var = (inits32[i].astype(np.float64) for i in bn.input[1:5])
        eps = next(a.f for a in bn.attribute if a.name == "epsilon")
        scale = np.array([gamma[c] / (var[c] + eps) ** 0.5 for c in range(len(gamma))])
        shift = np.array([beta[c] - mean[c] * scale[c] for c in range(len(gamma))])
        got_s = inits16[f"{bn.name}__scale16"].reshape(-1).astype(np.float64)
        got_t = inits16[f"{bn.name}__shift16"].reshape(-1).astype(np.float64)
        assert np.all(np.abs(got_s - scale) <= FP16_REL_ROUNDING * np.abs(scale) + 1e-7), bn.name
        assert np.all(np.abs(got_t - shift) <= FP16_REL_ROUNDING * np.abs(shift) + 1e-7), bn.name


def test_default_initialised_net_converts() -> None:
    """Untrained BN layers share equal initializers through Identity nodes in the export."""
    fp32 = trace_to_onnx(_net(2, randomised=False), "segment", 17)
    assert any(n.op_type == "Identity" for n in fp32.graph.node)
    fp16 = convert_to_fp16(fp32)
    assert not [n for n in fp16.graph.node if n.op_type == "Identity"]


def test_batchnorm_beyond_fp16_range_is_refused() -> None:
    net = _net(3)
    with torch.no_grad():
        net.upsample.up.res_up_1.conv.conv_2.conv[0].weight[0] = 1e5  # scale ~ 1e5 > 65504
    with pytest.raises(ExportError, match="exceed the fp16 range"):
        convert_to_fp16(trace_to_onnx(net, "segment", 17))


def test_graph_without_style_pooling_is_refused(tmp_path: Path) -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])
    model = helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y]))
    with pytest.raises(ExportError, match="no style pooling"):
        convert_to_fp16(model)


def test_a_rewrite_that_breaks_a_valid_graph_is_a_cp3rt_bug(graphs, monkeypatch) -> None:  # noqa: ANN001
    fp32 = graphs[0]

    def refuse(model, full_check=False):  # noqa: ANN001, ANN202
        raise onnx.checker.ValidationError("Field 'type' of 'value_info' is required but missing.")

    monkeypatch.setattr(onnx.checker, "check_model", refuse)
    with pytest.raises(InternalError, match="fp16 rewrite of a valid fp32 graph fails the ONNX checker") as info:
        convert_to_fp16(fp32)
    assert not isinstance(info.value, Cp3rtError)

