"""CPnet's module tree reproduces Cellpose v3's state dict exactly (keys, order, shapes, dtypes)."""

from __future__ import annotations

import pytest
import torch
from cellpose.resnet_torch import CPnet as RefCPnet

from cp3rt.errors import ConfigError
from cp3rt.models._blocks import make_style
from cp3rt.models.cpnet import CPnet

# Spec §1.3 [verified]: all nn.Parameters incl. the two diameter scalars, no BN buffers.
PARAM_COUNTS = {((2, 32, 64, 128, 256), 3): 6_600_845, ((1, 32, 64, 128, 256), 1): 6_600_455,
                ((3, 32, 64, 128, 256), 3): 6_601_169}
STATE_DICT_ENTRIES = 313


@pytest.mark.reference
@pytest.mark.parametrize(("nbase", "nout"), list(PARAM_COUNTS))
def test_state_dict_matches_reference(nbase: tuple[int, ...], nout: int) -> None:
    with torch.device("meta"):
        ref = RefCPnet(list(nbase), nout, 3).state_dict()
        mine = CPnet(nbase, nout).state_dict()
    assert len(mine) == STATE_DICT_ENTRIES
    assert list(mine) == list(ref)  # same order too: files list keys in this order
    for key in ref:
        assert mine[key].shape == ref[key].shape, key
        assert mine[key].dtype == ref[key].dtype, key


@pytest.mark.parametrize(("nbase", "nout"), list(PARAM_COUNTS))
def test_parameter_count(nbase: tuple[int, ...], nout: int) -> None:
    with torch.device("meta"):
        net = CPnet(nbase, nout)
    assert sum(p.numel() for p in net.parameters()) == PARAM_COUNTS[(nbase, nout)]


def test_diameters_are_frozen_parameters_first_in_state_dict() -> None:
    with torch.device("meta"):
        net = CPnet((2, 32, 64, 128, 256), 3, diam_mean=17.0)
    assert list(net.state_dict())[:2] == ["diam_mean", "diam_labels"]
    assert not net.diam_mean.requires_grad and not net.diam_labels.requires_grad
    assert net.diam_mean.shape == (1,) and net.diam_labels.shape == (1,)


@pytest.mark.reference
def test_small_nbase_matches_reference_keys() -> None:
    """Other widths/depths build the same key pattern as the reference (any nbase works)."""
    nbase = [3, 8, 16, 24]
    with torch.device("meta"):
        ref = RefCPnet(nbase, 2, 3).state_dict()
        mine = CPnet(nbase, 2).state_dict()
    assert {k: tuple(v.shape) for k, v in mine.items()} == {k: tuple(v.shape) for k, v in ref.items()}


def test_forward_shapes_and_features() -> None:
    torch.manual_seed(0)
    net = CPnet((2, 8, 16, 32, 64), 3).eval()
    with torch.no_grad():
        y, style, feats = net(torch.randn(3, 2, 48, 80))
    assert y.shape == (3, 3, 48, 80)
    assert style.shape == (3, 64)
    assert [tuple(f.shape) for f in feats] == [
        (3, 8, 48, 80), (3, 16, 24, 40), (3, 32, 12, 20), (3, 64, 6, 10)
    ]


def test_style_is_global_mean_over_l2_norm_without_eps() -> None:
    """Slow obvious version: average every position with a loop, divide by the plain norm."""
    gen = torch.Generator().manual_seed(3)
    d = torch.randn(2, 5, 3, 7, generator=gen, dtype=torch.float64)
    want = torch.zeros(2, 5, dtype=torch.float64)
    for b in range(2):
        for c in range(5):
            want[b, c] = sum(d[b, c, i, j] for i in range(3) for j in range(7)) / 21
        want[b] = want[b] / torch.sqrt(sum(want[b, c] ** 2 for c in range(5)))
    assert torch.allclose(make_style(d), want, atol=1e-12)
    # No epsilon: an all-zero map gives NaN like the reference, not a silent zero vector.
    assert torch.isnan(make_style(torch.zeros(1, 4, 2, 2))).all()


@pytest.mark.parametrize(
    ("nbase", "nout", "field"),
    [([2], 3, "nbase"), ([2, 0, 4], 3, "nbase"), ([2, 8.5], 3, "nbase"), ([2, 8], 0, "nout"),
     ([2, 8], True, "nout")],
)
def test_bad_architecture_is_a_config_error(nbase: list, nout: object, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        CPnet(nbase, nout)  # type: ignore[arg-type]


def test_bad_diam_mean_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="diam_mean"):
        CPnet([2, 8], 3, diam_mean=0.0)
