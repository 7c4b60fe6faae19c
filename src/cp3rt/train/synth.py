"""Procedural nucleus-like images with exact instance masks (extra training volume, test data).

Each image: a dim uneven background, a few dozen ellipses of random size/orientation/brightness
(touching allowed, overlap limited), smooth interior texture, an optical blur, optionally a wide
out-of-focus glow, and camera-like noise. Masks are the ellipses as drawn (the later one wins
where two touch), so they are exact: with any blur the drawn edge stays where the intensity is
half-way between inside and outside, which is where annotators put it.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage

from cp3rt.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class SynthNuclei:
    """Settings of the generator (sizes in pixels)."""

    shape: tuple[int, int] = (256, 256)
    diameter: tuple[float, float] = (12.0, 24.0)   # range of mean ellipse diameters
    density: float = 0.35                            # target fraction of area covered
    elongation: tuple[float, float] = (1.0, 1.6)    # major/minor axis ratio
    max_overlap: float = 0.15                        # reject ellipses overlapping more than this
    psf_sigma: tuple[float, float] = (0.6, 1.6)
    photons: tuple[float, float] = (20.0, 400.0)    # peak photon counts (lower = noisier)
    background: tuple[float, float] = (0.05, 0.25)  # relative to the brightest nucleus
    # Out-of-focus glow: the signal blurred by ``halo_sigma`` x the PSF, added at ``halo`` times
    # its strength. Widefield images (e.g. DSB2018) have it; a net that never saw it draws its
    # masks out to the end of the glow. (0, 0): none, and no random numbers drawn for it.
    halo: tuple[float, float] = (0.0, 0.0)
    halo_sigma: tuple[float, float] = (2.0, 4.0)

    def __post_init__(self) -> None:
        if len(self.shape) != 2 or min(self.shape) < 16:
            raise ConfigError(f"shape={self.shape!r} is not allowed: need (Y, X) with both >= 16.")
        for name in ("diameter", "elongation", "psf_sigma", "photons", "background", "halo", "halo_sigma"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi:
                raise ConfigError(f"{name}={(lo, hi)!r} is not allowed: need 0 <= low <= high.")
        if not 0 < self.density < 1:
            raise ConfigError(f"density={self.density!r} is not allowed: need 0 < value < 1.")


def _ellipse(shape: tuple[int, int], cy: float, cx: float, a: float, b: float, phi: float):
    """Boolean footprint slice and mask of an ellipse with semi-axes a (along phi) and b."""
    r = int(np.ceil(max(a, b))) + 1
    y0, y1 = max(0, int(cy) - r), min(shape[0], int(cy) + r + 1)
    x0, x1 = max(0, int(cx) - r), min(shape[1], int(cx) + r + 1)
    yy, xx = np.mgrid[y0:y1, x0:x1]
    dy, dx = yy - cy, xx - cx
    c, s = np.cos(phi), np.sin(phi)
    u = (dx * c + dy * s) / a
    v = (-dx * s + dy * c) / b
    return (slice(y0, y1), slice(x0, x1)), (u * u + v * v) <= 1.0, u * u + v * v


def synth_nuclei(
    rng: np.random.Generator, settings: SynthNuclei = SynthNuclei()
) -> tuple[np.ndarray, np.ndarray]:
    """One (image float32 in photon counts, masks uint16 1..N) pair."""
    shape = settings.shape
    masks = np.zeros(shape, np.uint16)
    signal = np.zeros(shape, np.float64)
    area_goal = settings.density * shape[0] * shape[1]
    covered, label, tries = 0.0, 0, 0
    while covered < area_goal and tries < 2000 and label < 65000:
        tries += 1
        d = rng.uniform(*settings.diameter)
        e = rng.uniform(*settings.elongation)
        a, b = d / 2 * np.sqrt(e), d / 2 / np.sqrt(e)
        cy, cx = rng.uniform(-a / 2, shape[0] + a / 2), rng.uniform(-a / 2, shape[1] + a / 2)
        sl, inside, rho = _ellipse(shape, cy, cx, a, b, rng.uniform(0, np.pi))
        n_in = int(inside.sum())
        if n_in < 4:
            continue
        if np.count_nonzero(masks[sl][inside]) > settings.max_overlap * n_in:
            continue
        label += 1
        masks[sl][inside] = label
        brightness = rng.uniform(0.3, 1.0)
        # Brighter rim-to-centre falloff plus a smooth random texture.
        profile = brightness * (1.0 - 0.35 * rho[inside])
        signal[sl][inside] = profile
        covered += n_in
    texture = ndimage.gaussian_filter(rng.standard_normal(shape), 2.0)
    texture /= texture.std() + 1e-12
    signal *= 1.0 + 0.15 * texture
    bg_level = rng.uniform(*settings.background)
    bg = bg_level * (1.0 + 0.5 * ndimage.gaussian_filter(rng.standard_normal(shape), 30.0) * 10)
    psf = rng.uniform(*settings.psf_sigma)
    image = ndimage.gaussian_filter(signal, psf)
    if settings.halo[1] > 0:
        glow = ndimage.gaussian_filter(signal, psf * rng.uniform(*settings.halo_sigma))
        image += rng.uniform(*settings.halo) * glow
    image += np.clip(bg, 0, None)
    photons = rng.uniform(*settings.photons)
    noisy = rng.poisson(np.clip(image, 0, None) * photons).astype(np.float32)
    # Relabel so that labels are consecutive after overdraws removed some objects entirely.
    present = np.unique(masks[masks > 0])
    lut = np.zeros(label + 1, np.uint16)
    lut[present] = np.arange(1, present.size + 1, dtype=np.uint16)
    return noisy, lut[masks]
