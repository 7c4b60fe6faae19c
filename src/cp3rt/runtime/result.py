"""Result: everything one Pipeline.run produces for one image."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import time
from collections.abc import Iterator, Mapping

import numpy as np

# Stages in the order they run; timings always carry all keys (0.0 for a stage that did not run).
STAGES: tuple[str, ...] = ("read", "normalize", "restore", "segment", "dynamics")


class StageTimer:
    """Seconds per stage of one image: ``with timer.stage("segment"): ...`` adds the block's
    wall time to that stage; ``seconds()`` is what goes into ``Result.timings``."""

    def __init__(self) -> None:
        self._seconds = dict.fromkeys(STAGES, 0.0)

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t = time.perf_counter()
        try:
            yield
        finally:
            self._seconds[name] += time.perf_counter() - t

    def seconds(self) -> dict[str, float]:
        """A copy: every stage of STAGES, in order (0.0 for a stage that did not run)."""
        return dict(self._seconds)


@dataclasses.dataclass(frozen=True, eq=False)
class Result:
    """Output of :meth:`cp3rt.Pipeline.run` for one 2-D image.

    masks      (Y, X) uint16/uint32, 0 = background, labels 1..n_objects.
    dP         (2, Y, X) float32 flows (Y then X, network units, ~5 inside cells).
    cellprob   (Y, X) float32 cell-probability logits.
    style      (256,) float32 style vector of the segmentation net.
    restored   (C, Y, X) float32 restored image in normalised units, or None without restoration.
    diameter   object diameter (pixels of the segmented image) the segmentation used.
    rescale    factor the segmentation net input was resized by.
    niter      dynamics iterations used.
    timings    seconds per stage (keys: STAGES).

    With ``resample=False`` the flows and cellprob stay at the net's resolution (as the
    reference); masks are always at the segmented image's resolution. After an upsampling
    restoration model the segmented image is the upsampled one (§3.12).
    """

    masks: np.ndarray
    dP: np.ndarray
    cellprob: np.ndarray
    style: np.ndarray
    restored: np.ndarray | None
    diameter: float
    rescale: float
    niter: int
    timings: Mapping[str, float]

    @functools.cached_property
    def n_objects(self) -> int:
        # Counted, not max(): with reference_bugs=True labels may have gaps.
        return int(np.count_nonzero(np.bincount(self.masks.ravel())[1:]))
