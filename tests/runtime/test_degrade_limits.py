"""Limits of the degradation synthesis (issue 13 item 7): bounded blur cost, the largest sigma a
recipe can draw, photon scales numpy can sample."""

from __future__ import annotations

import time

import numpy as np
import pytest
from scipy.ndimage import correlate1d

from cp3rt.errors import ConfigError, InputError
from cp3rt.runtime.quality.degrade import (
    MAX_PSCALE,
    MAX_SIGMA,
    FixedNoise,
    check_run,
    gaussian_blur,
    gaussian_kernel_1d,
    kernel_half_width,
    max_sigma,
    noise_preset,
    poisson_counts,
)
from cp3rt.runtime.quality.degrade.synth import _draw


@pytest.mark.parametrize("sy,sx", [(20.0, 20.0), (40.0, 3.0), (3.5, 100.0), (0.0, 30.0)])
def test_wide_kernel_cut_to_the_image_changes_nothing(sy, sx):
    x = np.random.default_rng(0).random((2, 30, 45)).astype(np.float32)
    w = kernel_half_width(max(sy, sx))
    full = np.asarray(x, np.float64)
    full = correlate1d(full, gaussian_kernel_1d(sy, w), axis=-2, mode="constant")
    full = correlate1d(full, gaussian_kernel_1d(sx, w), axis=-1, mode="constant")
    np.testing.assert_array_equal(gaussian_blur(x, sy, sx, w), full.astype(np.float32))


def test_largest_sigma_on_an_image_is_quick():
    x = np.random.default_rng(1).random((256, 256)).astype(np.float32)
    t0 = time.perf_counter()
    out = gaussian_blur(x, MAX_SIGMA, MAX_SIGMA)
    assert time.perf_counter() - t0 < 10 and np.isfinite(out).all()
    with pytest.raises(ConfigError, match="sigma"):
        kernel_half_width(MAX_SIGMA * 2)


@pytest.mark.parametrize("name", ["poisson", "blur", "downsample", "aniso", "blur_expr",
                                  "downsample_expr"])
def test_max_sigma_bounds_every_draw(name):
    params = noise_preset(name)
    diams = np.full(4000, 45.0)
    plan = _draw(params, diams, np.random.default_rng(7))
    drawn = max(max(a.sigma_y, a.sigma_x) for a in plan)
    assert drawn <= max_sigma(params, 45.0) + 1e-9
    if drawn > 0:
        assert drawn >= 0.5 * max_sigma(params, 45.0)  # the bound is not loose by orders


def test_check_run_refusals():
    with pytest.raises(ConfigError, match="seed=-1"):
        check_run(noise_preset("poisson"), seed=-1, diameter=30.0)
    with pytest.raises(ConfigError, match="diameter=1e"):
        check_run(noise_preset("blur"), seed=0, diameter=1e9)
    check_run(noise_preset("poisson"), seed=0, diameter=1e9)  # no blur: the diameter is unused
    with pytest.raises(ConfigError, match="pscale"):
        FixedNoise(pscale=MAX_PSCALE * 10)
    with pytest.raises(ConfigError, match="sigma"):
        FixedNoise(sigma=1e6)


def test_poisson_mean_numpy_cannot_sample_is_an_input_error():
    img = np.zeros((4, 4), np.float32)
    img[0, 0] = 1e15
    with pytest.raises(InputError, match="brightest pixel"):
        poisson_counts(img, 1e6, np.random.default_rng(0))
