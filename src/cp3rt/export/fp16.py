"""Turn an fp32 CPnet ONNX graph into an fp16 graph for a strongly typed TensorRT build.

What the result looks like:
* graph inputs/outputs stay float32; a Cast at the input and before each fp16 output;
* convolutions, ReLU, pooling, resizes and residual adds run in fp16 with fp16 weights;
* every BatchNormalization becomes Mul + Add with a per-channel scale/shift computed in float64
  from the fp32 statistics and rounded once to fp16. Rounding ``running_var`` and ``eps`` to fp16
  separately would lose most of their precision (eps = 1e-5 is subnormal in fp16), and a strongly
  typed TensorRT build would otherwise fold them at fp16;
* the style path stays fp32, from the global mean (ReduceMean) through the L2 normalisation and the
  style Linear (Gemm) layers up to the Add that injects it into a feature map. Why: the mean sums
  up to (224/8)^2 = 784 values and the norm sums 256 squares, which loses bits or overflows in
  fp16 (256 * 16^2 > 65504); and the style bias enters every decoder conv, so its rounding error
  would be repeated 12 times. The style GEMMs are (B x 256) x (256 x C): fp32 costs nothing there.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from cp3rt.errors import ExportError, InternalError

FP16_MAX = float(np.finfo(np.float16).max)
_SEED_OPS = {"ReduceMean"}  # the style pooling: everything downstream of it alone stays fp32
_FLOAT_OK_OPS = {  # ops whose float inputs may simply change to fp16
    "Conv", "Relu", "Add", "Sub", "Mul", "Div", "Sqrt", "Pow", "ReduceMean", "ReduceSum",
    "Gemm", "MatMul", "Unsqueeze", "Squeeze", "Reshape", "Flatten", "MaxPool", "Resize",
    "Identity", "Cast", "Concat",
}
_KEEP_FLOAT_INPUTS = {"Resize": {1, 2}}  # roi and scales are float32 whatever the data type


class _Converter:
    def __init__(self, model: onnx.ModelProto) -> None:
        self.model = model
        inferred = onnx.shape_inference.infer_shapes(model)
        g = model.graph
        self.inits = {t.name: t for t in g.initializer}
        self.consts = {
            n.output[0]: n.attribute[0].t
            for n in g.node
            if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value"
        }
        self.ranks = {
            vi.name: len(vi.type.tensor_type.shape.dim)
            for vi in [*inferred.graph.value_info, *g.input, *g.output]
        }
        self.kind: dict[str, int] = {}  # activation tensor -> FLOAT / FLOAT16
        self.nodes: list[onnx.NodeProto] = []
        self.new_inits: dict[str, TensorProto] = {}
        self.casts: dict[tuple[str, int], str] = {}
        self.graph_inputs = {i.name for i in g.input}

    # ---- helpers -----------------------------------------------------------------------
    def _static_type(self, name: str) -> int | None:
        tensor = self.inits.get(name) or self.consts.get(name)
        return None if tensor is None else tensor.data_type

    def _static_array(self, name: str) -> np.ndarray:
        tensor = self.inits.get(name) or self.consts[name]
        return numpy_helper.to_array(tensor)

    def _fp16_static(self, name: str) -> str:
        new = f"{name}__fp16"
        if new not in self.new_inits:
            arr = self._static_array(name)
            if np.abs(arr).max(initial=0.0) > FP16_MAX:
                raise ExportError(
                    f"weight {name} has values beyond the fp16 range (±{FP16_MAX:g})."
                )
            self.new_inits[new] = numpy_helper.from_array(arr.astype(np.float16), new)
        return new

    def _cast(self, name: str, to: int) -> str:
        key = (name, to)
        if key not in self.casts:
            out = f"{name}__{'fp16' if to == TensorProto.FLOAT16 else 'fp32'}"
            self.nodes.append(helper.make_node("Cast", [name], [out], to=to, name=f"Cast_{out}"))
            self.kind[out] = to
            self.casts[key] = out
        return self.casts[key]

    def _float_inputs(self, node: onnx.NodeProto) -> list[int]:
        keep = _KEEP_FLOAT_INPUTS.get(node.op_type, set())
        out = []
        for i, name in enumerate(node.input):
            if not name or i in keep:
                continue
            if name in self.kind or self._static_type(name) == TensorProto.FLOAT:
                out.append(i)
        return out

    # ---- conversion --------------------------------------------------------------------
    def run(self) -> onnx.ModelProto:
        g = self.model.graph
        for inp in g.input:
            if inp.type.tensor_type.elem_type == TensorProto.FLOAT:
                self.kind[inp.name] = TensorProto.FLOAT
        alias: dict[str, str] = {}
        for original in g.node:
            node = onnx.NodeProto()
            node.CopyFrom(original)
            for i, name in enumerate(node.input):
                node.input[i] = alias.get(name, name)
            if node.op_type == "Constant":
                self.nodes.append(node)  # converted per consumer, see _fp16_static
            elif node.op_type == "Identity" and self._static_type(node.input[0]) is not None:
                # The exporter shares equal initializers through Identity nodes (e.g. default
                # BN parameters); read through them so each consumer gets a typed copy.
                alias[node.output[0]] = node.input[0]
            else:
                self._convert_node(node)
        if any(o.name in alias for o in g.output):
            raise ExportError("fp16 conversion: a graph output is a constant; nothing to convert.")
        return self._finish()

    def _convert_node(self, node: onnx.NodeProto) -> None:
        floats = self._float_inputs(node)
        acts = [node.input[i] for i in floats if node.input[i] in self.kind]
        if not acts:
            raise ExportError(
                f"fp16 conversion: node {node.name} ({node.op_type}) has no float input."
            )
        keep32 = node.op_type in _SEED_OPS or all(self.kind[a] == TensorProto.FLOAT for a in acts)
        # The graph input is fp32 too, but only the style path may stay fp32.
        if node.op_type not in _SEED_OPS and any(a in self.graph_inputs for a in acts):
            keep32 = False
        to = TensorProto.FLOAT if keep32 else TensorProto.FLOAT16
        if node.op_type == "BatchNormalization" and not keep32:
            self._batchnorm(node)
            return
        if node.op_type not in _FLOAT_OK_OPS:
            raise ExportError(
                f"fp16 conversion does not handle op {node.op_type} (node {node.name}); "
                "export with --precision fp32."
            )
        new = onnx.NodeProto()
        new.CopyFrom(node)
        for i in floats:
            name = node.input[i]
            if name in self.kind:
                if self.kind[name] != to:
                    new.input[i] = self._cast(name, to)
            elif to == TensorProto.FLOAT16:
                new.input[i] = self._fp16_static(name)
        if node.op_type == "Cast":
            for attr in new.attribute:
                if attr.name == "to" and attr.i == TensorProto.FLOAT:
                    attr.i = to
        self.nodes.append(new)
        for out in node.output:
            self.kind[out] = to

    def _batchnorm(self, node: onnx.NodeProto) -> None:
        x, gamma, beta, mean, var = node.input[:5]
        eps = next((a.f for a in node.attribute if a.name == "epsilon"), 1e-5)
        if self.ranks.get(x) != 4:
            raise ExportError(f"fp16 conversion expects a 4-D BatchNormalization input at {node.name}.")
        g64, b64, m64, v64 = (
            self._static_array(n).astype(np.float64) for n in (gamma, beta, mean, var)
        )
        scale = g64 / np.sqrt(v64 + eps)
        shift = b64 - m64 * scale
        if max(np.abs(scale).max(), np.abs(shift).max()) > FP16_MAX:
            raise ExportError(f"BatchNorm {node.name} scale/shift exceed the fp16 range.")
        xin = x if self.kind[x] == TensorProto.FLOAT16 else self._cast(x, TensorProto.FLOAT16)
        base = node.name or node.output[0]
        s_name, t_name = f"{base}__scale16", f"{base}__shift16"
        for name, arr in ((s_name, scale), (t_name, shift)):  # (1, C, 1, 1) broadcasts over NCHW
            self.new_inits[name] = numpy_helper.from_array(
                arr.reshape(1, -1, 1, 1).astype(np.float16), name
            )
        mid = f"{node.output[0]}__scaled"
        self.nodes.append(helper.make_node("Mul", [xin, s_name], [mid], name=f"{base}_scale"))
        self.nodes.append(helper.make_node("Add", [mid, t_name], [node.output[0]], name=f"{base}_shift"))
        self.kind[mid] = self.kind[node.output[0]] = TensorProto.FLOAT16

    def _finish(self) -> onnx.ModelProto:
        g = self.model.graph
        # fp16 graph outputs: rename the producer's tensor and Cast it back under the old name.
        for out in g.output:
            if self.kind.get(out.name) == TensorProto.FLOAT16:
                inner = f"{out.name}__fp16out"
                for n in self.nodes:
                    for lst in (n.input, n.output):
                        for i, name in enumerate(lst):
                            if name == out.name:
                                lst[i] = inner
                self.nodes.append(
                    helper.make_node("Cast", [inner], [out.name], to=TensorProto.FLOAT,
                                     name=f"Cast_{out.name}_out")
                )
        used = {name for n in self.nodes for name in n.input}
        inits = [t for t in g.initializer if t.name in used]
        inits += [t for name, t in self.new_inits.items() if name in used]
        del g.node[:]
        g.node.extend(self.nodes)
        del g.initializer[:]
        g.initializer.extend(inits)
        del g.value_info[:]  # stale fp32 types; shape inference rebuilds them
        return self.model


def convert_to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """Return an fp16 copy of an fp32 CPnet graph (fp32 I/O and style path, see module doc)."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    if not any(n.op_type in _SEED_OPS for n in copy.graph.node):
        raise ExportError("fp16 conversion: the graph has no style pooling (ReduceMean) node.")
    converted = _Converter(copy).run()
    try:
        onnx.checker.check_model(converted, full_check=True)
    except onnx.checker.ValidationError as exc:  # the fp32 graph passed: the rewrite broke it
        raise InternalError(f"the fp16 rewrite of a valid fp32 graph fails the ONNX checker: {exc}") from exc
    return converted
