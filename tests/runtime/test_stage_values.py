"""The values the stages take instead of loose parameters: TileOptions, RunConfig.tiles /
RunConfig.dynamics (the one place a run config becomes a DynamicsConfig) and StageTimer."""

from __future__ import annotations

import dataclasses
import time

import pytest

from cp3rt import defaults as D
from cp3rt.errors import ConfigError
from cp3rt.runtime.config import RunConfig
from cp3rt.runtime.dynamics import DynamicsConfig
from cp3rt.runtime.result import STAGES, StageTimer
from cp3rt.runtime.tiles.options import TileOptions


def test_tile_options_defaults_and_messages_name_the_field():
    assert TileOptions() == TileOptions(D.TILE_OVERLAP, D.BATCH_SIZE, False)
    lo, hi = D.TILE_OVERLAP_RANGE
    for bad in (lo / 2, hi * 2, "0.1", True):
        with pytest.raises(ConfigError, match=r"^tile_overlap=.*allowed"):
            TileOptions(tile_overlap=bad)
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ConfigError, match=r"^batch_size=.*allowed"):
            TileOptions(batch_size=bad)
    with pytest.raises(ConfigError, match=r"^augment="):
        TileOptions(augment="yes")
    with pytest.raises(dataclasses.FrozenInstanceError):
        TileOptions().batch_size = 4  # type: ignore[misc]


def test_run_config_gives_its_tiles_and_dynamics():
    cfg = RunConfig(tile_overlap=0.2, batch_size=3, augment=True, cellprob_threshold=-1.0, flow_threshold=0.0,
                    min_size=7, max_size_fraction=0.5, interp=False, reference_bugs=True)
    assert cfg.tiles == TileOptions(0.2, 3, True)
    got = cfg.dynamics(123.4, (40, 50))
    assert got == DynamicsConfig(niter=123.4, cellprob_threshold=-1.0, flow_threshold=0.0, min_size=7,
                                 max_size_fraction=0.5, interp=False, output_shape=(40, 50), reference_bugs=True)
    assert cfg.dynamics(1, None, min_size=-1).min_size == -1  # stitching filters sizes after joining


def test_stage_timer_adds_up_per_stage_and_keeps_every_key():
    timer = StageTimer()
    with timer.stage("segment"):
        time.sleep(0.01)
    with timer.stage("segment"):
        time.sleep(0.01)
    with pytest.raises(RuntimeError), timer.stage("dynamics"):
        raise RuntimeError("a failing stage is still timed")
    seconds = timer.seconds()
    assert tuple(seconds) == STAGES
    assert seconds["segment"] >= 0.02 and seconds["dynamics"] >= 0.0 and seconds["restore"] == 0.0
    seconds["segment"] = -1.0  # a copy: the Result's timings cannot change the timer
    assert timer.seconds()["segment"] >= 0.02
