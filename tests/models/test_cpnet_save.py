"""CPnet.save writes what Cellpose v3's save_model writes; the reference loads it unchanged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from cellpose.resnet_torch import CPnet as RefCPnet
from models_testutil import max_abs, randomise_bn, report_mismatch

from cp3rt.models.cpnet import CPnet
from cp3rt.models.weights import load_cpnet

# Same weights, same maths; only summation order may differ (mean vs the reference's pooling).
ROUNDTRIP_ATOL = 1e-5


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[CPnet, Path]:
    torch.manual_seed(5)
    net = CPnet((2, 32, 64, 128, 256), 3, diam_mean=17.0)
    randomise_bn(net, torch.Generator().manual_seed(6))
    with torch.no_grad():
        net.diam_labels.fill_(12.5)
    path = net.eval().save(tmp_path_factory.mktemp("saved") / "mynet")
    return net, path


def test_file_is_a_bare_state_dict(saved) -> None:
    net, path = saved
    sd = torch.load(path, map_location="cpu", weights_only=True)
    assert list(sd) == list(net.state_dict())
    for key, value in net.state_dict().items():
        assert torch.equal(sd[key], value), key
    assert not [p for p in path.parent.iterdir() if p != path]  # no temp file left behind


@pytest.mark.reference
def test_reference_loads_cp3rt_file_with_identical_outputs(saved) -> None:
    net, path = saved
    ref = RefCPnet([2, 32, 64, 128, 256], 3, 3)
    ref.load_model(str(path), device=torch.device("cpu"))  # the reference's own loader
    ref.eval()
    assert float(ref.diam_mean) == 17.0 and float(ref.diam_labels) == 12.5
    x = torch.from_numpy(np.random.default_rng(7).standard_normal((2, 2, 96, 160)).astype(np.float32))
    with torch.no_grad():
        y_ref, s_ref, _ = ref(x)
        y, s, _ = net(x)
    for name, got, want in (("y", y, y_ref), ("style", s, s_ref)):
        assert max_abs(got.numpy(), want.numpy()) <= ROUNDTRIP_ATOL, report_mismatch(
            name, got.numpy(), want.numpy(), ROUNDTRIP_ATOL
        )


def test_save_then_load_cpnet_roundtrip(saved) -> None:
    net, path = saved
    again = load_cpnet(path)
    assert float(again.diam_mean) == 17.0 and float(again.diam_labels) == 12.5
    for (k, a), b in zip(net.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), k
