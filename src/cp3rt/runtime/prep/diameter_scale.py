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
"""

from __future__ import annotations

import math

import numpy as np

from cp3rt.errors import ConfigError

Rescale = float | np.float32


def _positive(field: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ConfigError(f"{field}={value!r} is not allowed; allowed: a finite number > 0.")
    if not math.isfinite(float(value)) or float(value) <= 0:
        raise ConfigError(f"{field}={value!r} is not allowed; allowed: a finite number > 0.")
    return float(value)


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
        d = _positive("diameter", diameter)
        return np.float32(dm) / np.float32(d) if not builtin else dm / d
    if rescale is not None:
        return _positive("rescale", rescale)
    labels = np.float32(_positive("diam_labels", dm if diam_labels is None else diam_labels))
    return np.float32(dm) / labels  # float32 for built-in models too (see module docstring)


def scaled_size(length, rescale: Rescale):
    """``int(L * rescale)`` in rescale's float type; accepts an int or a (Y, X) tuple."""
    if isinstance(length, (tuple, list)):
        return tuple(scaled_size(v, rescale) for v in length)
    if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length < 1:
        raise ConfigError(f"length={length!r} is not allowed; allowed: an integer >= 1.")
    r = rescale if isinstance(rescale, np.float32) else _positive("rescale", rescale)
    size = int(np.float32(length) * r) if isinstance(r, np.float32) else int(int(length) * r)
    if size < 1:
        raise ConfigError(
            f"rescale={float(rescale):g} shrinks a {int(length)} px axis to 0 px; use a smaller "
            "diameter or a larger rescale."
        )
    return size
