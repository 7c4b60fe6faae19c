"""Learning-rate schedules of Cellpose training: linear warm-up, constant, then halvings.

One value per epoch, computed up front so a checkpoint only has to remember the epoch index.
Segmentation follows spec §7.4, restoration §7.2 (paper: "increased linearly from 0 over the
first 10 epochs, then decreased by factors of 2 every 10 epochs over the last 100 epochs").
"""

from __future__ import annotations

import numpy as np

from cp3rt.errors import ConfigError

WARMUP_EPOCHS = 10
N_HALVINGS = 10


def _check(learning_rate: float, n_epochs: int) -> None:
    if not (isinstance(n_epochs, int) and n_epochs >= 1):
        raise ConfigError(f"epochs={n_epochs!r} is not allowed: need an integer >= 1.")
    if not (np.isfinite(learning_rate) and learning_rate > 0):
        raise ConfigError(f"learning_rate={learning_rate!r} is not allowed: need a number > 0.")


def _warmup_constant_halving(
    learning_rate: float, n_epochs: int, start: int, every: int, n_halvings: int
) -> np.ndarray:
    """Warm-up 0 -> lr over the first 10 epochs, constant, then halvings.

    Epoch 0 runs at lr 0, as in the reference (it only updates BatchNorm statistics). From
    epoch ``start`` on, block k (``every`` epochs long) runs at lr / 2**(k + 1).
    """
    lr = np.full(n_epochs, learning_rate, dtype=np.float64)
    nwarm = min(WARMUP_EPOCHS, n_epochs)
    lr[:nwarm] = np.linspace(0.0, learning_rate, WARMUP_EPOCHS)[:nwarm]
    for k in range(n_halvings if every > 0 else 0):
        lo = start + k * every
        lr[max(lo, nwarm):max(lo + every, nwarm)] = learning_rate / 2.0 ** (k + 1)
    return lr


def segment_lr_schedule(learning_rate: float, n_epochs: int) -> np.ndarray:
    """§7.4: 10 halvings of 10 epochs at the end when n_epochs > 300, of 5 when > 100."""
    _check(learning_rate, n_epochs)
    if n_epochs > 300:
        return _warmup_constant_halving(learning_rate, n_epochs, n_epochs - 100, 10, N_HALVINGS)
    if n_epochs > 100:
        return _warmup_constant_halving(learning_rate, n_epochs, n_epochs - 50, 5, N_HALVINGS)
    return _warmup_constant_halving(learning_rate, n_epochs, n_epochs, 0, 0)


def restore_lr_schedule(learning_rate: float, n_epochs: int) -> np.ndarray:
    """§7.2: constant until epoch n-91, then halved every 10 epochs (the last 10 at lr/2^9).

    The reference needs n_epochs >= 100. For shorter runs cp3rt keeps the shape with a shorter
    period, ``n_epochs // 20`` epochs per halving (no halving below 20 epochs) — a documented
    deviation that only affects short runs.
    """
    _check(learning_rate, n_epochs)
    every = 10 if n_epochs >= 100 else n_epochs // 20
    visible = N_HALVINGS - 1  # the reference's 10th halving falls after the last epoch
    return _warmup_constant_halving(
        learning_rate, n_epochs, n_epochs - visible * every, every, visible
    )
