"""Turn any image array into cp3rt's layout: float32 (C, Y, X), or (Z, C, Y, X) for a stack.

Follows the reference conversion rules (spec §3.2) step by step: squeeze singleton axes of
>3-D inputs, move a given ``z_axis`` first, guess Z from the smallest axis when ``channels`` is
given and that axis is > 5, move a given ``channel_axis`` last, otherwise take a smallest axis
< 10 as channels, then apply Cellpose's ``[cyto, nucleus]`` channel choice or the model's
``nchan`` (keep the first ``nchan`` channels, pad with zero channels).

Reference quirks deliberately NOT reproduced (each would only turn a plausible input into a
wrong one; none changes results for ordinary 2-D/3-D inputs):

* ``reshape`` transposes any 3-D array whose first axis is < 8 from channel-first to
  channel-last, which after the earlier steps only misfires for images with fewer than 8 rows
  (they get their rows taken as channels). cp3rt keeps such images as they are.
* Padding to ``nchan`` channels appends ``nchan - 1`` copies of a zero block as wide as the
  input (C channels become C * nchan). cp3rt appends zero channels up to exactly ``nchan``
  (identical for the only case that works in the reference, a 1-channel input).
* Axis bookkeeping: the reference shifts ``channel_axis`` by one whenever Z is moved first,
  even when the channel axis came after Z, compares the smallest *size* with the channel *axis
  index* when guessing Z, and lets the smallest-axis channel guess pick a known Z axis. cp3rt
  keeps track of the axes exactly and never guesses over an axis the caller named.
* A 3-D/4-D array whose smallest axis is >= 10 and not last (e.g. 12 x 512 x 512 with
  ``channels=None``) is taken by the reference as having 512 channels; cp3rt refuses it and
  asks for ``channel_axis`` or ``z_axis``.
* A ``channels`` choice always yields 2 channels in the reference, whatever the model's
  ``nchan``; cp3rt refuses ``channels`` for models with ``nchan`` other than 2.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from cp3rt import defaults as D
from cp3rt.errors import ConfigError, InputError
from cp3rt.runtime.prep.normalize import check_float32_range


@dataclasses.dataclass(frozen=True)
class ChannelSpec:
    """Cellpose's two-number channel choice.

    ``cyto``: 0 = gray (the mean of all channels), 1..3 = red/green/blue (1-based channel).
    ``nucleus``: 0 = none (a zero channel), 1..3 = the channel holding nuclei.
    """

    cyto: int = 0
    nucleus: int = 0

    def __post_init__(self) -> None:
        for field in ("cyto", "nucleus"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not (
                0 <= value <= D.MAX_RGB_CHANNEL
            ):
                raise ConfigError(
                    f"channels.{field}={value!r} is not allowed; allowed: an integer 0..3 "
                    "(0 = gray/none, 1 = red, 2 = green, 3 = blue)."
                )
            object.__setattr__(self, field, int(value))

    @classmethod
    def parse(cls, channels: ChannelSpec | Sequence[int]) -> ChannelSpec:
        """Accept a ChannelSpec, ``[cyto, nucleus]`` or the reference's ``[[cyto, nucleus]]``."""
        if isinstance(channels, ChannelSpec):
            return channels
        seq = list(channels)
        if len(seq) == 1 and isinstance(seq[0], (list, tuple)):
            seq = list(seq[0])
        if len(seq) != 2:
            raise ConfigError(
                f"channels={channels!r} is not allowed; allowed: two numbers [cyto, nucleus], "
                "each 0..3."
            )
        return cls(seq[0], seq[1])


def to_cyx(
    img: Any,
    *,
    channels: ChannelSpec | Sequence[int] | None = None,
    channel_axis: int | None = None,
    z_axis: int | None = None,
    nchan: int | None = 2,
    do_3D: bool = False,
) -> np.ndarray:
    """Convert ``img`` to float32 (C, Y, X) (2-D image) or (Z, C, Y, X) (stack of planes).

    ``nchan`` is the model's input channel count (None keeps every channel, as restoration
    does). ``do_3D`` requires a >= 3-D input and reads a bare 3-D array as Z x Y x X.
    """
    spec = ChannelSpec.parse(channels) if channels is not None else None
    if spec is not None and nchan is not None and nchan != 2:
        raise ConfigError(
            f"channels={[spec.cyto, spec.nucleus]} selects 2 channels but the model takes "
            f"nchan={nchan}; pass channels=None to feed the image's first {nchan} channels."
        )
    if nchan is not None and (isinstance(nchan, bool) or int(nchan) < 1):
        raise ConfigError(f"nchan={nchan!r} is not allowed; allowed: an integer >= 1 or None.")
    x = _as_numeric(img)
    orig_ndim = x.ndim
    ca = _axis("channel_axis", channel_axis, x.ndim)
    za = _axis("z_axis", z_axis, x.ndim)
    if ca is not None and ca == za:
        raise ConfigError(f"channel_axis={channel_axis} and z_axis={z_axis} name the same axis.")

    x, ca, za = _squeeze(x, ca, za)
    x, ca, za = _z_first(x, ca, za, guess=spec is not None)
    if za is not None and x.ndim == 3:
        x = x[..., np.newaxis]  # known Z and 3 axes: Z x Y x X with one channel
    if ca is not None and x.ndim > 2:
        x = np.moveaxis(x, ca, -1)
    elif x.ndim == 2:
        x = x[..., np.newaxis]
    if do_3D:
        if orig_ndim < 3:
            raise InputError(
                f"do_3D needs a 3-D stack, but the image has shape {tuple(np.shape(img))}."
            )
        if x.ndim < 4:
            x = x[..., np.newaxis]
    if ca is None:
        x = _channels_from_smallest_axis(x, z_known=za is not None)
    if x.ndim > 4:
        raise InputError(
            f"cannot interpret an image of shape {tuple(np.shape(img))}: after dropping "
            f"size-1 axes it has {x.ndim} axes; cp3rt takes 2-D images and Z/C stacks "
            "(at most 4 axes)."
        )

    check_float32_range(x)  # else float64 above 3.4e38 becomes Inf: "non-finite" it is not
    x = x.astype(np.float32, copy=False)
    x = _select_channels(x, spec) if spec is not None else _fit_nchan(x, nchan)
    return np.ascontiguousarray(np.moveaxis(x, -1, -3))


