"""Optional smoothing / sharpening before normalisation (spec §3.3, ``smooth_sharpen_img``).

A circular (FFT) filter per plane and channel with a kernel sampled on the image grid:

* smoothing only: a normalised Gaussian of sigma ``smooth_radius``;
* sharpening only: minus a normalised Gaussian of sigma ``sharpen_radius``, with the centre
  element ``[Ly // 2, Lx // 2]`` set to 1 (identity minus surround);
* both: Gaussian(smooth) - Gaussian(sharpen).

The filter output is ``fftshift(real(ifft2(fft2(img) * conj(fft2(kernel)))))``.

Deviation (docs/deviations.md; ``reference=True`` reproduces the reference): the reference samples
its Gaussians on ``Ly`` points from ``-Ly/2`` to ``Ly/2 + 1`` for BOTH axes, so on a non-square
plane the X axis is stretched by ``(Ly + 1) / (Lx - 1)`` (a 256 x 512 plane is smoothed about twice
as wide in X as in Y) and the grid steps are ``(L + 1) / (L - 1)`` px, not 1, with the peak off the
centre element. cp3rt samples each axis at whole pixels centred on ``[Ly // 2, Lx // 2]``: the
Gaussian has the sigma asked for in both axes and an impulse stays where it was.
cp3rt computes in float64 and rounds to float32 at the end; the reference runs torch's float32
FFT, so results agree to float32 FFT noise (about 1e-6 of the image range), not bit for bit.
"""

from __future__ import annotations

import numpy as np


def gaussian_grid_kernel(sigma: float, ly: int, lx: int, *, reference: bool = False) -> np.ndarray:
    """float64 (ly, lx) Gaussian summing to 1: centred on ``[ly // 2, lx // 2]`` at whole
    pixels, or (``reference``) on the reference's grid (see the module docstring)."""
    if reference:
        y = np.linspace(-ly / 2, ly / 2 + 1, ly)
        x = np.linspace(-ly / 2, ly / 2 + 1, lx)  # sic: the X grid spans the Y range
    else:
        y = np.arange(ly, dtype=np.float64) - ly // 2
        x = np.arange(lx, dtype=np.float64) - lx // 2
    kernel = np.exp(-(y[:, np.newaxis] ** 2 + x[np.newaxis, :] ** 2) / (2 * sigma**2))
    return kernel / kernel.sum()


def filter_kernel(ly: int, lx: int, smooth_radius: float, sharpen_radius: float, *,
                  reference: bool = False) -> np.ndarray:
    """The combined smoothing/sharpening kernel for an ``ly`` x ``lx`` plane."""
    if smooth_radius > 0:
        kernel = gaussian_grid_kernel(smooth_radius, ly, lx, reference=reference)
        if sharpen_radius > 0:
            kernel = kernel - gaussian_grid_kernel(sharpen_radius, ly, lx, reference=reference)
        return kernel
    kernel = -gaussian_grid_kernel(sharpen_radius, ly, lx, reference=reference)
    kernel[ly // 2, lx // 2] = 1
    return kernel


def smooth_sharpen(stack: np.ndarray, smooth_radius: float, sharpen_radius: float, *,
                   reference: bool = False) -> np.ndarray:
    """Filter every (Y, X) plane of a (Z, C, Y, X) stack; float32 result of the same shape."""
    ly, lx = stack.shape[-2:]
    kernel = filter_kernel(ly, lx, smooth_radius, sharpen_radius, reference=reference)
    spectrum = np.conj(np.fft.fft2(kernel))
    out = np.empty(stack.shape, dtype=np.float32)
    for index in np.ndindex(*stack.shape[:-2]):
        filtered = np.fft.ifft2(np.fft.fft2(stack[index].astype(np.float64)) * spectrum).real
        out[index] = np.fft.fftshift(filtered)
    return out
