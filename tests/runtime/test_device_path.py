"""The GPU-resident path end to end on CPU tensors (the stand-in for a GPU) against the host path.

One torch engine on the CPU serves both paths (``infer`` for the host path, ``infer_device``
for the device path), with the trained starters recovered from their shipped ONNX. When no net
input is resized the masks, flows and style must be identical (normalisation, tiles, blend and
dynamics are bit-identical); with a resize (rounded differently on the device) the masks must
match by AP.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from cp3rt.engines.torch_engine import TorchEngine
from cp3rt.errors import ConfigError
from cp3rt.export.from_onnx import recover_weight_file
from cp3rt.runtime.config import RunConfig
from cp3rt.runtime.nets import net_from_engine
from cp3rt.runtime.quality.metrics import average_precision
from cp3rt.runtime.result import StageTimer
from cp3rt.runtime.stages.image import run_image
from cp3rt.runtime.stages.image_device import run_image_on_device

ASSETS = Path(__file__).resolve().parents[2] / "src" / "cp3rt" / "assets"
# With a resize the device rounds differently (RESIZE_TOLERANCE): masks are compared by matching.
MIN_AP = {0.5: 0.99, 0.9: 0.95}


@pytest.fixture(scope="module")
def nets(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    folder = tmp_path_factory.mktemp("starters")
    out = {}
    for role, name in (("segment", "cp3rt_nuclei"), ("restore", "cp3rt_denoise_nuclei")):
        weights = recover_weight_file(ASSETS / "models" / f"{name}.onnx", folder / name)
        out[role] = net_from_engine(str(weights), role, TorchEngine(weights), weights=weights)
    yield out
    for net in out.values():
        net.close()


class _Nets:
    def __init__(self, segment, restore=None) -> None:  # noqa: ANN001
        self.segment, self.restore, self.restore_chan2 = segment, restore, None

    def size_model(self) -> None:
        return None


def _host(nets: _Nets, img: np.ndarray, cfg: RunConfig):  # noqa: ANN202
    return run_image(nets, img, cfg, StageTimer(), None)


@pytest.mark.slow
@pytest.mark.parametrize("restore", [False, True])
@pytest.mark.parametrize("diameter", [17.0, 24.0])
def test_device_path_gives_the_host_paths_masks(nets, restore, diameter) -> None:  # noqa: ANN001
    img = tifffile.imread(ASSETS / "samples" / "dsb2018_nuclei.tif")
    cfg = RunConfig(diameter=diameter, channels=(0, 0))
    rest = nets["restore"] if restore else None
    want = _host(_Nets(nets["segment"], rest), img, cfg)
    got = run_image_on_device(img, nets["segment"], cfg, restore=rest)
    assert want.masks.max() > 20, "the starter should find the sample's nuclei"
    if rest is None and diameter == nets["segment"].diam_mean:  # nothing is resized
        # (the restoration net's diam_mean is 30 here: with it the image is always resized)
        np.testing.assert_array_equal(got.masks, want.masks)
        np.testing.assert_array_equal(got.dP, want.dP)
        np.testing.assert_array_equal(got.style, want.style)
    else:
        ap = average_precision(want.masks, got.masks, tuple(MIN_AP))[0]
        assert all(a >= MIN_AP[t] for a, t in zip(ap, MIN_AP)), ap
    assert got.niter == want.niter and got.rescale == want.rescale


def test_refuses_what_it_does_not_do_in_one_sentence(nets) -> None:  # noqa: ANN001
    img = np.zeros((64, 64), np.float32)
    with pytest.raises(ConfigError, match="does not augment tiles"):
        run_image_on_device(img, nets["segment"], RunConfig(diameter=17.0, augment=True))
    with pytest.raises(ConfigError, match="does not estimate diameters"):
        run_image_on_device(img, nets["segment"], RunConfig())
    from cp3rt.runtime.prep.normalize import NormalizeConfig

    with pytest.raises(ConfigError, match="whole-image percentiles only"):
        run_image_on_device(img, nets["segment"], RunConfig(diameter=17.0, normalize=NormalizeConfig(invert=True)))
