"""Image resizing with the exact arithmetic of the reference's ``cv2.resize`` calls (spec §3.5.1,
§4.6, §9.3) — numpy/numba only, no OpenCV at run time.

``resize_bilinear`` (INTER_LINEAR): half-pixel centres, border clamping, no anti-aliasing. The
opencv-python wheels the reference runs with (x86-64, Intel IPP enabled) take one of three
float32 code paths, chosen by channel count, and each rounds differently; cp3rt emulates all
three so that results agree to the last bit in nearly every pixel:

* 1, 3 or 4 channels and a source of at least 2 x 2 pixels -> IPP: source coordinate
  ``(d + 0.5) * (src / dst) - 0.5`` in float64, weight rounded to float32, each of the two
  separable passes (columns first) is a fused multiply-add ``a + (b - a) * w``. (Measured
  exception: IPP's 3-/4-channel border columns sometimes round without FMA, 1 ulp apart.)
* other channel counts (Cellpose's 2-channel input!) or a 1-pixel source axis -> OpenCV's own
  code: coordinate ``float((d + 0.5) / (dst / src) - 0.5)`` in float32, ``a * w0 + b * w1``
  with float32 products; rows are clamped at the border without touching the weights;
* the same channel counts shrunk by exactly 2 in both axes -> OpenCV switches to INTER_AREA:
  the mean of each 2 x 2 block, summed left to right, times 0.25.

This is OpenCV 4's arithmetic, the reference's. OpenCV 5 takes the 2 x 2 mean for an exact 2x
shrink of 1, 3 or 4 channels too, and so differs from cp3rt there by up to 2 units in the last
place of each block's largest value (docs/deviations.md).

``resize_nearest`` (INTER_NEAREST): output ``i`` reads input ``floor(i * (1 / (dst / src)))``
in float64 (not the exact ``i * src // dst``, which differs for some sizes), any integer dtype
(the reference round-trips uint32 through float32; cp3rt copies labels exactly).
"""

from __future__ import annotations

import numba
import numpy as np

from cp3rt.errors import ConfigError, InputError

_IPP_CHANNELS = (1, 3, 4)


