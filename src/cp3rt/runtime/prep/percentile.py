"""np.percentile's 'linear' values of a float32 array, both percentiles in one pass.

Normalisation needs the 1st and 99th percentiles of every image, bit-identical to the
reference's two ``np.percentile`` calls (each copies the image and partitions it). Here one
pass brackets both order statistics from a sorted strided sample, counts what lies below each
bracket and keeps what lies inside, so only a few thousand values are sorted. The interpolation
repeats numpy's own steps for a Python-float ``q`` (float64 index, float32 lerp). Whenever a
bracket misses, a NaN is present, the array is small, or a one-time self-check against
``np.percentile`` fails (another numpy's arithmetic), the answer comes from ``np.percentile``.
The reference version in the tests is ``np.percentile`` itself.
"""

from __future__ import annotations

import dataclasses
import math

import numba
import numpy as np

FAST_MIN_SIZE = 1 << 16   # below this np.percentile is as fast
SAMPLE_SIZE = 1 << 14     # strided sample that places the brackets
MARGIN_SIGMAS = 6.0       # bracket half-width in binomial standard deviations of the sample rank
_self_check: bool | None = None  # None: not run yet


@numba.njit(cache=True, nogil=True)
def _bracket_pass(flat, lo, hi, inside):  # pragma: no cover - compiled
    """Per bracket b: values < lo[b], values == lo[b], values == hi[b], and the values strictly
    between them written to inside[b] (their count may exceed its room: the caller checks).
    Returns (counts (nb, 4): below, at_lo, at_hi, n_inside; whether a NaN was seen)."""
    nb = lo.shape[0]
    counts = np.zeros((nb, 4), dtype=np.int64)
    room = inside.shape[1]
    for v in flat:
        if v != v:
            return counts, True
        for b in range(nb):  # the common cases first: below a bracket, or above it
            if v < lo[b]:
                counts[b, 0] += 1
            elif v <= hi[b]:
                if v == lo[b]:
                    counts[b, 1] += 1
                elif v == hi[b]:
                    counts[b, 2] += 1
                else:
                    n = counts[b, 3]
                    if n < room:
                        inside[b, n] = v
                    counts[b, 3] = n + 1
    return counts, False


def _numpy_linear(ordered, n: int, q: float) -> np.float32 | None:
    """numpy's 'linear' steps for a Python-float ``q``, given ``ordered(k)`` -> the k-th smallest
    value (or None when it is not known): float64 virtual index, float32 interpolation."""
    virtual = (n - 1) * np.true_divide(q, 100)
    if virtual >= n - 1:  # numpy takes the maximum for both neighbours
        previous = following = n - 1
    else:
        previous = math.floor(virtual)
        following = previous + 1
    a, b = ordered(previous), ordered(following)
    if a is None or b is None:
        return None
    t = float(virtual - math.floor(virtual))  # numpy's gamma; it does not matter where a == b
    diff = b - a
    value = a + diff * t
    if t >= 0.5:
        value = b - diff * (1 - t)
    return np.float32(value)


@dataclasses.dataclass(frozen=True)
class _Bracket:
    """What one pass learnt about the values around one percentile's rank."""

    lo: np.float32
    hi: np.float32
    below: int        # values < lo
    at_lo: int        # values == lo
    middle: np.ndarray  # the values strictly between lo and hi, sorted
    at_hi: int        # values == hi

    def kth(self, k: int) -> np.float32 | None:
        """The k-th smallest value of the whole array, or None outside the bracket."""
        for count, value in ((self.below, None), (self.at_lo, self.lo)):
            if k < count:
                return value
            k -= count
        if k < self.middle.size:
            return self.middle[k]
        return self.hi if k - self.middle.size < self.at_hi else None


def _fast(flat: np.ndarray, qs: tuple[float, ...]) -> tuple | None:
    """The percentiles of a 1-D float32 array, or None where the fast path cannot answer."""
    n = flat.size
    step = max(1, n // SAMPLE_SIZE)
    sample = np.sort(flat[::step])
    m = sample.size
    lo = np.empty(len(qs), np.float32)
    hi = np.empty(len(qs), np.float32)
    for i, q in enumerate(qs):
        p = q / 100.0
        centre = p * (m - 1)
        half = MARGIN_SIGMAS * math.sqrt(max(p * (1 - p), 1.0 / m) * m) + 2  # in sample ranks
        lo[i] = sample[int(centre - half)] if centre - half > 0 else -np.inf
        hi[i] = sample[int(centre + half) + 1] if centre + half < m - 1 else np.inf
    # Room for what lies strictly inside a bracket: at most 2 * half sample ranks of `step`
    # values each when the sample is representative, with a wide safety factor.
    room = int(4 * (2 * MARGIN_SIGMAS * math.sqrt(m) + 8) * step) + 1024
    inside = np.empty((len(qs), room), np.float32)
    counts, has_nan = _bracket_pass(flat, lo, hi, inside)
    if has_nan:
        return None
    out = []
    for i, q in enumerate(qs):
        below, at_lo, at_hi, n_inside = (int(v) for v in counts[i])
        if n_inside > room:
            return None
        bracket = _Bracket(lo[i], hi[i], below, at_lo, np.sort(inside[i, :n_inside]), at_hi)
        value = _numpy_linear(bracket.kth, n, q)
        if value is None:
            return None
        out.append(value)
    return tuple(out)


def _passes_self_check() -> bool:
    """Bit-identical to np.percentile here? (values with ties, both tails, both lerp branches)"""
    rng = np.random.default_rng(12345)
    probe = np.round(rng.gamma(2.0, 50.0, FAST_MIN_SIZE * 2)).astype(np.float32)
    probe[: FAST_MIN_SIZE // 4] = 0  # a run of ties at the low end
    for qs in ((1.0, 99.0), (0.3, 99.7), (2.5, 50.0)):
        got = _fast(probe, qs)
        if got is None or any(g != np.percentile(probe, q) for g, q in zip(got, qs)):
            return False
    return True


def percentiles(block: np.ndarray, qs: tuple[float, ...]) -> tuple:
    """``tuple(np.percentile(block, q) for q in qs)`` for Python-float ``qs``, bit for bit."""
    global _self_check
    flat = block.reshape(-1) if block.flags.c_contiguous else np.ascontiguousarray(block).reshape(-1)
    if flat.dtype == np.float32 and flat.size >= FAST_MIN_SIZE:
        if _self_check is None:
            _self_check = _passes_self_check()
        if _self_check:
            got = _fast(flat, tuple(float(q) for q in qs))
            if got is not None:
                return got
    return tuple(np.percentile(block, float(q)) for q in qs)
