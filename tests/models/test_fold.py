"""BatchNorm folding (cp3rt.models.fold) and the folded ONNX export, on CPU.

The folded net must compute the unfolded CPnet's function: in torch, in the exported ONNX graph,
and down to the masks on real images (the trained starter net, recovered from its shipped ONNX).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import tifffile
import torch
from models_testutil import report_mismatch

from cp3rt.engines.torch_cuda import mixed_forward, prepare_net
from cp3rt.export.from_onnx import recover_weight_file
from cp3rt.export.to_onnx import export_onnx
from cp3rt.models.fold import FoldedCPnet, fold_batchnorm
from cp3rt.models.weights import load_cpnet

# Folding only reorders float32 arithmetic (weights scaled in float64, rounded once):
# max |folded - unfolded| as a fraction of the output's range.
FOLD_TOLERANCE = 1e-5
# bf16 keeps 8 mantissa bits: the same limit as the torch-CUDA backend's bf16 tests.
BF16_TOLERANCE = 3e-2
ASSETS = Path(__file__).resolve().parents[2] / "src" / "cp3rt" / "assets" / "models"
DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def _rel_close(name: str, got: torch.Tensor, want: torch.Tensor, rel: float) -> None:
    got_np, want_np = got.detach().double().numpy(), want.detach().double().numpy()
    limit = rel * max(float(want_np.max() - want_np.min()), 1e-6)
    assert np.abs(got_np - want_np).max() <= limit, report_mismatch(name, got_np, want_np, limit)


@pytest.mark.parametrize("which", ["ref_seg", "ref_restore"])
def test_folded_net_computes_the_unfolded_function(which, request) -> None:  # noqa: ANN001
    ref = request.getfixturevalue(which)
    net = load_cpnet(ref.path)
    folded = fold_batchnorm(net)
    x = torch.randn(2, net.nchan, 64, 96, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y, style, _ = net(x)
        y_f, style_f = folded(x)
    _rel_close("y", y_f, y, FOLD_TOLERANCE)
    _rel_close("style", style_f, style, FOLD_TOLERANCE)


def test_folding_removes_every_batchnorm_and_leaves_the_source_alone(ref_seg) -> None:  # noqa: ANN001
    net = load_cpnet(ref_seg.path)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    folded = fold_batchnorm(net)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_folding_refuses_a_net_in_training_mode(ref_seg) -> None:  # noqa: ANN001
    with pytest.raises(ValueError, match="eval mode"):
        FoldedCPnet(load_cpnet(ref_seg.path).train())


def test_folded_bf16_matches_the_mixed_precision_forward(ref_seg) -> None:  # noqa: ANN001
    """Same precision recipe as the torch-CUDA backend: convs in bf16, style path in fp32."""
    net = load_cpnet(ref_seg.path)
    x = torch.randn(2, net.nchan, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want_y, want_style, _ = net(x)
        y, style = fold_batchnorm(net).to_precision(torch.bfloat16, channels_last=True)(x)
        mixed_y, _ = mixed_forward(prepare_net(load_cpnet(ref_seg.path), torch.bfloat16,
                                               torch.device("cpu"), True), x, torch.bfloat16)
    assert style.dtype == torch.float32 and y.dtype == torch.bfloat16
    _rel_close("y vs fp32", y.float(), want_y, BF16_TOLERANCE)
    _rel_close("style vs fp32", style, want_style, BF16_TOLERANCE)
    _rel_close("mixed_forward vs fp32 (same bound)", mixed_y.float(), want_y, BF16_TOLERANCE)


@pytest.fixture(scope="module")
def starter_seg(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return recover_weight_file(ASSETS / "cp3rt_nuclei.onnx", tmp_path_factory.mktemp("starter") / "cp3rt_nuclei")


@pytest.fixture(scope="module")
def starter_exports(starter_seg: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[bool, Path]:
    out = tmp_path_factory.mktemp("exports")
    return {fold: export_onnx(starter_seg, out, name=f"seg_fold_{fold}", fold_bn=fold).onnx_path
            for fold in (False, True)}


def test_folded_onnx_matches_the_unfolded_onnx(starter_exports) -> None:  # noqa: ANN001
    plain, folded = (onnx.load(starter_exports[f]) for f in (False, True))
    assert not [n for n in folded.graph.node if n.op_type == "BatchNormalization"]
    assert [n for n in plain.graph.node if n.op_type == "BatchNormalization"]
    x = np.random.default_rng(3).normal(size=(2, 2, 224, 224)).astype(np.float32)
    outs = {f: ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {"image": x})
            for f, p in starter_exports.items()}
    for name, got, want in zip(("flows", "style"), outs[True], outs[False]):
        _rel_close(name, torch.from_numpy(got), torch.from_numpy(want), FOLD_TOLERANCE)


@pytest.mark.slow
@pytest.mark.parametrize(("image", "diameter"), [("stardist_dsb2018_nuclei/images/img2d.tif", 24.0),
                                               ("ctc_gowt1_nuclei/images/seq01_t021.tif", 60.0)])
def test_folded_onnx_gives_identical_masks_on_real_images(starter_exports, image, diameter) -> None:  # noqa: ANN001
    from cp3rt import Pipeline

    path = DATA / image
    if not path.is_file():  # the data set's file names are part of this test's contract
        pytest.fail(f"{path} is missing: ../shared/data must be beside the repository")
    img = tifffile.imread(path)
    masks = {}
    for fold, onnx_path in starter_exports.items():
        with Pipeline(str(onnx_path), backend="ort") as pipe:
            masks[fold] = pipe.run(img, diameter=diameter).masks
    assert masks[True].max() > 5, "the starter net should find nuclei here"
    np.testing.assert_array_equal(masks[True], masks[False])
