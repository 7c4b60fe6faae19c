"""Deterministic building blocks of the degradation synthesis (spec §6.1 steps 4, 6, 7, 8).

All functions work on float32 ``(..., Ly, Lx)`` arrays and never touch a random generator except
:func:`poisson_counts`, which takes one explicitly.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import correlate1d

from cp3rt.defaults import MIN_PERCENTILE_RANGE, PERCENTILES
from cp3rt.errors import ConfigError, InputError
from cp3rt.runtime.prep.normalize import warn_low_range
from cp3rt.runtime.quality.degrade.params import MAX_SIGMA

MIN_KERNEL_HALF_WIDTH = 8         # §6.1.4: half-width w = max(8, 2 * int(max sigma_y))
RENORM_QUANTILES = (0.01, 0.99)   # §6.1.8 img_norm
MAX_POISSON_MEAN = 1e18           # numpy's Poisson sampler refuses means above ~9.2e18 (int64)


def kernel_half_width(max_sigma: float) -> int:
    """Half-width ``w`` of the blur kernel; the kernel has ``2w - 1`` taps (§6.1.4)."""
    if not np.isfinite(max_sigma) or not 0 <= max_sigma <= MAX_SIGMA:
        raise ConfigError(f"sigma is {max_sigma}; a blur sigma must lie in [0, {MAX_SIGMA:g}] px.")
    # int() truncates like the reference's .long(); the width comes from sigma_y only.
    return max(MIN_KERNEL_HALF_WIDTH, 2 * int(max_sigma))


def gaussian_kernel_1d(sigma: float, half_width: int) -> np.ndarray:
    """Normalised Gaussian on taps ``-w+1 .. w-1``; sigma 0 gives a centred delta.

    (The reference puts the sigma-0 delta one tap off-centre; cp3rt centres it. It is never hit
    by the presets, whose sigma_x is always > 0.)
    """
    if sigma < 0:
        raise ConfigError(f"sigma is {sigma}; a blur sigma must be >= 0.")
    if half_width < 1:
        raise ConfigError(f"half_width is {half_width}; it must be >= 1.")
    taps = np.arange(-half_width + 1, half_width, dtype=np.float64)
    if sigma == 0:
        return (taps == 0).astype(np.float64)
    k = np.exp(-(taps**2) / (2.0 * sigma**2))
    return k / k.sum()


def blur_kernel(sigma_y: float, sigma_x: float, half_width: int) -> np.ndarray:
    """2-D kernel = outer product of the row (sigma_y) and column (sigma_x) kernels, sum 1."""
    k = np.outer(gaussian_kernel_1d(sigma_y, half_width), gaussian_kernel_1d(sigma_x, half_width))
    return k / k.sum()


def gaussian_blur(
    image: np.ndarray, sigma_y: float, sigma_x: float, half_width: int | None = None
) -> np.ndarray:
    """Zero-padded 'same' Gaussian blur of the last two axes (separable, float64 inside).

    ``half_width`` defaults to :func:`kernel_half_width` of ``sigma_y``; a batch passes the width
    of its largest sigma so every image is cut at the same size, as in the reference.
    """
    w = kernel_half_width(sigma_y) if half_width is None else int(half_width)
    x = np.asarray(image, dtype=np.float64)
    # The 2-D kernel is an outer product, so two 1-D passes give the same sum of products.
    for axis, sigma in ((-2, sigma_y), (-1, sigma_x)):
        k = _within(gaussian_kernel_1d(sigma, w), x.shape[axis])
        x = correlate1d(x, k, axis=axis, mode="constant", cval=0.0)
    return x.astype(np.float32)


def _within(kernel: np.ndarray, length: int) -> np.ndarray:
    """The taps of a centred, normalised kernel that can reach an axis of ``length`` pixels.

    With zero padding a tap farther than ``length - 1`` from the centre only ever meets padding,
    so dropping it (after normalising) changes no sum: the cost of a wide blur stays bounded by
    the image, not by sigma.
    """
    half = kernel.size // 2
    if half <= length - 1:
        return kernel
    return kernel[half - (length - 1): half + length]


def _linear_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weights of half-pixel (align_corners=False) linear interpolation."""
    scale = np.float32(n_in / n_out)
    src = (np.arange(n_out, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5)
    src = np.maximum(src, np.float32(0.0))  # left edge: clamp, do not extrapolate
    i0 = src.astype(np.int64)
    i1 = np.minimum(i0 + 1, n_in - 1)
    w1 = (src - i0).astype(np.float32)
    return i0, i1, np.float32(1.0) - w1, w1


def resize_bilinear(image: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of the last two axes with half-pixel centres and edge clamping.

    Same sampling as ``torch.nn.functional.interpolate(mode="bilinear", align_corners=False)``
    given an output size (no anti-aliasing).
    """
    x = np.asarray(image, dtype=np.float32)
    ly, lx = int(out_hw[0]), int(out_hw[1])
    if ly < 1 or lx < 1:
        raise ConfigError(f"out_hw is {out_hw}; both sides must be >= 1.")
    # Columns first, then rows (torch's CPU kernel order); torch may fuse multiply-adds, so
    # results agree to a few float32 ulps, not bit for bit.
    x0, x1, wx0, wx1 = _linear_taps(x.shape[-1], lx)
    x = x[..., x0] * wx0 + x[..., x1] * wx1
    y0, y1, wy0, wy1 = _linear_taps(x.shape[-2], ly)
    return (x[..., y0, :] * wy0[:, None] + x[..., y1, :] * wy1[:, None]).astype(np.float32)


def downsample_upsample(image: np.ndarray, ds: int, iso: bool = True) -> np.ndarray:
    """Keep every ``ds``-th row (and column if ``iso``), then resize back bilinearly (§6.1.6)."""
    if int(ds) != ds or ds < 1:
        raise ConfigError(f"ds is {ds}; the downsampling factor must be an integer >= 1.")
    x = np.asarray(image, dtype=np.float32)
    if ds == 1:
        return x.copy()
    small = x[..., :: int(ds), :: int(ds)] if iso else x[..., :: int(ds), :]
    return resize_bilinear(small, x.shape[-2:])


def poisson_counts(image: np.ndarray, pscale: float, rng: np.random.Generator) -> np.ndarray:
    """Photon counts ``Poisson(pscale * image)`` as float32 (§6.1.7); image must be >= 0."""
    if not np.isfinite(pscale) or pscale <= 0:
        raise ConfigError(f"pscale is {pscale}; the photon scale must be finite and > 0.")
    lam = float(pscale) * np.asarray(image, dtype=np.float64)
    top = float(lam.max()) if lam.size else 0.0
    if top > MAX_POISSON_MEAN:
        raise InputError(
            f"the brightest pixel is {top / pscale:.3g} times the image's 1-99 % range; with "
            f"pscale {pscale:g} it would need {top:.3g} photons, more than Poisson sampling counts "
            f"({MAX_POISSON_MEAN:.0e}); clip the image's outliers or use a smaller --pscale."
        )
    # Blur/resize of a non-negative image can leave -1e-9 rounding residues; they are 0 photons.
    return rng.poisson(np.maximum(lam, 0.0)).astype(np.float32)


def renormalize(images: np.ndarray) -> np.ndarray:
    """Per image and channel of ``(B, C, Ly, Lx)``: map the 1 %/99 % quantiles to 0/1 (§6.1.8).

    Planes whose quantile range is <= 1e-3 are left unchanged.
    """
    x = np.array(images, dtype=np.float32)
    flat = x.reshape(x.shape[0], x.shape[1], -1)
    lo, hi = np.quantile(flat, RENORM_QUANTILES, axis=-1).astype(np.float32)
    good = (hi - lo) > MIN_PERCENTILE_RANGE
    b_idx, c_idx = np.nonzero(good)
    for b, c in zip(b_idx, c_idx):
        x[b, c] = (x[b, c] - lo[b, c]) / (hi[b, c] - lo[b, c])
    return x


def normalize_clean(image: np.ndarray, name: str | None = None) -> np.ndarray:
    """Prepare a clean ``(C, Ly, Lx)`` image: per-channel 1/99 percentiles to 0/1, then >= 0.

    A channel with a percentile range <= 1e-3 becomes 0 (as ``normalize99``); when it was not
    constant, a ``LowRangeWarning`` (naming ``name``) says so.
    """
    x = np.array(image, dtype=np.float32)
    zeroed = []
    for c in range(x.shape[0]):
        lo, hi = np.percentile(x[c], PERCENTILES)
        if hi - lo > MIN_PERCENTILE_RANGE:
            x[c] = (x[c] - lo) / (hi - lo)
        else:
            if np.ptp(x[c]) > 0:
                zeroed.append((c, float(lo), float(hi)))
            x[c] = 0.0
    warn_low_range(zeroed, name)
    return np.maximum(x, 0.0, out=x)
