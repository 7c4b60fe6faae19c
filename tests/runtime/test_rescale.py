"""Diameter -> rescale -> resized size (§3.4, §9 item 2), checked against the reference's own
CellposeModel on sizes where float32 and float64 truncate differently."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from cellpose import models as ref_models
from cellpose.resnet_torch import CPnet

from cp3rt.errors import ConfigError
from cp3rt.runtime.prep.diameter_scale import rescale_factor, scaled_size


def test_spec_examples() -> None:
    r = rescale_factor(30.0, diameter=45.0)
    assert isinstance(r, float) and scaled_size(150, r) == 100  # 150 * (30/45) == 100.0 exactly
    assert scaled_size((150, 170), r) == (100, 113)
    assert rescale_factor(30.0, diameter=30.0) == 1.0
    assert rescale_factor(30.0, rescale=0.5) == 0.5
    assert rescale_factor(30.0, diameter=0, rescale=2.0) == 2.0  # diameter 0 means "not given"


def test_float_types_follow_the_reference() -> None:
    assert isinstance(rescale_factor(30.0, diameter=11.0, builtin=False), np.float32)
    assert isinstance(rescale_factor(30.0, diam_labels=17.1), np.float32)  # built-in, no diameter
    # Slow re-statement of the rule with the reference's Python/numpy types.
    for length, diameter in ((77, 11.0), (119, 7.0), (221, 13.0)):
        f64 = int(length * (30.0 / diameter))
        f32 = int(length * (np.float32(30.0) / diameter))
        assert f64 != f32
        assert scaled_size(length, rescale_factor(30.0, diameter=diameter)) == f64
        assert scaled_size(length, rescale_factor(30.0, diameter=diameter, builtin=False)) == f32


def _weights(path, diam_mean: float, diam_labels: float) -> None:
    torch.manual_seed(0)
    net = CPnet([2, 32, 64, 128, 256], 3, 3, diam_mean=diam_mean)
    net.diam_mean.data[:] = diam_mean
    net.diam_labels.data[:] = diam_labels
    torch.save(net.state_dict(), path)


def _ref_net_size(model, shape, **kw) -> tuple[int, int]:
    img = np.random.default_rng(0).random(shape).astype(np.float32)
    _, flows, _ = model.eval(img, channels=[0, 0], resample=False, compute_masks=False, **kw)
    return tuple(flows[1].shape[-2:])


def test_sizes_match_reference_models(tmp_path, monkeypatch) -> None:
    """A zoo-named file (built-in: diam_mean 30 as a Python float) and the same weights given
    by path (custom: float32 from the file), with diam_labels 58 stored in both."""
    monkeypatch.setattr(ref_models, "MODEL_DIR", tmp_path)
    _weights(tmp_path / "cyto3", 30.0, 58.0)
    custom = tmp_path / "my_model"
    _weights(custom, 30.0, 58.0)
    builtin_model = ref_models.CellposeModel(model_type="cyto3", mkldnn=False)
    custom_model = ref_models.CellposeModel(pretrained_model=str(custom), mkldnn=False)

    # Tiny images whose sizes truncate differently in float32 and float64.
    cases = [  # (model, builtin, image shape, diameter, reference net-input size)
        (builtin_model, True, (22, 26), 44.0, (14, 17)),    # float64: 22 * (30/44) = 14.99..
        (custom_model, False, (22, 26), 44.0, (15, 17)),    # float32: 15.0
        (builtin_model, True, (29, 40), None, (14, 20)),    # 30 / float32(58): float32 both
        (custom_model, False, (29, 40), None, (14, 20)),    # (float64 would give 15)
    ]
    for model, builtin, shape, diameter, size in cases:
        assert _ref_net_size(model, shape, diameter=diameter) == size
        r = rescale_factor(30.0, diameter=diameter, diam_labels=58.0, builtin=builtin)
        assert scaled_size(shape, r) == size, (builtin, shape, diameter)


@pytest.mark.parametrize(("kw", "field"), [
    ({"diameter": float("nan")}, "diameter"),
    ({"rescale": 0.0}, "rescale"),
    ({"rescale": -1.0}, "rescale"),
    ({"diam_labels": 0.0}, "diam_labels"),
])
def test_bad_values(kw, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        rescale_factor(30.0, **kw)
    with pytest.raises(ConfigError, match="diam_mean"):
        rescale_factor(-30.0)


def test_sizes_that_vanish_are_refused() -> None:
    with pytest.raises(ConfigError, match="0 px"):
        scaled_size(3, 0.2)
    with pytest.raises(ConfigError, match="length"):
        scaled_size(0, 1.0)
