"""Recovering a weight file from a cp3rt ONNX export (cp3rt.export.from_onnx), on CPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from cp3rt.errors import WeightFileError
from cp3rt.export.from_onnx import recover_cpnet, recover_weight_file
from cp3rt.export.to_onnx import export_onnx
from cp3rt.models.weights import load_cpnet, read_weight_file

ASSETS = Path(__file__).resolve().parents[2] / "src" / "cp3rt" / "assets" / "models"


@pytest.mark.parametrize(("name", "nchan", "nout", "diam_labels"),
                         [("cp3rt_nuclei", 2, 3, 27.17), ("cp3rt_denoise_nuclei", 1, 1, 17.0)])
def test_shipped_starters_come_back_as_weight_files(tmp_path, name, nchan, nout, diam_labels) -> None:  # noqa: ANN001
    path = recover_weight_file(ASSETS / f"{name}.onnx", tmp_path / name)
    wf = read_weight_file(path)
    assert (wf.nchan, wf.nout, wf.nbase[1:]) == (nchan, nout, (16, 32, 64, 128))
    assert wf.diam_mean == 17.0 and wf.diam_labels == pytest.approx(diam_labels, abs=0.01)
    x = np.random.default_rng(0).normal(size=(1, nchan, 96, 64)).astype(np.float32)
    want = ort.InferenceSession(str(ASSETS / f"{name}.onnx"), providers=["CPUExecutionProvider"]).run(None, {"image": x})[0]
    with torch.no_grad():
        got = load_cpnet(wf).eval()(torch.from_numpy(x))[0].numpy()
    # both fp32 from the same values: only the summation order differs
    assert np.abs(got - want).max() <= 1e-4 * (want.max() - want.min())


def test_an_exact_round_trip_through_an_unfolded_export(ref_seg, tmp_path) -> None:  # noqa: ANN001
    exported = export_onnx(ref_seg.path, tmp_path, name="seg", fold_bn=False).onnx_path
    net = recover_cpnet(exported, diam_mean=30.0, diam_labels=30.0)
    x = torch.randn(1, 2, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want, got = ref_seg.net(x)[0], net(x)[0]
    assert float((got - want).abs().max()) <= 1e-4 * float(want.max() - want.min())


def test_refuses_a_folded_export_in_one_sentence(ref_seg, tmp_path) -> None:  # noqa: ANN001
    exported = export_onnx(ref_seg.path, tmp_path, name="seg", fold_bn=True).onnx_path
    with pytest.raises(WeightFileError, match=r"seg\.onnx: .*not a plain cp3rt export"):
        recover_cpnet(exported, diam_mean=30.0, diam_labels=30.0)


def test_refuses_a_file_that_is_not_onnx(tmp_path) -> None:  # noqa: ANN001
    bad = tmp_path / "weights.onnx"
    bad.write_bytes(b"not a protobuf at all \x00\xff")
    with pytest.raises(WeightFileError, match=r"weights\.onnx: cannot be read as an ONNX model"):
        recover_cpnet(bad, diam_mean=17.0, diam_labels=17.0)
