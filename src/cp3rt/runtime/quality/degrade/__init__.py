"""Degradation synthesis (spec §6): Poisson noise, Gaussian blur, downsampling, presets.

numpy-only re-implementation of the reference ``add_noise`` used to make training and benchmark
data for the restoration nets; seeded through an explicit ``numpy.random.Generator``.
"""

from __future__ import annotations

from cp3rt.runtime.quality.degrade.files import RECORD_NAME, DegradeRun, degrade_files
from cp3rt.runtime.quality.degrade.ops import (
    blur_kernel,
    downsample_upsample,
    gaussian_blur,
    gaussian_kernel_1d,
    kernel_half_width,
    normalize_clean,
    poisson_counts,
    renormalize,
    resize_bilinear,
)
from cp3rt.runtime.quality.degrade.params import (
    CLI_NOISE_NAMES,
    MAX_PSCALE,
    MAX_SIGMA,
    PRESET_NAMES,
    FixedNoise,
    Noise,
    NoiseParams,
    OneClickNoise,
    check_run,
    max_sigma,
    noise_from_options,
    noise_preset,
)
from cp3rt.runtime.quality.degrade.synth import AppliedNoise, add_noise, add_noise_batch

__all__ = [
    "CLI_NOISE_NAMES", "MAX_PSCALE", "MAX_SIGMA", "PRESET_NAMES", "RECORD_NAME", "AppliedNoise", "DegradeRun",
    "FixedNoise", "Noise", "NoiseParams", "OneClickNoise", "add_noise", "add_noise_batch",
    "blur_kernel", "check_run", "degrade_files", "downsample_upsample", "gaussian_blur", "gaussian_kernel_1d",
    "kernel_half_width", "max_sigma", "noise_from_options", "noise_preset", "normalize_clean",
    "poisson_counts", "renormalize", "resize_bilinear",
]
