"""Percentile normalisation on a torch device, bit-identical to ``prep.normalize`` (§3.3).

Per channel: the two order statistics come from ``torch.kthvalue`` on the device (only two
float32 scalars cross to the host), the interpolation repeats numpy's float32 steps for a
Python-float q on the host, and ``(x - low) / (high - low)`` runs in float32 on the device, the
same IEEE operations as numpy's in-place subtract and divide. Huge channels are subsampled with
the host path's strides.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from cp3rt import defaults as D
from cp3rt.runtime.prep.normalize import warn_low_range


def _kth(flat: Any, k: int) -> np.float32:
    """The k-th smallest (0-based) value of a 1-D float32 tensor."""
    return np.float32(flat.kthvalue(k + 1).values.item())


def _numpy_linear(flat: Any, q: float) -> np.float32:
    """np.percentile(flat, q) with 'linear' interpolation, q a Python float (float32 lerp)."""
    n = flat.numel()
    virtual = (n - 1) * np.true_divide(q, 100)
    if virtual >= n - 1:
        previous = following = n - 1
    else:
        previous = math.floor(virtual)
        following = previous + 1
    a, b = _kth(flat, previous), _kth(flat, following)
    t = float(virtual - math.floor(virtual))
    diff = b - a
    value = a + diff * t
    if t >= 0.5:
        value = b - diff * (1 - t)
    return np.float32(value)


def _sample(channel: Any) -> Any:
    """The host path's strided subsample of a huge (Y, X) channel (one plane: Z stride 1)."""
    if channel.numel() <= D.PERCENTILE_SUBSAMPLE_SIZE:
        return channel
    ny, nx = channel.shape
    return channel[:: max(1, ny // D.PERCENTILE_SUBSAMPLE_YX), :: max(1, nx // D.PERCENTILE_SUBSAMPLE_YX)]


def normalize_on_device(image: Any, lower: float = D.PERCENTILES[0], upper: float = D.PERCENTILES[1]) -> Any:
    """A normalised float32 copy of a (C, Y, X) tensor: percentile ``lower`` -> 0, ``upper`` -> 1.

    A constant channel stays as it is; a channel whose percentile range is at most
    ``MIN_PERCENTILE_RANGE`` becomes zeros, with a ``LowRangeWarning`` naming it (as on the host).
    """
    x = image.float().clone()
    zeroed = []
    for c in range(x.shape[0]):
        channel = x[c]
        if not bool((channel.max() > channel.min()).item()):
            continue
        flat = _sample(channel).reshape(-1)
        low, high = _numpy_linear(flat, float(lower)), _numpy_linear(flat, float(upper))
        span = np.float32(high - low)
        if span > D.MIN_PERCENTILE_RANGE:
            channel.sub_(float(low)).div_(float(span))
        else:
            zeroed.append((c, float(low), float(high)))
            channel.zero_()
    warn_low_range(zeroed)
    return x
