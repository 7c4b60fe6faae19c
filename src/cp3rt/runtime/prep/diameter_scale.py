"""Diameter -> rescale factor and the resized sizes derived from it (spec §3.4, §9 item 2).

The reference computes sizes as ``int(L * rescale)`` — truncation of a floating-point product,
never rounding — so the float type of ``rescale`` matters: ``150 * (30 / 45)`` is exactly 100.0
in float64 but 99.99999 in float32. The types follow the reference's values:

* built-in (zoo) models: ``diam_mean`` is a Python float (30 or 17) -> ``diam_mean / diameter``
  is float64;
* custom models: ``diam_mean`` comes from the weight file as numpy float32 -> float32;
* no diameter: ``diam_mean / diam_labels``, and ``diam_labels`` always comes from the file as
  float32 -> float32 for every model (numpy's scalar promotion keeps float32 when a Python
  float meets a float32 scalar);
* a user ``rescale`` is used as given (float64).

So ``rescale_factor`` returns either a Python ``float`` or an ``np.float32``, and
``scaled_size`` multiplies in that type.

Limits (cp3rt's, the reference has none and fails deep inside numpy/OpenCV with ``array is too
big`` or MemoryError): a diameter must be at least ``MIN_DIAMETER`` (1 px), and a resized plane
must stay within ``MAX_NET_PIXELS`` (2**31 px, 46341 x 46341). Both are checked on numbers,
before any array of that size exists.

* 1 px: an object narrower than one pixel cannot be segmented (its mask would hold less than a
  pixel); such a diameter is a mistake in units (pixels of this image, not micrometres) or a
  typo, and it would enlarge the image ``diam_mean`` times or more.
* 2**31 px: at the net's scale a 2-D run holds the resized input and the net's three float32
  outputs, at least 20 bytes per pixel before tiles, blend weights and flows, so a plane of
  2**31 px needs more than 40 GiB; images that big are segmented in blocks (``cp3rt run`` sends
  TIFFs over 4096 px a side there), never in one piece. A volume at the net's scale
  (``volume_net_size``) is held to the same count of voxels: a do_3D run holds ~60 bytes per
  voxel there (``defaults.HUGE_VOLUME_VOXELS``), so 2**31 voxels would need ~120 GiB.
"""

from __future__ import annotations

import math

import numpy as np

from cp3rt.errors import ConfigError

Rescale = float | np.float32

MIN_DIAMETER = 1.0          # px; see the module docstring
MAX_NET_PIXELS = 2**31      # px of one plane at the net's scale; see the module docstring


