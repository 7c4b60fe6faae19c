"""export_onnx: file layout, graph interface, manifest, dynamic shapes, self-check and errors.

Uses small random CPnets (nbase 8..64) for speed; full-size parity is in test_cpnet_parity.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from models_testutil import max_abs, randomise_bn, report_mismatch

from cp3rt.errors import ConfigError, ExportError
from cp3rt.export import _verify
from cp3rt.export.to_onnx import export_onnx
from cp3rt.manifest import EngineManifest, manifest_path_for
from cp3rt.models.cpnet import CPnet
from cp3rt.models.weights import load_cpnet

SMALL = (8, 16, 32, 64)
ORT_ATOL = 1e-5          # small net, fp32: onnxruntime vs torch
SHAPES = [(1, 32, 32), (8, 96, 160), (2, 224, 224)]  # full-size nets: test_cpnet_parity


def _save_small(folder: Path, name: str, nchan: int, nout: int, seed: int, **kw) -> Path:
    torch.manual_seed(seed)
    net = CPnet((nchan, *SMALL), nout, **kw)
    randomise_bn(net, torch.Generator().manual_seed(seed))
    return net.save(folder / name)


@pytest.fixture(scope="module")
def small_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("small")
    return {
        "segment": _save_small(folder, "smallseg", 2, 3, 11),
        "restore": _save_small(folder, "smallrestore", 1, 1, 12),
    }


@pytest.fixture(scope="module")
def seg_fp32(small_files, tmp_path_factory):
    return export_onnx(small_files["segment"], tmp_path_factory.mktemp("seg32"))


def _dims(value_info: onnx.ValueInfoProto) -> list[object]:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def test_segment_graph_interface(seg_fp32) -> None:
    model = onnx.load(seg_fp32.onnx_path)
    assert [_dims(i) for i in model.graph.input] == [["batch", 2, "height", "width"]]
    assert [i.name for i in model.graph.input] == ["image"]
    assert {o.name: _dims(o) for o in model.graph.output} == {
        "flows": ["batch", 3, "height", "width"], "style": ["batch", 64]
    }
    assert {op.domain: op.version for op in model.opset_import}[""] == 17
    assert all(t.data_location == onnx.TensorProto.DEFAULT and not t.external_data
               for t in model.graph.initializer)
    ops = {n.op_type for n in model.graph.node}
    assert "ReduceMean" in ops and not ops & {"AveragePool", "GlobalAveragePool"}


def test_manifest_describes_the_artefact(seg_fp32, small_files) -> None:
    m = seg_fp32.manifest
    assert seg_fp32.manifest_path == manifest_path_for(seg_fp32.onnx_path)
    assert EngineManifest.read(seg_fp32.manifest_path) == m
    assert (m.role, m.nchan, m.nout, m.precision, m.opset) == ("segment", 2, 3, "fp32", 17)
    assert m.source_model == "smallseg"
    assert m.source_sha256 == hashlib.sha256(small_files["segment"].read_bytes()).hexdigest()
    assert m.artefact_sha256 == hashlib.sha256(seg_fp32.onnx_path.read_bytes()).hexdigest()
    assert (m.diam_mean, m.diam_labels) == (30.0, 30.0)
    assert set(seg_fp32.max_abs_error) == {"flows", "style"}


@pytest.mark.parametrize(("b", "h", "w"), SHAPES)
def test_dynamic_shapes_run_and_match_torch(seg_fp32, small_files, b, h, w) -> None:
    session = ort.InferenceSession(str(seg_fp32.onnx_path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(b * h + w).standard_normal((b, 2, h, w)).astype(np.float32)
    flows, style = session.run(["flows", "style"], {"image": x})
    with torch.no_grad():
        y, s, _ = load_cpnet(small_files["segment"])(torch.from_numpy(x))
    assert flows.shape == (b, 3, h, w) and style.shape == (b, 64)
    for name, got, want in (("flows", flows, y.numpy()), ("style", style, s.numpy())):
        assert max_abs(got, want) <= ORT_ATOL, report_mismatch(name, got, want, ORT_ATOL)


def test_restore_graph_has_only_restored_output(small_files, tmp_path: Path) -> None:
    res = export_onnx(small_files["restore"], tmp_path, precision="fp16")
    model = onnx.load(res.onnx_path)
    assert [o.name for o in model.graph.output] == ["restored"]
    assert _dims(model.graph.output[0]) == ["batch", 1, "height", "width"]
    assert res.manifest.role == "restore" and res.manifest.nchan == 1
    assert set(res.max_abs_error) == {"restored"}


def test_opset_18_fp16_export_runs(small_files, tmp_path: Path) -> None:
    """Opset 18 moves ReduceMean's axes to an input: the fp16 pass must still find the style."""
    res = export_onnx(small_files["segment"], tmp_path, precision="fp16", opset=18)
    assert res.manifest.opset == 18
    assert res.max_abs_error["flows"] > 0


def test_failed_self_check_raises_and_writes_nothing(small_files, tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(_verify.VERIFY_TOLERANCE, "fp16", 1e-9)
    with pytest.raises(ExportError, match=r"fp16 ONNX output flows differs .*allowed"):
        export_onnx(small_files["segment"], tmp_path, precision="fp16")
    assert list(tmp_path.iterdir()) == []


def test_diameters_from_file_argument_and_name(tmp_path: Path) -> None:
    path = _save_small(tmp_path, "w", 2, 3, 3, diam_mean=17.0)
    assert export_onnx(path, tmp_path / "a", verify=False).manifest.diam_mean == 17.0
    given = export_onnx(path, tmp_path / "b", verify=False, diam_mean=24.0, diam_labels=20.0)
    assert (given.manifest.diam_mean, given.manifest.diam_labels) == (24.0, 20.0)
    sd = torch.load(path, weights_only=True)
    del sd["diam_mean"], sd["diam_labels"]
    torch.save(sd, tmp_path / "nucleitorch_0")
    m = export_onnx(tmp_path / "nucleitorch_0", tmp_path / "c", verify=False).manifest
    assert (m.diam_mean, m.diam_labels) == (17.0, 17.0)  # name-based fallback for both (§1.5)


def test_name_option(small_files, tmp_path: Path) -> None:
    res = export_onnx(small_files["segment"], tmp_path, name="cyto3_small", verify=False)
    assert res.onnx_path == tmp_path / "cyto3_small.onnx"
    assert res.manifest_path == tmp_path / "cyto3_small.onnx.json"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"precision": "int8"}, "precision"), ({"opset": 12}, "opset"), ({"opset": 21}, "opset"),
     ({"opset": "17"}, "opset"), ({"name": "a/b"}, "name"), ({"diam_mean": -1.0}, "diam_mean")],
)
def test_bad_options_are_config_errors(small_files, tmp_path, kwargs, field) -> None:
    with pytest.raises(ConfigError, match=field):
        export_onnx(small_files["segment"], tmp_path, verify=False, **kwargs)


def test_unknown_role_is_refused(tmp_path: Path) -> None:
    path = _save_small(tmp_path, "two", 2, 2, 4)
    with pytest.raises(ExportError, match="neither a segmentation net"):
        export_onnx(path, tmp_path, verify=False)
