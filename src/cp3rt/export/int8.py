"""int8 QDQ graphs: static quantization of an fp32 CPnet graph on calibration tiles.

What the result looks like (``onnxruntime.quantization.quantize_static``, QDQ format):

* weights: symmetric int8, one scale per output channel (per-channel), zero point 0;
* activations: ``u8`` asymmetric uint8 (the default: onnxruntime's CPU kernels fold each ReLU
  into the quantisation that follows it and run every conv as an int8 QLinearConv), or ``s8``
  symmetric int8 with zero point 0 (the form TensorRT's explicit int8 path takes; onnxruntime
  keeps the ReLUs in fp32 between a conv and its quantisation, so on the CPU it is slower than
  fp32 -- benchmarks/results/int8.md);
* inputs and outputs stay float32 (``image`` in, ``flows``/``style`` or ``restored`` out), so an
  engine opens it like any other cp3rt graph.

The graph that is quantized is the BatchNorm-folded export (``fold_bn``): where a BatchNorm sits
between a conv and what reads it, onnxruntime cannot fuse the conv with its quantisation and the
conv stays fp32. A shipped graph that is not folded (the starter models) is turned back into its
weights (:mod:`cp3rt.export.from_onnx`) and exported folded first.

Calibration tiles come from the caller (:mod:`cp3rt.calibrate` records the very batches the
runtime feeds the net); they are fed one batch at a time and the ranges or histograms are
accumulated batch by batch, so a few images' tiles never sit in memory as activations at once.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from cp3rt.errors import ConfigError, ExportError, WeightFileError
from cp3rt.manifest import EngineManifest

METHODS = {
    "minmax": CalibrationMethod.MinMax,
    "entropy": CalibrationMethod.Entropy,
    "percentile": CalibrationMethod.Percentile,
}
ACTIVATIONS = {"u8": QuantType.QUInt8, "s8": QuantType.QInt8}
INPUT_NAME = "image"


class TileBatches(CalibrationDataReader):
    """Calibration batches (B, C, h, w) float32 for onnxruntime, one at a time; ``set_range``
    lets the calibrator take them in strides (``CalibStridedMinMax``) and free each batch's
    activations before the next."""

    def __init__(self, batches: Sequence[np.ndarray]) -> None:
        self._batches = list(batches)
        self._iter: Iterator[np.ndarray] = iter(self._batches)

    def __len__(self) -> int:
        return len(self._batches)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._iter = iter(self._batches[start_index:end_index])

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._iter, None)
        return None if batch is None else {INPUT_NAME: np.ascontiguousarray(batch, np.float32)}


def quantize_int8(fp32_graph: bytes, batches: Sequence[np.ndarray], *, method: str, activations: str,
                  keep_fp32: Sequence[str] = (), keep_nodes: Sequence[str] = ()) -> bytes:
    """The int8 QDQ graph of ``fp32_graph`` calibrated on ``batches`` (see the module doc);
    ``keep_fp32``: op types left in fp32 (e.g. ``Gemm``: the style path); ``keep_nodes``: nodes
    (by name) left in fp32."""
    if method not in METHODS:
        raise ConfigError(f"method={method!r} is not allowed; allowed: {', '.join(METHODS)}.")
    if activations not in ACTIVATIONS:
        raise ConfigError(f"activations={activations!r} is not allowed; allowed: {', '.join(ACTIVATIONS)}.")
    if not batches:
        raise ConfigError("no calibration tiles: give at least one calibration image.")
    with tempfile.TemporaryDirectory(prefix="cp3rt-int8-") as tmp:
        src, pre, out = (Path(tmp) / n for n in ("fp32.onnx", "pre.onnx", "int8.onnx"))
        src.write_bytes(fp32_graph)
        # The histogram calibrators print their progress; the library does not print.
        with _quiet_onnxruntime_logging(), contextlib.redirect_stdout(io.StringIO()):
            # Constant folding and shape inference first (what onnxruntime asks for): it reads
            # weights that an exporter routed through Identity/Cast nodes as initializers.
            quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
            quantize_static(
                str(pre), str(out), TileBatches(batches),
                quant_format=QuantFormat.QDQ, per_channel=True,
                activation_type=ACTIVATIONS[activations], weight_type=QuantType.QInt8,
                calibrate_method=METHODS[method],
                op_types_to_quantize=_op_types(pre, keep_fp32) if keep_fp32 else None,
                nodes_to_exclude=list(keep_nodes) or None,
                extra_options={"ActivationSymmetric": activations == "s8", "WeightSymmetric": True,
                               "CalibStridedMinMax": 1},
            )
        model = onnx.load(str(out))
    _annotate(model, method, activations)
    return model.SerializeToString()


def nodes_named(graph: bytes, op_types: Sequence[str], scope: Sequence[str] = ()) -> list[str]:
    """Names of the nodes of ``op_types`` whose name contains one of ``scope`` (all if empty)."""
    model = onnx.load_from_string(graph)
    return [n.name for n in model.graph.node
            if n.op_type in op_types and (not scope or any(part in n.name for part in scope))]


def _op_types(path: Path, keep_fp32: Sequence[str]) -> list[str]:
    """The graph's op types minus ``keep_fp32`` (the quantizer skips the ones it cannot do)."""
    ops = {n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node}
    return sorted(ops - set(keep_fp32))