def _positive(field: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ConfigError(f"{field}={value!r} is not allowed; allowed: a finite number > 0.")
    if not math.isfinite(float(value)) or float(value) <= 0:
        raise ConfigError(f"{field}={value!r} is not allowed; allowed: a finite number > 0.")
    return float(value)


def check_diameter(diameter: float, *, diam_mean: float | None = None) -> float:
    """A given object diameter (> 0) as a float; ConfigError below ``MIN_DIAMETER``."""
    d = _positive("diameter", diameter)
    if d < MIN_DIAMETER:
        scale = f" (it would enlarge the image {diam_mean / d:.3g} times)" if diam_mean else ""
        raise ConfigError(
            f"diameter={d:g} is not allowed{scale}; allowed: 0 (estimate) or an object diameter "
            f"of at least {MIN_DIAMETER:g} px, in pixels of this image (--diameter / diameter=)."
        )
    return d


def rescale_factor(
    diam_mean: float,
    *,
    diameter: float | None = None,
    rescale: float | None = None,
    diam_labels: float | None = None,
    builtin: bool = True,
) -> Rescale:
    """The factor images are resized by before the net.

    ``diameter`` > 0 wins (0 or None: not given); else a given ``rescale``; else
    ``diam_mean / diam_labels`` (``diam_labels`` defaults to ``diam_mean``: a file without it).
    """
    dm = _positive("diam_mean", diam_mean)
    if diameter is not None and not math.isfinite(float(diameter)):
        raise ConfigError(f"diameter={diameter!r} is not allowed; allowed: a finite number.")
    if diameter is not None and float(diameter) > 0:
        d = check_diameter(diameter, diam_mean=dm)
        return np.float32(dm) / np.float32(d) if not builtin else dm / d
    if rescale is not None:
        return _positive("rescale", rescale)
    labels = np.float32(_positive("diam_labels", dm if diam_labels is None else diam_labels))
    return np.float32(dm) / labels  # float32 for built-in models too (see module docstring)


def scaled_size(length, rescale: Rescale):
    """``int(L * rescale)`` in rescale's float type; accepts an int or a (Y, X) tuple.

    ConfigError (before any allocation) when a side would be 0 px or the result would exceed
    ``MAX_NET_PIXELS``.
    """
    lengths = tuple(length) if isinstance(length, (tuple, list)) else (length,)
    for n in lengths:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ConfigError(f"length={n!r} is not allowed; allowed: an integer >= 1.")
    r = rescale if isinstance(rescale, np.float32) else _positive("rescale", rescale)
    with np.errstate(over="ignore"):
        products = [float(np.float32(n) * r) if isinstance(r, np.float32) else int(n) * r
                    for n in lengths]
    pixels = math.prod(products)
    if not math.isfinite(pixels) or pixels > MAX_NET_PIXELS:
        _too_big(lengths, products, pixels, r)
    sizes = tuple(int(v) for v in products)
    for n, size in zip(lengths, sizes):
        if size < 1:
            raise ConfigError(
                f"rescale={float(rescale):g} shrinks a {int(n)} px axis to 0 px; use a smaller "
                "diameter or a larger rescale."
            )
    return sizes if isinstance(length, (tuple, list)) else sizes[0]


def _too_big(lengths, products, pixels: float, rescale: Rescale) -> None:
    def fmt(v: float) -> str:
        return str(int(v)) if v < 1e15 else f"{v:.3g}"

    shape = "x".join(str(int(n)) for n in lengths)
    result = "x".join(fmt(v) for v in products)
    raise ConfigError(
        f"rescale={float(rescale):g} would resize the {shape} px image to {result} px "
        f"({pixels:.3g} px) at the net's scale, over the limit of {MAX_NET_PIXELS:.3g} px (about "
        f"40 GiB of working memory); the rescale is the model's diameter / the object diameter, "
        f"so give the objects' diameter in pixels of this image (at least diameter 1 px, "
        f"--diameter / diameter=), or segment the image in blocks."
    )


def volume_net_size(shape_zyx, rescale: Rescale, anisotropy: float | None) -> tuple[int, int, int]:
    """(Z', Y', X') a volume has at the net's scale: ``int(Z * anisotropy * rescale)`` planes of
    ``scaled_size((Y, X), rescale)``; ConfigError, before any allocation, when a side would be 0
    or the volume would exceed ``MAX_NET_PIXELS`` voxels."""
    lz, ly, lx = (int(v) for v in shape_zyx)
    aniso = 1.0 if anisotropy is None else _positive("anisotropy", anisotropy)
    if rescale == 1.0 and aniso == 1.0:
        return lz, ly, lx
    z = lz * aniso * float(rescale)
    lyr, lxr = scaled_size((ly, lx), rescale) if rescale != 1.0 else (ly, lx)
    voxels = z * lyr * lxr
    if not math.isfinite(voxels) or voxels > MAX_NET_PIXELS:
        raise ConfigError(
            f"anisotropy={aniso:g} with rescale={float(rescale):g} would resize the "
            f"{lz}x{ly}x{lx} volume to {z:.6g}x{lyr}x{lxr} voxels ({voxels:.3g}) at the net's "
            f"scale, over the limit of {MAX_NET_PIXELS:.3g} (about 120 GiB of working memory); "
            "check --anisotropy (Z step / XY pixel size) and --diameter (pixels), or segment "
            "the volume in blocks."
        )
    if int(z) < 1:
        raise ConfigError(
            f"anisotropy={aniso:g} with rescale={float(rescale):g} shrinks {lz} planes to 0; "
            "use a larger anisotropy."
        )
    return int(z), lyr, lxr
