"""``add_noise``: synthesise degraded images from clean ones (spec §6.1), with numpy only.

Randomness comes from one explicit ``numpy.random.Generator``; draws happen in the order of the
reference (downsampling, blur selection, sigmas, Poisson selection, photon scales, counts), but
the streams are numpy's, so results are reproducible per seed, not bit-equal to the reference.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cp3rt.errors import ConfigError, InputError
from cp3rt.runtime.quality.degrade.ops import (
    downsample_upsample,
    gaussian_blur,
    kernel_half_width,
    poisson_counts,
    renormalize,
)
from cp3rt.runtime.quality.degrade.params import DIAMETER, FixedNoise, Noise, NoiseParams, OneClickNoise


@dataclass(frozen=True)
class AppliedNoise:
    """What was done to one image: ds 1 = not downsampled, sigma 0 = not blurred,
    pscale None = no Poisson noise."""

    ds: int = 1
    sigma_y: float = 0.0
    sigma_x: float = 0.0
    pscale: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"ds": self.ds, "sigma_y": self.sigma_y, "sigma_x": self.sigma_x,
                "pscale": self.pscale}


def _draw(params: NoiseParams, diams: np.ndarray, rng: np.random.Generator) -> list[AppliedNoise]:
    n = len(diams)
    ds = np.ones(n, dtype=np.int64)
    chosen = rng.random(n) < params.downsample
    ds[chosen] = rng.integers(2, params.ds_max + 1, size=int(chosen.sum()))
    down = ds > 1
    blurred = (rng.random(n) < params.blur) | down  # downsampled images are always blurred
    sig_y = np.zeros(n)
    sig_x = np.zeros(n)
    if blurred.any():
        g = params.gblur
        scale = diams / DIAMETER
        if params.uniform_blur and params.iso:
            r = rng.random(n)
            r[down] = ds[down] / (2.0 * g)
            sig_y = scale * g * (1.0 / g + (1.0 - 1.0 / g) * r)
            sig_x = sig_y.copy()
        elif not params.iso:
            r = rng.random(n)
            jitter = rng.uniform(-0.35, 0.35, size=int(down.sum()))
            r[down] = np.clip(ds[down] / g + jitter, 0.05, 1.5)
            sig_y = scale * g * r
            sig_x = sig_y / 10.0
        else:
            r = np.clip(0.5 * rng.exponential(1.0, size=int(blurred.sum())), 0.1, 1.0) * g
            sig_y[blurred] = scale[blurred] * 5.0 * r
            sig_x = sig_y.copy()
        sig_y = np.where(blurred, sig_y, 0.0)
        sig_x = np.where(blurred, sig_x, 0.0)
    noisy = rng.random(n) < params.poisson
    scales: list[float | None] = [None] * n
    for i in np.nonzero(noisy)[0]:
        # Gamma with rate beta = scale 1/beta; at least one photon per unit intensity.
        scales[i] = max(1.0, float(rng.gamma(params.alpha, 1.0 / params.beta)))
    return [AppliedNoise(int(ds[i]), float(sig_y[i]), float(sig_x[i]), scales[i])
            for i in range(n)]


def _apply(images: np.ndarray, plan: Sequence[AppliedNoise], iso: bool,
           rng: np.random.Generator) -> np.ndarray:
    out = images.copy()
    blurred = [i for i, a in enumerate(plan) if a.sigma_y > 0 or a.sigma_x > 0]
    if blurred:
        # One kernel width for the whole batch, from its largest sigma_y (as the reference).
        w = kernel_half_width(max(plan[i].sigma_y for i in blurred))
        for i in blurred:
            out[i] = gaussian_blur(out[i], plan[i].sigma_y, plan[i].sigma_x, w)
    for i, a in enumerate(plan):
        if a.ds > 1:
            out[i] = downsample_upsample(out[i], a.ds, iso=iso)
    for i, a in enumerate(plan):
        if a.pscale is not None:
            out[i] = poisson_counts(out[i], a.pscale, rng)
    return renormalize(out)


def _check_images(images: Any) -> np.ndarray:
    x = np.asarray(images)
    if x.ndim != 4:
        raise InputError(f"images has shape {x.shape}; add_noise_batch needs (B, C, Ly, Lx).")
    if x.size == 0:
        raise InputError(f"images has shape {x.shape}; it must not be empty.")
    x = x.astype(np.float32)
    if not np.all(np.isfinite(x)):
        raise InputError("images contains NaN or infinite values.")
    if x.min() < 0:
        raise InputError(
            f"images has negative values (min {x.min():.3g}); degradations expect clean images "
            "normalised to [0, 1] with negatives clipped (see normalize_clean)."
        )
    return x


def _diameters(diameters: float | Sequence[float] | None, n: int) -> np.ndarray:
    d = np.full(n, DIAMETER) if diameters is None else np.broadcast_to(
        np.asarray(diameters, dtype=np.float64), (n,)).copy()
    if not np.all(np.isfinite(d)) or np.any(d <= 0):
        raise ConfigError(f"diameters is {diameters}; object diameters must be > 0.")
    return d


def add_noise_batch(
    images: Any,
    noise: Noise,
    rng: np.random.Generator,
    diameters: float | Sequence[float] | None = None,
) -> tuple[np.ndarray, tuple[AppliedNoise, ...]]:
    """Degrade a ``(B, C, Ly, Lx)`` batch of clean images; returns the images and what was done.

    ``diameters``: object diameter per image in pixels (default 30); blur sigmas scale with
    ``diameter / 30``. The output is float32, renormalised per image and channel (1 %/99 %).
    """
    x = _check_images(images)
    if not isinstance(rng, np.random.Generator):
        raise ConfigError("rng must be a numpy.random.Generator (use numpy.random.default_rng).")
    diams = _diameters(diameters, x.shape[0])
    if isinstance(noise, FixedNoise):
        plan = [AppliedNoise(noise.ds, *noise.sigmas(float(d)), noise.pscale) for d in diams]
        return _apply(x, plan, noise.iso, rng), tuple(plan)
    if isinstance(noise, NoiseParams):
        plan = _draw(noise, diams, rng)
        return _apply(x, plan, noise.iso, rng), tuple(plan)
    if isinstance(noise, OneClickNoise):
        # One sub-batch per recipe, recipes in random order (reference training loop).
        order = rng.permutation(len(noise.sets))
        size = -(-x.shape[0] // len(noise.sets))
        out = np.empty_like(x)
        applied: list[AppliedNoise] = []
        for k, which in enumerate(order):
            sl = slice(k * size, (k + 1) * size)
            if sl.start >= x.shape[0]:
                break
            sub, plan_k = add_noise_batch(x[sl], noise.sets[which], rng, diams[sl])
            out[sl] = sub
            applied.extend(plan_k)
        return out, tuple(applied)
    raise ConfigError(
        f"noise is {type(noise).__name__}; expected NoiseParams, OneClickNoise or FixedNoise."
    )


def add_noise(
    image: Any, noise: Noise, rng: np.random.Generator, diameter: float = DIAMETER
) -> np.ndarray:
    """Degrade one clean image of shape ``(Ly, Lx)`` or ``(C, Ly, Lx)``; same shape back."""
    x = np.asarray(image)
    if x.ndim not in (2, 3):
        raise InputError(f"image has shape {x.shape}; add_noise needs (Ly, Lx) or (C, Ly, Lx).")
    batch = x[None, None] if x.ndim == 2 else x[None]
    out, _ = add_noise_batch(batch, noise, rng, diameter)
    return out[0, 0] if x.ndim == 2 else out[0]