def folded_fp32_graph(onnx_path: str | os.PathLike[str], manifest: EngineManifest) -> bytes:
    """The fp32 graph to quantize: ``onnx_path`` itself when cp3rt exported it with folded
    BatchNorms, else the same net re-exported folded (its weights recovered from the graph).
    A graph cp3rt cannot read back, or any unfolded graph where torch is not installed, is
    quantized as it is (correct, but slower on the CPU)."""
    path = Path(onnx_path)
    model = onnx.load(str(path), load_external_data=False)
    meta = {p.key: p.value for p in model.metadata_props}
    if meta.get("cp3rt.precision", "fp32") != "fp32" or manifest.precision != "fp32":
        raise ExportError(f"{path.name} is a {manifest.precision} graph; int8 is calibrated from the fp32 one.")
    if meta.get("cp3rt.fold_bn") == "true":
        return path.read_bytes()
    try:  # the re-export needs torch; without it the graph is quantized as it is
        from cp3rt.export.from_onnx import recover_weight_file
        from cp3rt.export.to_onnx import export_onnx
    except ModuleNotFoundError:
        return path.read_bytes()

    with tempfile.TemporaryDirectory(prefix="cp3rt-int8-") as tmp:
        try:
            weights = recover_weight_file(path, Path(tmp) / "weights.pt")
        except WeightFileError:
            return path.read_bytes()
        result = export_onnx(weights, tmp, name="folded", source_model=manifest.source_model,
                             diam_mean=manifest.diam_mean, diam_labels=manifest.diam_labels)
        return result.onnx_path.read_bytes()


def _annotate(model: onnx.ModelProto, method: str, activations: str) -> None:
    props = {p.key: p for p in model.metadata_props}
    for key, value in {"cp3rt.precision": "int8", "cp3rt.int8_method": method,
                       "cp3rt.int8_activations": activations}.items():
        entry = props.get(key) or model.metadata_props.add()
        entry.key, entry.value = key, value
    model.doc_string = model.doc_string.replace("fp32", "int8") if model.doc_string else "cp3rt int8 graph"


class _OrtQuantFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "onnxruntime" not in record.pathname


@contextlib.contextmanager
def _quiet_onnxruntime_logging() -> Iterator[None]:
    """onnxruntime.quantization warns through the root logger (bias not an initializer, run the
    pre-processing, ...); the library does not print, so its records are dropped meanwhile."""
    root, flt = logging.getLogger(), _OrtQuantFilter()
    handler_filters = [(h, flt) for h in [*root.handlers, logging.lastResort] if h is not None]
    root.addFilter(flt)
    for handler, f in handler_filters:
        handler.addFilter(f)
    try:
        yield
    finally:
        root.removeFilter(flt)
        for handler, f in handler_filters:
            handler.removeFilter(f)
