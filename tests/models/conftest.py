"""Shared fixtures: weight files written by the reference ``cellpose==3.1.1.2`` CPnet itself.

The reference is a test oracle only. Its nets are randomly initialised, with randomised
BatchNorm statistics and affine parameters so that no BN layer is the identity.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from cellpose.resnet_torch import CPnet as RefCPnet
from models_testutil import randomise_bn

SEG_NBASE = [2, 32, 64, 128, 256]
RESTORE_NBASE = [1, 32, 64, 128, 256]


@dataclasses.dataclass(frozen=True)
class RefNet:
    """A reference CPnet in eval mode and the weight file its own save_model wrote."""

    net: RefCPnet
    path: Path
    nbase: tuple[int, ...]
    nout: int


def make_ref_net(
    folder: Path, name: str, nbase: list[int], nout: int, seed: int,
    diam_mean: float = 30.0, diam_labels: float | None = None,
) -> RefNet:
    torch.manual_seed(seed)  # the reference initialises its layers from the global RNG
    net = RefCPnet(nbase, nout, 3, diam_mean=diam_mean)
    randomise_bn(net, torch.Generator().manual_seed(seed + 1))
    if diam_labels is not None:
        with torch.no_grad():
            net.diam_labels.fill_(diam_labels)
    net.eval()
    path = folder / name
    net.save_model(str(path))
    return RefNet(net, path, tuple(nbase), nout)


@pytest.fixture(scope="session")
def ref_seg(tmp_path_factory: pytest.TempPathFactory) -> RefNet:
    """cyto3-shaped segmentation net (nchan 2, nout 3), diam_labels distinct from diam_mean."""
    folder = tmp_path_factory.mktemp("ref_seg")
    return make_ref_net(folder, "refseg", SEG_NBASE, 3, seed=1, diam_labels=21.5)


@pytest.fixture(scope="session")
def ref_restore(tmp_path_factory: pytest.TempPathFactory) -> RefNet:
    """denoise_cyto3-shaped restoration net (nchan 1, nout 1)."""
    folder = tmp_path_factory.mktemp("ref_restore")
    return make_ref_net(folder, "refrestore", RESTORE_NBASE, 1, seed=2)


@pytest.fixture(scope="session")
def ref_nets(ref_seg: RefNet, ref_restore: RefNet) -> dict[str, RefNet]:
    return {"segment": ref_seg, "restore": ref_restore}
