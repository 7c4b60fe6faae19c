"""Progress events of a training run; the library reports through a callback, never prints."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Literal

Phase = Literal["load", "step", "epoch", "checkpoint", "done"]


@dataclasses.dataclass(frozen=True)
class TrainProgress:
    """One event. ``epoch`` counts from 0; ``step`` is the step within the epoch (1-based).

    ``losses`` holds the latest step's loss terms for ``step`` events and the epoch means for
    ``epoch`` events. During ``load``, ``step``/``steps`` count the images read.
    """

    phase: Phase
    epoch: int
    epochs: int
    step: int
    steps: int
    lr: float
    losses: Mapping[str, float]
    elapsed_s: float
    message: str = ""


ProgressCallback = Callable[[TrainProgress], None]