def check_real_dtype(x: np.ndarray, where: str | None = None) -> None:
    """InputError unless ``x`` holds real numbers (or bools): complex, object and string arrays
    are refused rather than cast (numpy would drop an imaginary part with only a warning)."""
    if x.dtype == object or np.issubdtype(x.dtype, np.complexfloating) or not (
        np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_
    ):
        prefix = f"{where}: " if where else ""
        raise InputError(f"{prefix}cannot use an image of dtype {x.dtype}; expected real numbers.")


def _as_numeric(img: Any) -> np.ndarray:
    x = np.asarray(img)
    check_real_dtype(x)
    if x.ndim < 2:
        raise InputError(f"an image needs at least 2 axes (Y, X), got shape {x.shape}.")
    if 0 in x.shape:
        raise InputError(f"the image has an empty axis: shape {x.shape}.")
    return x


def _axis(field: str, axis: int | None, ndim: int) -> int | None:
    if axis is None:
        return None
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)) or not (
        -ndim <= axis < ndim
    ):
        raise ConfigError(
            f"{field}={axis!r} is not allowed for a {ndim}-D image; allowed: {-ndim}..{ndim - 1}."
        )
    return int(axis) % ndim


def _squeeze(x: np.ndarray, ca: int | None, za: int | None):
    """Drop size-1 axes of >3-D inputs; a named axis that disappears becomes None (§3.2.2)."""
    if x.ndim <= 3 or 1 not in x.shape:
        return x, ca, za
    keep = [i for i, n in enumerate(x.shape) if n != 1]
    if len(keep) < 2:
        raise InputError(f"the image of shape {x.shape} has fewer than 2 axes longer than 1.")
    ca = keep.index(ca) if ca in keep else None
    za = keep.index(za) if za in keep else None
    return x.reshape([x.shape[i] for i in keep]), ca, za


def _z_first(x: np.ndarray, ca: int | None, za: int | None, *, guess: bool):
    """Move a known Z axis first, or guess it from a smallest axis > 5 when channels are given."""
    if x.ndim <= 2:
        return x, ca, za
    if za is None and guess:
        candidates = [i for i in range(x.ndim) if i != ca]
        sizes = [x.shape[i] for i in candidates]
        if len(candidates) > 2 and min(sizes) > D.Z_GUESS_MIN:
            za = candidates[sizes.index(min(sizes))]
    if za is None:
        return x, ca, za
    if za != 0:
        x = np.moveaxis(x, za, 0)
        if ca is not None and ca < za:
            ca += 1
    return x, ca, 0


def _channels_from_smallest_axis(x: np.ndarray, *, z_known: bool) -> np.ndarray:
    """move_min_dim (§3.2.7): a smallest axis < 10 holds channels and goes last."""
    if x.ndim <= 2:
        return x
    first = 1 if z_known else 0  # never re-read a known Z axis as channels
    sizes = x.shape[first:]
    smallest = min(sizes)
    if sizes[-1] == smallest:
        return x
    if smallest >= D.CHANNEL_GUESS_MAX:
        raise InputError(
            f"cannot tell which axis of the image of shape {x.shape} holds channels or planes "
            f"(every axis has {D.CHANNEL_GUESS_MAX} or more entries); for a Z-stack, on the "
            "command line add --do-3d or --stitch-threshold (a 3-D TIFF is then Z, Y, X) or "
            "--z-axis N, in Python pass z_axis=N (and channel_axis=N for channels)."
        )
    return np.moveaxis(x, first + sizes.index(smallest), -1)


def _select_channels(x: np.ndarray, spec: ChannelSpec) -> np.ndarray:
    """Cellpose's channels rule (§3.2.9): always 2 output channels, the second maybe zeros."""
    nc = x.shape[-1]
    if nc == 1:
        first = x
    elif spec.cyto == 0:
        first = x.mean(axis=-1, keepdims=True)  # gray = mean over all channels, float32
    else:
        wanted = [spec.cyto] + ([spec.nucleus] if spec.nucleus > 0 else [])
        for ch in wanted:
            if ch > nc:
                raise InputError(
                    f"channels=[{spec.cyto}, {spec.nucleus}] selects channel {ch}, but the "
                    f"image has only {nc} channels."
                )
        picked = x[..., [ch - 1 for ch in wanted]]
        if picked.shape[-1] == 2:
            return picked
        first = picked
    return np.concatenate([first, np.zeros_like(first)], axis=-1)


def _fit_nchan(x: np.ndarray, nchan: int | None) -> np.ndarray:
    """channels=None (§3.2.10): keep the first nchan channels, or pad with zero channels."""
    if nchan is None or x.shape[-1] == nchan:
        return x
    if x.shape[-1] > nchan:
        return x[..., :nchan]
    pad = np.zeros((*x.shape[:-1], nchan - x.shape[-1]), dtype=np.float32)
    return np.concatenate([x, pad], axis=-1)
