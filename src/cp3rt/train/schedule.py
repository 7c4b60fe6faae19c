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
    learning_rate: float, n_epochs: int, halving_every: int
) -> np.ndarray:
    # Warm-up 0 -> lr over the first 10 epochs (epoch 0 runs at lr 0, as in the reference: it
    # only updates BatchNorm statistics), then constant.
    lr = np.full(n_epochs, learning_rate, dtype=np.float64)
    nwarm = min(WARMUP_EPOCHS, n_epochs)
    lr[:nwarm] = np.linspace(0.0, learning_rate, WARMUP_EPOCHS)[:nwarm]
    if halving_every > 0:
        tail = N_HALVINGS * halving_every
        start = n_epochs - tail
        for k in range(N_HALVINGS):
            lo = start + k * halving_every
            lr[max(lo, nwarm):lo + halving_every] = learning_rate / 2.0 ** (k + 1)
    return lr


def segment_lr_schedule(learning_rate: float, n_epochs: int) -> np.ndarray:
    """§7.4: 10 halvings of 10 epochs when n_epochs > 300, of 5 epochs when > 99, else none."""
    _check(learning_rate, n_epochs)
    if n_epochs > 300:
        every = 10
    elif n_epochs > 99:
        every = 5
    else:
        every = 0
    return _warmup_constant_halving(learning_rate, n_epochs, every)


def restore_lr_schedule(learning_rate: float, n_epochs: int) -> np.ndarray:
    """§7.2: halved every 10 epochs over the last 100 epochs.

    The reference assumes long runs (>= 110 epochs). For shorter runs cp3rt shrinks the halving
    period so the ten halvings fit into the second half of the run (at least 1 epoch each), and
    uses no halving below 20 epochs — a documented deviation that only affects short runs.
    """
    _check(learning_rate, n_epochs)
    if n_epochs >= 200:
        every = 10
    elif n_epochs >= 20:
        every = max(1, n_epochs // (2 * N_HALVINGS))
    else:
        every = 0
    return _warmup_constant_halving(learning_rate, n_epochs, every)