def resize_bilinear(img: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize a (C, Y, X) or (Y, X) image to ``shape`` = (Y', X'); float32 result."""
    ly, lx = _check_shape(shape)
    arr = np.asarray(img)
    if arr.ndim not in (2, 3) or 0 in arr.shape:
        raise InputError(f"bilinear resize expects a (C, Y, X) or (Y, X) image, got {arr.shape}.")
    src = np.ascontiguousarray(arr if arr.ndim == 3 else arr[np.newaxis], dtype=np.float32)
    nc, sy, sx = src.shape
    if (sy, sx) == (ly, lx):
        out = src.copy()
    elif nc in _IPP_CHANNELS and sy >= 2 and sx >= 2:
        out = np.empty((nc, ly, lx), dtype=np.float32)
        yi, wy = _ipp_coeffs(ly, sy)
        xi, wx = _ipp_coeffs(lx, sx)
        _ipp_linear(src, out, yi, wy, xi, wx)
    elif sy == 2 * ly and sx == 2 * lx:
        out = np.empty((nc, ly, lx), dtype=np.float32)
        _box2_mean(src, out)
    else:
        out = np.empty((nc, ly, lx), dtype=np.float32)
        yi, wy = _opencv_coeffs(ly, sy, clamp_weights=False)
        xi, wx = _opencv_coeffs(lx, sx, clamp_weights=True)
        _opencv_linear(src, out, yi, wy, xi, wx)
    return out if arr.ndim == 3 else out[0]


def resize_volume(vol: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """(Z, C, Y, X) -> (Z', C, Y', X') bilinear: planes to (Y', X') first, then Y-slices to (Z', X')
    (the reference's order for volumes, which rounds differently from the other order)."""
    lz, ly, lx = shape
    if vol.shape[2:] != (ly, lx):
        vol = np.stack([resize_bilinear(plane, (ly, lx)) for plane in vol])
    if vol.shape[0] != lz:
        out = np.empty((lz, vol.shape[1], ly, lx), np.float32)
        for y in range(ly):  # the (C, Z, X) slice at row y
            out[:, :, y, :] = resize_bilinear(vol[:, :, y, :].transpose(1, 0, 2), (lz, lx)).transpose(1, 0, 2)
        vol = out
    return vol


def resize_nearest(labels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of the last two axes of ``labels``; dtype kept exactly."""
    ly, lx = _check_shape(shape)
    arr = np.asarray(labels)
    if arr.ndim < 2 or 0 in arr.shape:
        raise InputError(f"nearest resize expects an array with (Y, X) last, got {arr.shape}.")
    yi = nearest_indices(ly, arr.shape[-2])
    xi = nearest_indices(lx, arr.shape[-1])
    return np.take(np.take(arr, yi, axis=-2), xi, axis=-1)


def nearest_indices(dst: int, src: int) -> np.ndarray:
    """Source index of each output index under INTER_NEAREST (float64, as OpenCV computes it)."""
    step = 1.0 / (dst / src)
    return np.minimum(np.floor(np.arange(dst) * step).astype(np.int64), src - 1)


def _check_shape(shape) -> tuple[int, int]:
    try:
        ly, lx = (int(v) for v in shape)
        ok = all(float(v) == int(v) for v in shape)
    except (TypeError, ValueError):
        ok = False
    if not ok or ly < 1 or lx < 1:
        raise ConfigError(f"resize shape={shape!r} is not allowed; allowed: two integers >= 1.")
    return ly, lx


def _ipp_coeffs(dst: int, src: int) -> tuple[np.ndarray, np.ndarray]:
    """Left source index and float32 weight of the right neighbour, IPP style."""
    pos = (np.arange(dst) + 0.5) * (src / dst) - 0.5
    left = np.floor(pos)
    w = (pos - left).astype(np.float32)
    left = left.astype(np.int64)
    out_lo, out_hi = left < 0, left >= src - 1
    left[out_lo], w[out_lo] = 0, 0
    left[out_hi], w[out_hi] = src - 1, 0
    return left, w


def _opencv_coeffs(dst: int, src: int, *, clamp_weights: bool) -> tuple[np.ndarray, np.ndarray]:
    """Left index and float32 weights (w0, w1) of OpenCV's generic INTER_LINEAR.

    Columns beyond the border get weights (1, 0); rows keep their weights and only have their
    indices clamped (OpenCV clamps row pointers, not coefficients).
    """
    pos = ((np.arange(dst) + 0.5) * (1.0 / (dst / src)) - 0.5).astype(np.float32)
    left = np.floor(pos)
    w1 = (pos - left).astype(np.float32)
    left = left.astype(np.int64)
    if clamp_weights:
        out_lo, out_hi = left < 0, left >= src - 1
        left[out_lo], w1[out_lo] = 0, 0
        left[out_hi], w1[out_hi] = src - 1, 0
    w0 = (np.float32(1) - w1).astype(np.float32)
    return left, np.stack([w0, w1], axis=1)


@numba.njit(cache=True, nogil=True)
def _lerp_fma(a, b, w):
    # a + (b - a) * w with one rounding, as IPP's FMA; float64 holds the product exactly.
    return np.float32(np.float64(b - a) * np.float64(w) + np.float64(a))


@numba.njit(cache=True, nogil=True)
def _ipp_linear(src, out, yi, wy, xi, wx):
    nc, sy, sx = src.shape
    ly, lx = out.shape[1], out.shape[2]
    rows = np.empty((sy, lx), dtype=np.float32)
    for c in range(nc):
        for r in range(sy):
            for d in range(lx):
                i = xi[d]
                j = min(i + 1, sx - 1)
                rows[r, d] = _lerp_fma(src[c, r, i], src[c, r, j], wx[d])
        for d in range(ly):
            i = yi[d]
            j = min(i + 1, sy - 1)
            for e in range(lx):
                out[c, d, e] = _lerp_fma(rows[i, e], rows[j, e], wy[d])


@numba.njit(cache=True, nogil=True)
def _opencv_linear(src, out, yi, wy, xi, wx):
    nc, sy, sx = src.shape
    ly, lx = out.shape[1], out.shape[2]
    rows = np.empty((sy, lx), dtype=np.float32)
    for c in range(nc):
        for r in range(sy):
            for d in range(lx):
                i = xi[d]
                j = min(i + 1, sx - 1)
                rows[r, d] = src[c, r, i] * wx[d, 0] + src[c, r, j] * wx[d, 1]
        for d in range(ly):
            i0 = min(max(yi[d], 0), sy - 1)
            i1 = min(max(yi[d] + 1, 0), sy - 1)
            for e in range(lx):
                out[c, d, e] = rows[i0, e] * wy[d, 0] + rows[i1, e] * wy[d, 1]


@numba.njit(cache=True, nogil=True)
def _box2_mean(src, out):
    nc, ly, lx = out.shape
    quarter = np.float32(0.25)
    for c in range(nc):
        for d in range(ly):
            for e in range(lx):
                s = src[c, 2 * d, 2 * e] + src[c, 2 * d, 2 * e + 1]
                s = s + src[c, 2 * d + 1, 2 * e]
                s = s + src[c, 2 * d + 1, 2 * e + 1]
                out[c, d, e] = s * quarter
