"""Parity with the reference network: files written by cellpose==3.1.1.2's own CPnet.

cp3rt's torch CPnet and the onnxruntime sessions of the exported ONNX (fp32 and fp16) must
reproduce the reference outputs (y and style) on 224x224, 96x160 and 32x32 tiles, batch 1 and 8.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from models_testutil import max_abs, report_mismatch

from cp3rt.export.to_onnx import export_onnx
from cp3rt.models.weights import load_cpnet

TORCH_ATOL = 1e-4        # cp3rt torch vs reference, fp32 (brief: <= 1e-4)
ORT_FP32_ATOL = 1e-4     # exported fp32 ONNX on onnxruntime CPU vs reference
FP16_REL_TOL = 1e-2      # fp16 ONNX: max |diff| / (max - min of the reference output)

SEG_CASES = [
    pytest.param(1, 224, 224, id="b1-224x224"),
    pytest.param(8, 224, 224, id="b8-224x224", marks=pytest.mark.slow),
    pytest.param(1, 96, 160, id="b1-96x160"),
    pytest.param(8, 96, 160, id="b8-96x160"),
    pytest.param(1, 32, 32, id="b1-32x32"),
    pytest.param(8, 32, 32, id="b8-32x32"),
]
# The restoration net is the same code path with nchan 1 / nout 1: every shape and both batch
# sizes once, not the full product (keeps the module fast on 2 cores).
RESTORE_CASES = [
    pytest.param(1, 224, 224, id="b1-224x224"),
    pytest.param(1, 96, 160, id="b1-96x160"),
    pytest.param(8, 32, 32, id="b8-32x32"),
]
CASES = [pytest.param("segment", *p.values, id=f"segment-{p.id}", marks=p.marks) for p in SEG_CASES]
CASES += [pytest.param("restore", *p.values, id=f"restore-{p.id}", marks=p.marks) for p in RESTORE_CASES]
OUTPUTS = {"segment": ("flows", "style"), "restore": ("restored",)}
FP16_ERRORS: dict[str, float] = {}


@pytest.fixture(scope="module")
def reference_outputs(ref_nets):
    """Memoised reference forward passes: (role, B, H, W) -> (input, y, style, features)."""
    cache: dict[tuple, tuple] = {}

    def get(role: str, b: int, h: int, w: int):
        key = (role, b, h, w)
        if key not in cache:
            ref = ref_nets[role]
            rng = np.random.default_rng(hash(key) % 2**32)
            x = rng.standard_normal((b, ref.nbase[0], h, w)).astype(np.float32)
            with torch.no_grad():
                y, style, feats = ref.net(torch.from_numpy(x))
            cache[key] = (x, y.numpy(), style.numpy(), [f.numpy() for f in feats])
        return cache[key]

    return get


@pytest.fixture(scope="module")
def cp3rt_nets(ref_nets):
    return {role: load_cpnet(r.path) for role, r in ref_nets.items()}


@pytest.fixture(scope="module")
def sessions(ref_nets, tmp_path_factory):
    """One export per role and precision (the built-in self-check is tested in test_onnx_export)."""
    out: dict[tuple[str, str], ort.InferenceSession] = {}
    folder = tmp_path_factory.mktemp("exported")
    for role, ref in ref_nets.items():
        for precision in ("fp32", "fp16"):
            res = export_onnx(ref.path, folder, precision=precision, verify=False)
            opts = ort.SessionOptions()
            if precision == "fp16":  # round every intermediate to fp16 (see export/_verify.py)
                opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            out[(role, precision)] = ort.InferenceSession(
                str(res.onnx_path), opts, providers=["CPUExecutionProvider"]
            )
    return out


def _check(name: str, got: np.ndarray, want: np.ndarray, atol: float) -> None:
    assert got.shape == want.shape, f"{name}: shape {got.shape} != {want.shape}"
    assert max_abs(got, want) <= atol, report_mismatch(name, got, want, atol)


@pytest.mark.reference
@pytest.mark.parametrize(("role", "b", "h", "w"), CASES)
def test_torch_net_matches_reference(role, b, h, w, reference_outputs, cp3rt_nets) -> None:
    x, y, style, feats = reference_outputs(role, b, h, w)
    with torch.no_grad():
        my_y, my_style, my_feats = cp3rt_nets[role](torch.from_numpy(x))
    _check(f"{role} y", my_y.numpy(), y, TORCH_ATOL)
    _check(f"{role} style", my_style.numpy(), style, TORCH_ATOL)
    for i, (got, want) in enumerate(zip(my_feats, feats)):
        _check(f"{role} d{i}", got.numpy(), want, TORCH_ATOL)


@pytest.mark.reference
@pytest.mark.parametrize(("role", "b", "h", "w"), CASES)
def test_onnx_fp32_matches_reference(role, b, h, w, reference_outputs, sessions) -> None:
    x, y, style, _ = reference_outputs(role, b, h, w)
    got = sessions[(role, "fp32")].run(list(OUTPUTS[role]), {"image": x})
    _check(f"{role} onnx fp32 y", got[0], y, ORT_FP32_ATOL)
    if role == "segment":
        _check("segment onnx fp32 style", got[1], style, ORT_FP32_ATOL)


@pytest.mark.reference
@pytest.mark.parametrize(("role", "b", "h", "w"), CASES)
def test_onnx_fp16_within_tolerance(role, b, h, w, reference_outputs, sessions) -> None:
    x, y, style, _ = reference_outputs(role, b, h, w)
    got = sessions[(role, "fp16")].run(list(OUTPUTS[role]), {"image": x})
    for name, g, want in zip(OUTPUTS[role], got, (y, style)):
        assert g.dtype == np.float32  # graph I/O stays fp32
        span = float(want.max() - want.min())
        rel = max_abs(g, want) / span
        FP16_ERRORS[f"{role}/{name}/{b}x{h}x{w}"] = rel
        assert rel <= FP16_REL_TOL, report_mismatch(
            f"{role} onnx fp16 {name} (range {span:.3g})", g, want, FP16_REL_TOL * span
        )
        # A graph that silently stayed fp32 would pass the tolerance: require a visible change.
        assert rel > 1e-6, f"{role} fp16 {name} is bit-close to fp32 ({rel:.2g}): not fp16?"


def test_exported_files_are_single_and_self_contained(ref_seg, tmp_path: Path) -> None:
    res = export_onnx(ref_seg.path, tmp_path, verify=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "refseg.fp32.onnx", "refseg.fp32.onnx.json"
    ]
    assert res.max_abs_error == {}
