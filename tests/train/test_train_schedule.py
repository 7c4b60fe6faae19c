"""Learning-rate schedules (spec §7.2, §7.4), against a direct reading of the spec text."""

from __future__ import annotations

import numpy as np
import pytest

from cp3rt.errors import ConfigError
from cp3rt.train.schedule import restore_lr_schedule, segment_lr_schedule


def _spec_segment(lr: float, n: int) -> list[float]:
    # "LR warm-up over 10 epochs, constant, then 10 halvings (10 epochs each if n > 300,
    # 5 if > 100)", warm-up 0 -> lr linearly over epochs 0..9.
    out = []
    per = 10 if n > 300 else 5 if n > 100 else 0
    for e in range(n):
        if e < 10:
            out.append(lr * e / 9)
        elif per and e >= n - 10 * per:
            out.append(lr / 2 ** ((e - (n - 10 * per)) // per + 1))
        else:
            out.append(lr)
    return out


def _spec_restore(lr: float, n: int) -> list[float]:
    # "constant until epoch n-91, then halved every 10 epochs (last 90 epochs reach lr/2^9)"
    out = []
    for e in range(n):
        if e < 10:
            out.append(lr * e / 9)
        elif e <= n - 91:
            out.append(lr)
        else:
            out.append(lr / 2 ** ((e - (n - 90)) // 10 + 1))
    return out


@pytest.mark.parametrize("n", [1, 5, 10, 50, 100, 101, 150, 300, 301, 500])
def test_segment_schedule_follows_spec(n: int) -> None:
    np.testing.assert_allclose(segment_lr_schedule(0.2, n), _spec_segment(0.2, n), rtol=1e-12)


@pytest.mark.parametrize("n", [100, 101, 200, 2000])
def test_restore_schedule_follows_spec(n: int) -> None:
    got = restore_lr_schedule(0.001, n)
    np.testing.assert_allclose(got, _spec_restore(0.001, n), rtol=1e-12)
    assert got[-1] == pytest.approx(0.001 / 2**9)


@pytest.mark.parametrize("n", [1, 19, 20, 40, 99])
def test_short_restore_runs_still_warm_up_and_decay(n: int) -> None:
    lrs = restore_lr_schedule(0.001, n)
    assert len(lrs) == n and lrs[0] == 0.0
    assert np.all(np.diff(lrs[10:]) <= 0) and np.all(np.diff(lrs[:10]) > 0)
    if n >= 20:
        assert lrs[-1] == pytest.approx(0.001 / 2**9)


@pytest.mark.parametrize("bad", [0, -3, 2.5])
def test_bad_epochs_rejected(bad) -> None:
    with pytest.raises(ConfigError, match="epochs"):
        segment_lr_schedule(0.1, bad)
