"""Percentile normalisation of (C, Y, X) images and (Z, C, Y, X) stacks (spec §3.3).

Each channel is mapped so that its 1st percentile becomes 0 and its 99th becomes 1, using
numpy's linear percentiles on float32 data (a float32 result, as in the reference). Details
that change numbers and are reproduced on purpose:

* percentiles are taken on a strided subsample when a channel holds more than 224**3 values;
* a constant channel (zero range) is left untouched, so a zero padding channel stays 0;
* a channel whose percentile range is <= 1e-3 becomes all zeros (an image x 1e-6 gives no
  objects) - never silently: a ``LowRangeWarning`` names the channels and their range;
* ``invert`` flips only the channels that were normalised;
* every call starts from its own ``NormalizeConfig`` — the reference mutates a process-wide
  defaults dict (§3.3 [bug]); cp3rt behaves like a fresh reference process.

Optional steps, in the reference's order: smoothing/sharpening of the raw image
(``prep.filters``), then tiled percentiles (``prep.normalize_local``) instead of whole-image
ones. Deviation: with tiled normalisation ``invert`` flips every channel; the reference marks
no channel as normalised there and silently ignores ``invert``.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Sequence

import numpy as np

from cp3rt import defaults as D
from cp3rt.errors import ConfigError, InputError, LowRangeWarning
from cp3rt.runtime.prep.filters import smooth_sharpen
from cp3rt.runtime.prep.normalize_local import tile_normalize
from cp3rt.runtime.prep.percentile import percentiles


def _number(field: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ConfigError(f"{field}={value!r} is not allowed; allowed: a finite number.")
    if not math.isfinite(float(value)):
        raise ConfigError(f"{field}={value!r} is not allowed; allowed: a finite number.")
    return float(value)


@dataclasses.dataclass(frozen=True)
class NormalizeConfig:
    """How raw intensities are brought to the nets' scale (defaults = the reference's)."""

    normalize: bool = True
    percentiles: tuple[float, float] = D.PERCENTILES
    # Fixed (low, high) for every channel, or one (low, high) per channel; skips percentiles.
    lowhigh: tuple[float, float] | tuple[tuple[float, float], ...] | None = None
    invert: bool = False
    norm3D: bool = True          # stacks: one percentile pair per channel over all planes
    sharpen_radius: float = 0.0  # pixels; 0 = off
    smooth_radius: float = 0.0   # pixels; 0 = off
    tile_norm_blocksize: int = 0  # 0 = whole-image percentiles
    tile_norm_smooth3D: float = 1.0
    # The reference's smoothing/sharpening kernel and tiled-normalisation smoothing, defects
    # included (docs/deviations.md rows 12-13); RunConfig(reference_bugs=True) sets it.
    reference_bugs: bool = False

    def __post_init__(self) -> None:
        for field in ("normalize", "invert", "norm3D", "reference_bugs"):
            if not isinstance(getattr(self, field), (bool, np.bool_)):
                raise ConfigError(
                    f"{field}={getattr(self, field)!r} is not allowed; allowed: True or False."
                )
        self._check_percentiles()
        self._check_lowhigh()
        for field in ("sharpen_radius", "smooth_radius", "tile_norm_smooth3D"):
            if _number(field, getattr(self, field)) < 0:
                raise ConfigError(f"{field}={getattr(self, field)!r} is not allowed; allowed: >= 0.")
        bs = self.tile_norm_blocksize
        if isinstance(bs, bool) or not isinstance(bs, (int, np.integer)) or bs < 0:
            raise ConfigError(
                f"tile_norm_blocksize={bs!r} is not allowed; allowed: 0 (off) or a block size "
                "in pixels >= 1."
            )
        if self.invert and not self.normalizes:
            raise ConfigError(
                "invert=True is not allowed without normalisation; set normalize=True, "
                "lowhigh or tile_norm_blocksize."
            )

    @property
    def normalizes(self) -> bool:
        """True when some normalisation (percentile, tiled or fixed lowhigh) takes place."""
        return bool(self.normalize or self.lowhigh is not None or self.tile_norm_blocksize > 0)

    def _check_percentiles(self) -> None:
        p = self.percentiles
        allowed = "two numbers 0 <= low < high <= 100"
        if not isinstance(p, Sequence) or len(p) != 2:
            raise ConfigError(f"percentiles={p!r} is not allowed; allowed: {allowed}.")
        lo, hi = (_number("percentiles", v) for v in p)
        if not 0 <= lo < hi <= 100:
            raise ConfigError(f"percentiles={p!r} is not allowed; allowed: {allowed}.")
        object.__setattr__(self, "percentiles", (lo, hi))

    def _check_lowhigh(self) -> None:
        if self.lowhigh is None:
            return
        allowed = "None, (low, high) or one (low, high) pair per channel, with high != low"
        arr = np.asarray(self.lowhigh, dtype=object)
        if arr.shape not in ((2,),) and not (arr.ndim == 2 and arr.shape[1] == 2):
            raise ConfigError(f"lowhigh={self.lowhigh!r} is not allowed; allowed: {allowed}.")
        pairs = [arr] if arr.ndim == 1 else list(arr)
        clean = tuple((_number("lowhigh", a), _number("lowhigh", b)) for a, b in pairs)
        if any(b == a for a, b in clean):
            raise ConfigError(f"lowhigh={self.lowhigh!r} is not allowed; allowed: {allowed}.")
        object.__setattr__(self, "lowhigh", clean[0] if arr.ndim == 1 else clean)


FLOAT32_MAX = float(np.finfo(np.float32).max)


def check_float32_range(img: np.ndarray, name: str | None = None) -> None:
    """Refuse finite values that float32 cannot hold (float64 data above 3.4e38): converted,
    they would become Inf and be reported as non-finite pixels the file does not have."""
    if img.dtype.kind != "f" or img.dtype.itemsize <= 4:
        return
    with np.errstate(invalid="ignore"):
        over = np.abs(img) > FLOAT32_MAX
    big = int(np.count_nonzero(over) - np.count_nonzero(np.isinf(img)))
    if big:
        where = f"{name}" if name else "the image"
        raise InputError(
            f"{where} has {big} value(s) beyond float32 range (max {FLOAT32_MAX:.2g}); cp3rt "
            "computes in float32: scale the image down (e.g. divide by its maximum) first."
        )


def check_finite(img: np.ndarray, name: str | None = None) -> None:
    """Refuse NaN/Inf pixels: they would poison the percentiles and every tile they touch."""
    bad = int(img.size - np.count_nonzero(np.isfinite(img)))
    if bad:
        where = f"{name}" if name else "the image"
        raise InputError(
            f"{where} has {bad} non-finite pixel value(s) (NaN or Inf); replace them before "
            "running cp3rt."
        )


def normalize_image(
    img: np.ndarray, cfg: NormalizeConfig | None = None, *, name: str | None = None
) -> np.ndarray:
    """Return a normalised float32 copy of ``img`` ((C, Y, X) or (Z, C, Y, X)).

    ``name`` (e.g. the file name) is used in the error raised for non-finite pixels.
    """
    cfg = NormalizeConfig() if cfg is None else cfg
    check_float32_range(np.asarray(img), name)
    x = np.array(img, dtype=np.float32, copy=True)
    if x.ndim not in (3, 4):
        raise InputError(
            f"normalisation expects (C, Y, X) or (Z, C, Y, X), got shape {x.shape}."
        )
    check_finite(x, name)
    stack = x if x.ndim == 4 else x[np.newaxis]  # a view: edits land in x
    nchan = stack.shape[1]
    if cfg.lowhigh is not None:
        _apply_lowhigh(stack, cfg.lowhigh)
        good = np.ones(nchan, dtype=bool)
    else:
        if cfg.sharpen_radius > 0 or cfg.smooth_radius > 0:
            stack[...] = smooth_sharpen(stack, cfg.smooth_radius, cfg.sharpen_radius, reference=cfg.reference_bugs)
        if cfg.tile_norm_blocksize > 0:
            stack[...] = tile_normalize(stack, cfg)
            good = np.ones(nchan, dtype=bool)  # deviation: the reference never inverts here
        elif cfg.normalize:
            good, zeroed = _percentile_normalize(stack, cfg.percentiles,
                                                 whole=x.ndim == 3 or cfg.norm3D)
            warn_low_range(zeroed, name)
        else:
            good = np.zeros(nchan, dtype=bool)
    if cfg.invert:
        for c in np.flatnonzero(good):
            stack[:, c] = 1 - stack[:, c]
    return x


def _apply_lowhigh(stack: np.ndarray, lowhigh) -> None:
    """(x - low) / (high - low); float64 scalars meet float32 data, as numpy does in place."""
    pairs = [lowhigh] * stack.shape[1] if np.ndim(lowhigh) == 1 else list(lowhigh)
    if len(pairs) != stack.shape[1]:
        raise ConfigError(
            f"lowhigh has {len(pairs)} (low, high) pairs but the image has {stack.shape[1]} "
            "channels."
        )
    for c, (lo, hi) in enumerate(pairs):
        lo64, span = np.float64(lo), np.float64(hi) - np.float64(lo)
        shifted = (stack[:, c].astype(np.float64) - lo64).astype(np.float32)
        stack[:, c] = (shifted.astype(np.float64) / span).astype(np.float32)


def _percentile_normalize(stack: np.ndarray, percentiles, *, whole: bool
                          ) -> tuple[np.ndarray, list[tuple[int, float, float]]]:
    """Normalise in place per channel (whole stack) or per plane and channel; which were done,
    and (channel, low, high) of each non-constant block that was set to 0 (range <= 1e-3)."""
    good = np.zeros(stack.shape[1], dtype=bool)
    zeroed: list[tuple[int, float, float]] = []
    for c in range(stack.shape[1]):
        planes = [stack[:, c]] if whole else [stack[z, c][np.newaxis] for z in range(len(stack))]
        for block in planes:
            if np.ptp(block) > 0:  # a constant channel stays as it is
                lo, hi, kept = normalize99_inplace(block, *percentiles)
                good[c] = True
                if not kept:
                    zeroed.append((c, lo, hi))
    return good, zeroed


def warn_low_range(zeroed: Sequence[tuple[int, float, float]], name: str | None = None,
                   stacklevel: int = 3) -> None:
    """One ``LowRangeWarning`` for the channels (channel, low, high) that were set to 0."""
    if not zeroed:
        return
    channels = sorted({c for c, _, _ in zeroed})
    span = max(hi - lo for _, lo, hi in zeroed)
    lo = min(lo for _, lo, _ in zeroed)
    hi = max(hi for _, _, hi in zeroed)
    which = f"channel {channels[0]}" if len(channels) == 1 else \
        f"channels {', '.join(map(str, channels))}"
    planes = f" in {len(zeroed)} planes" if len(zeroed) > len(channels) else ""
    # several channels: the widest range of them, so "under the cut" holds for every one
    where = f"{name}: " if name else ""
    warnings.warn(LowRangeWarning(
        f"{where}{which} {'has' if len(channels) == 1 else 'have'} a 1-99 % range of {span:.3g} ({lo:.6g} to {hi:.6g}){planes}, not "
        f"above the reference's cut of {D.MIN_PERCENTILE_RANGE:.0e}, so it was set to 0 and no "
        "object can be found in it; scale the image's values up (e.g. to 0..1000), or give "
        "fixed bounds (lowhigh=(low, high) in Python)."
    ), stacklevel=stacklevel)


def channel_percentiles(block: np.ndarray, lower: float, upper: float):
    """numpy linear percentiles of a (Z, Y, X) float32 block, subsampled when it is huge."""
    sample = block
    if block.size > D.PERCENTILE_SUBSAMPLE_SIZE:
        nz, ny, nx = block.shape
        sample = block[
            :: max(1, nz // D.PERCENTILE_SUBSAMPLE_Z),
            :: max(1, ny // D.PERCENTILE_SUBSAMPLE_YX),
            :: max(1, nx // D.PERCENTILE_SUBSAMPLE_YX),
        ]
    # The reference's two np.percentile calls, bit for bit, in one pass (np.percentile(sample,
    # [lower, upper]) would not do: an array q interpolates in float64, a scalar q in float32).
    return percentiles(sample, (lower, upper))


def normalize99_inplace(block: np.ndarray, lower: float, upper: float) -> tuple[float, float, bool]:
    """Map percentile ``lower`` to 0 and ``upper`` to 1 in float32; a tiny range gives zeros.

    Returns the two percentiles and whether the block was normalised (False: set to 0).
    """
    x01, x99 = channel_percentiles(block, lower, upper)
    if x99 - x01 > D.MIN_PERCENTILE_RANGE:
        block -= x01
        block /= x99 - x01
        return float(x01), float(x99), True
    block[...] = 0
    return float(x01), float(x99), False
