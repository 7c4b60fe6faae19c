"""Check an exported graph against the torch net it came from, on onnxruntime CPU."""

from __future__ import annotations

import numpy as np
import torch

from cp3rt._lazy import require
from cp3rt.errors import ExportError
from cp3rt.export._trace import INPUT_NAME, OUTPUT_NAMES
from cp3rt.models.cpnet import CPnet

# Largest allowed max|onnx - torch| as a fraction of the torch output's range (max - min), per
# precision. fp32 differs only by summation order; fp16 rounds weights and every activation
# (spec §9.14 suggests ~1e-2 relative for fp16).
VERIFY_TOLERANCE = {"fp32": 1e-4, "fp16": 1e-2}
VERIFY_HW = (64, 96)  # rectangular on purpose: catches a transposed or shape-baked graph
VERIFY_BATCH = 2
VERIFY_SEED = 0


def verify_against_torch(
    model_bytes: bytes, net: CPnet, role: str, precision: str
) -> dict[str, float]:
    """Run both on one random tile; return max abs error per output, raise above tolerance."""
    ort = require("onnxruntime", "verifying an exported ONNX file")
    options = ort.SessionOptions()
    if precision == "fp16":
        # ORT CPU has no fp16 conv and wraps each fp16 node in casts; with graph fusions it may
        # keep fp32 between fused ops and under-report the error of a real fp16 engine.
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception classes
        raise ExportError(f"onnxruntime cannot load the exported graph: {exc}") from exc
    gen = torch.Generator().manual_seed(VERIFY_SEED)
    x = torch.randn(VERIFY_BATCH, net.nchan, *VERIFY_HW, generator=gen)
    with torch.no_grad():
        y, style, _ = net(x)
    want = {"flows": y, "style": style, "restored": y}
    got = session.run(list(OUTPUT_NAMES[role]), {INPUT_NAME: x.numpy()})
    errors: dict[str, float] = {}
    for name, value in zip(OUTPUT_NAMES[role], got):
        ref = want[name].numpy()
        if value.shape != ref.shape:
            raise ExportError(
                f"exported output {name} has shape {value.shape}, expected {ref.shape}."
            )
        diff = np.abs(value.astype(np.float64) - ref)
        err = float(diff.max()) if np.isfinite(diff).all() else float("inf")
        errors[name] = err
        span = max(float(ref.max() - ref.min()), 1e-6)
        limit = VERIFY_TOLERANCE[precision] * span
        if not err <= limit:
            flat = np.where(np.isfinite(diff), diff, np.inf)  # NaN counts as the worst
            worst = np.unravel_index(int(np.argmax(flat)), diff.shape)
            raise ExportError(
                f"the {precision} ONNX output {name} differs from the torch net by {err:.3g} at "
                f"{tuple(int(i) for i in worst)} (allowed {limit:.3g} = "
                f"{VERIFY_TOLERANCE[precision]:g} x output range {span:.3g})."
            )
    return errors
