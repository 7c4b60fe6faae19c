"""Rescales whose result cannot fit are refused before anything is allocated (issue 13 item 3):
``--diameter 0.1`` / ``1e-6`` used to end in ``ValueError: array is too big`` or MemoryError."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from cp3rt.errors import ConfigError, Cp3rtError
from cp3rt.runtime.prep.diameter_scale import (
    MAX_NET_PIXELS,
    MIN_DIAMETER,
    rescale_factor,
    scaled_size,
    volume_net_size,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))  # scale_testutil


@pytest.mark.parametrize("diameter", [0.1, 1e-6, 0.999])
def test_sub_pixel_diameter_refused_naming_it(diameter):
    for builtin in (True, False):
        with pytest.raises(ConfigError) as info:
            rescale_factor(30.0, diameter=diameter, builtin=builtin)
        msg = str(info.value)
        assert f"diameter={diameter:g}" in msg and "at least 1 px" in msg and "\n" not in msg
    assert rescale_factor(30.0, diameter=MIN_DIAMETER) == 30.0


def test_resized_size_over_the_limit_refused_before_allocating():
    with pytest.raises(ConfigError) as info:
        scaled_size((4000, 5000), 30.0)  # 120000 x 150000 = 1.8e10 px
    msg = str(info.value)
    for needle in ("4000x5000", "120000x150000", "1.8e+10 px", "rescale=30", "diameter 1 px",
                   f"{MAX_NET_PIXELS:.3g}"):
        assert needle in msg, needle
    # Just under the limit is allowed; the check is arithmetic only.
    side = int(np.sqrt(MAX_NET_PIXELS))
    assert scaled_size((side, side), 1.0) == (side, side)
    with pytest.raises(ConfigError, match="limit"):
        scaled_size(MAX_NET_PIXELS + 1, 1.0)


@pytest.mark.parametrize("rescale", [np.float32(1e38), 1e300, 1e308])
def test_overflowing_products_are_config_errors(rescale):
    with pytest.raises(ConfigError, match="limit"):
        scaled_size((1000, 1000), rescale)


@pytest.mark.parametrize("diameter", [0.1, 1e-6])
def test_pipeline_run_refuses_with_project_error(diameter):
    from scale_testutil import NumpyEngine

    from cp3rt.runtime.pipeline import Pipeline

    img = np.random.default_rng(0).random((64, 64)).astype(np.float32)
    with Pipeline.from_engines(NumpyEngine()) as p:
        with pytest.raises(Cp3rtError, match=f"diameter={diameter:g}"):
            p.run(img, diameter=diameter)


def test_pipeline_run_huge_image_small_diameter_refused():
    """Diameter >= 1 px but an image so large that the net's scale would exceed the limit:
    refused by the size check."""
    from scale_testutil import NumpyEngine

    from cp3rt.runtime.pipeline import Pipeline

    img = np.random.default_rng(0).random((3000, 1600)).astype(np.float32)  # x30: 4.3e9 px
    with Pipeline.from_engines(NumpyEngine()) as p:
        with pytest.raises(Cp3rtError, match="limit"):
            p.run(img, diameter=1.0)


def test_volume_net_size_equals_the_stage_arithmetic_and_refuses_huge_volumes():
    from cp3rt.runtime.stages.segment_volume import net_size

    for shape, rescale, aniso in [((10, 40, 50), 30 / 17, 2.0), ((7, 33, 21), np.float32(0.7), None),
                                  ((5, 64, 64), 1.0, 1.0), ((12, 64, 80), 1.0, 3.3)]:
        assert volume_net_size(shape, rescale, aniso) == net_size(shape, rescale, aniso)
    with pytest.raises(ConfigError, match=r"anisotropy=1e\+09 .* over the limit"):
        volume_net_size((100, 512, 512), 1.0, 1e9)
    with pytest.raises(ConfigError, match="voxels"):
        volume_net_size((100, 512, 512), 30.0, 1.0)  # diameter 1 px: 3000 x 15360 x 15360
    with pytest.raises(ConfigError, match="shrinks 3 planes to 0"):
        volume_net_size((3, 64, 64), 1.0, 0.1)


class _IdentityRestore:
    """A restoration engine that returns its input (what matters here is the resize before it)."""

    def __new__(cls):
        from cp3rt.engines.base import BaseEngine, TensorSpec
        from cp3rt.manifest import EngineManifest

        class Engine(BaseEngine):
            backend = "numpy"

            def __init__(self) -> None:
                manifest = EngineManifest(
                    role="restore", source_model="numpy-identity", source_sha256="0" * 64, nchan=1, nout=1,
                    diam_mean=30.0, diam_labels=30.0, precision="fp32", opset=17)
                spec = TensorSpec("image", "float32", (None, 1, None, None))
                super().__init__((spec,), (TensorSpec("restored", "float32", (None, 1, None, None)),),
                                 manifest, label="numpy-identity")
                self.batches = 0

            def _run(self, feeds):
                self.batches += 1
                return {"restored": feeds["image"].copy()}

        return Engine()


@pytest.mark.parametrize("diameter, image_shape, needle", [(0.1, (64, 64), "diameter=0.1"),
                                                             (1.0, (3000, 1600), "limit")])
def test_restore_then_segment_refuses_before_the_restoration_net_runs(diameter, image_shape, needle):
    """The restore stage resizes by diam_mean / diameter too: the same limits hold there, and
    the refusal comes before any tile reaches the restoration net."""
    from scale_testutil import NumpyEngine

    from cp3rt.runtime.pipeline import Pipeline

    img = np.random.default_rng(0).random(image_shape).astype(np.float32)
    restore = _IdentityRestore()
    with Pipeline.from_engines(NumpyEngine(), restore) as p:
        with pytest.raises(Cp3rtError, match=needle):
            p.run(img, diameter=diameter)
    assert restore.batches == 0
