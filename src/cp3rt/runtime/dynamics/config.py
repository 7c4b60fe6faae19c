"""``DynamicsConfig``: every setting of flows -> masks, validated once (§3.7, §4.2-4.7)."""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass

from cp3rt import defaults
from cp3rt.errors import ConfigError


def _number(field: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) and not hasattr(value, "__float__"):
        raise ConfigError(f"{field} must be a number; got {value!r}.")
    out = float(value)  # type: ignore[arg-type]
    if not math.isfinite(out):
        raise ConfigError(f"{field} must be a finite number; got {value!r}.")
    return out


def _shape(value: object) -> tuple[int, int]:
    message = f"output_shape must be None or two positive integers (Y, X); got {value!r}."
    try:
        items = list(value)  # type: ignore[call-overload]
        shape = tuple(operator.index(s) for s in items)
    except TypeError:
        raise ConfigError(message) from None
    if len(shape) != 2 or any(isinstance(s, bool) for s in items) or min(shape) <= 0:
        raise ConfigError(message)
    return shape[0], shape[1]


@dataclass(frozen=True)
class DynamicsConfig:
    """Settings of ``compute_masks_with``; defaults are the reference's.

    niter: Euler steps, >= 0 (non-integers are truncated like the reference: 266.7 -> 266;
        use ``niter_for`` to get the reference's diameter-dependent value).
    cellprob_threshold: foreground is ``cellprob > cellprob_threshold`` (any finite number).
    flow_threshold: flow-error QC limit; 0 or None switches the QC off; otherwise > 0.
    min_size: masks with fewer pixels (at output resolution) are removed; <= 0 disables.
    max_size_fraction: masks covering more than this fraction of the image are removed, (0, 1].
    interp: bilinear (True) or nearest-pixel (False) flow sampling during integration.
    output_shape: (Y, X) to resize masks to with nearest neighbour, or None (flow size).
    reference_bugs: reproduce the reference's small-mask index bug (§4.7) for parity tests.
    """

    niter: float = defaults.NITER_AT_RESCALE_1
    cellprob_threshold: float = defaults.CELLPROB_THRESHOLD
    flow_threshold: float | None = defaults.FLOW_THRESHOLD
    min_size: int = defaults.MIN_SIZE
    max_size_fraction: float = defaults.MAX_SIZE_FRACTION
    interp: bool = defaults.INTERP
    output_shape: tuple[int, int] | None = None
    reference_bugs: bool = False

    def __post_init__(self) -> None:
        niter = _number("niter", self.niter)
        if not 0 <= niter < 2**31:  # int32 step counters in the kernels
            raise ConfigError(f"niter must be in [0, 2**31); got {self.niter!r}.")
        _number("cellprob_threshold", self.cellprob_threshold)
        if self.flow_threshold is not None and _number("flow_threshold", self.flow_threshold) < 0:
            raise ConfigError(
                f"flow_threshold must be >= 0 (0 or None disables the QC); got {self.flow_threshold!r}."
            )
        if isinstance(self.min_size, bool) or _number("min_size", self.min_size) != int(self.min_size):
            raise ConfigError(f"min_size must be an integer (<= 0 disables it); got {self.min_size!r}.")
        frac = _number("max_size_fraction", self.max_size_fraction)
        if not 0 < frac <= 1:
            raise ConfigError(f"max_size_fraction must be in (0, 1]; got {self.max_size_fraction!r}.")
        if not isinstance(self.interp, bool):
            raise ConfigError(f"interp must be True or False; got {self.interp!r}.")
        if not isinstance(self.reference_bugs, bool):
            raise ConfigError(f"reference_bugs must be True or False; got {self.reference_bugs!r}.")
        if self.output_shape is not None:
            object.__setattr__(self, "output_shape", _shape(self.output_shape))

    @property
    def steps(self) -> int:
        """The step count actually run (uint32 truncation of ``niter``)."""
        return int(self.niter)

    @property
    def qc_enabled(self) -> bool:
        return self.flow_threshold is not None and self.flow_threshold > 0
