"""Torch CPnet -> fp32 ONNX graph with symbolic batch/height/width.

Route: torch's TorchScript-based exporter (``dynamo=False``). With torch 2.13 it yields one
self-contained ModelProto at exactly the requested opset, with named dynamic dims, in ~2 s.
The dynamo exporter was tried: it cannot go below opset 18 for this graph (its down-conversion of
ReduceMean fails), names dims like ``8*h8``, writes weights to a side file unless told otherwise,
and takes 4-8x longer. Nothing in the graph depends on the traced tile size: the style is a
``mean`` (ReduceMean), and the 2x upsampling is a Resize with constant scales.
"""

from __future__ import annotations

import io
import warnings

import onnx
import torch
from torch import nn

from cp3rt.errors import ExportError
from cp3rt.models.cpnet import CPnet
from cp3rt.models.fold import FoldedCPnet

INPUT_NAME = "image"
OUTPUT_NAMES = {"segment": ("flows", "style"), "restore": ("restored",)}
_DIMS = {0: "batch", 2: "height", 3: "width"}


class _Head(nn.Module):
    """Drop the per-level features: engines only need y (and the style for segmentation)."""

    def __init__(self, net: CPnet | FoldedCPnet, with_style: bool) -> None:
        super().__init__()
        self.net = net
        self.with_style = with_style

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        y, style = self.net(image)[:2]  # CPnet also returns its features; FoldedCPnet does not
        return (y, style) if self.with_style else (y,)


def role_for(nout: int) -> str:
    """3 outputs (dY, dX, cellprob) -> segment; 1 output (intensity) -> restore (§1.3, §1.4)."""
    if nout == 3:
        return "segment"
    if nout == 1:
        return "restore"
    raise ExportError(
        f"a CPnet with {nout} outputs is neither a segmentation net (3) nor a restoration net (1)."
    )


def trace_to_onnx(net: CPnet | FoldedCPnet, role: str, opset: int) -> onnx.ModelProto:
    """Export ``net`` (eval mode) to an fp32 ONNX ModelProto; input ``image`` (B, nchan, H, W)."""
    outputs = OUTPUT_NAMES[role]
    head = _Head(net, with_style=role == "segment").eval()
    # Smallest tile the net accepts (deepest level 2x2): tracing runs one real forward pass.
    side = 2 ** (len(net.nbase) - 1)
    sample = torch.zeros(1, net.nchan, side, side)
    dynamic = {INPUT_NAME: _DIMS, **{n: ({0: "batch"} if n == "style" else _DIMS) for n in outputs}}
    buf = io.BytesIO()
    try:
        with warnings.catch_warnings():
            # The TorchScript route is deprecated in favour of dynamo; see the module docstring.
            warnings.simplefilter("ignore")
            with torch.no_grad():
                torch.onnx.export(
                    head,
                    (sample,),
                    buf,
                    dynamo=False,
                    input_names=[INPUT_NAME],
                    output_names=list(outputs),
                    dynamic_axes=dynamic,
                    opset_version=opset,
                    do_constant_folding=True,
                    export_params=True,
                )
    except Exception as exc:  # torch raises many types here; the caller needs one
        raise ExportError(f"torch could not export the CPnet to ONNX opset {opset}: {exc}") from exc
    return onnx.load_from_string(buf.getvalue())
