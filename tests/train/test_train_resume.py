"""Checkpoints resume to the same state: a split run equals an uninterrupted one, bit for bit."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from cp3rt.errors import ConfigError, InputError
from cp3rt.train.checkpoint import load_checkpoint
from cp3rt.train.config import RestoreTrainConfig, SegmentTrainConfig
from cp3rt.train.restore import train_restore
from cp3rt.train.segment import train_segment

from conftest import TINY_NBASE


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)


def _assert_same_run(a: Path, b: Path, kind: str) -> None:
    ca, cb = load_checkpoint(a, kind=kind), load_checkpoint(b, kind=kind)
    assert ca["epochs_done"] == cb["epochs_done"]
    for key in ca["model"]:
        torch.testing.assert_close(ca["model"][key], cb["model"][key], rtol=0, atol=0, msg=key)
    sa, sb = ca["optimizer"]["state"], cb["optimizer"]["state"]
    assert sa.keys() == sb.keys()
    for k in sa:
        for name in sa[k]:
            torch.testing.assert_close(sa[k][name], sb[k][name], rtol=0, atol=0)
    assert ca["optimizer"]["param_groups"][0]["lr"] == cb["optimizer"]["param_groups"][0]["lr"]
    assert ca["numpy_rng"] == cb["numpy_rng"]
    assert torch.equal(ca["torch_rng"], cb["torch_rng"])
    assert ca["history"] == cb["history"]


def test_segment_resume_continues_identically(synth_set: Path, tmp_path: Path) -> None:
    base = SegmentTrainConfig(
        images=synth_set / "images", masks=synth_set / "masks", out=tmp_path / "full",
        nbase=TINY_NBASE, diam_mean=17.0, epochs=3, crop=48, batch_size=4, seed=7,
    )
    full = train_segment(base)
    # The same run, killed after 2 of its 3 epochs, then resumed from its checkpoint.
    part_cfg = dataclasses.replace(base, out=tmp_path / "part")
    _run_interrupted(part_cfg, stop_after=2)
    resumed = train_segment(dataclasses.replace(part_cfg, resume=part_cfg.checkpoint_path))
    assert resumed.epochs == full.epochs == 3
    _assert_same_run(full.checkpoint, resumed.checkpoint, "segment")
    got = _weights(resumed.weights)
    for key, value in _weights(full.weights).items():
        torch.testing.assert_close(got[key], value, rtol=0, atol=0, msg=key)
    assert resumed.history == full.history


def test_restore_resume_continues_identically(
    synth_set: Path, tiny_segmenter: Path, tmp_path: Path
) -> None:
    base = RestoreTrainConfig(
        task="oneclick", segmenter=tiny_segmenter, images=synth_set / "images",
        masks=synth_set / "masks", out=tmp_path / "full", nbase=TINY_NBASE, epochs=2, crop=48,
        canvas=80, batch_size=3, images_per_epoch=6, seed=3,
    )
    full = train_restore(base)
    part_cfg = dataclasses.replace(base, out=tmp_path / "part")
    _run_interrupted(part_cfg, stop_after=1)
    resumed = train_restore(dataclasses.replace(part_cfg, resume=part_cfg.checkpoint_path))
    _assert_same_run(full.checkpoint, resumed.checkpoint, "restore")
    assert resumed.history == full.history


class _Stop(Exception):
    pass


def _run_interrupted(cfg, stop_after: int) -> None:
    """Run ``cfg`` and kill it (by exception) right after checkpoint number ``stop_after``."""
    seen = []

    def progress(event) -> None:
        if event.phase == "checkpoint":
            seen.append(event)
            if len(seen) == stop_after:
                raise _Stop

    trainer = train_segment if isinstance(cfg, SegmentTrainConfig) else train_restore
    with pytest.raises(_Stop):
        trainer(cfg, progress)
    assert not cfg.out.exists()  # no weight file from an unfinished run
    assert load_checkpoint(cfg.checkpoint_path, kind=_kind(cfg))["epochs_done"] == stop_after


def _kind(cfg) -> str:
    return "segment" if isinstance(cfg, SegmentTrainConfig) else "restore"


def test_resume_refuses_other_architecture_or_kind(
    synth_set: Path, tiny_segmenter: Path, tmp_path: Path
) -> None:
    cfg = SegmentTrainConfig(
        images=synth_set / "images", masks=synth_set / "masks", out=tmp_path / "a",
        nbase=TINY_NBASE, diam_mean=17.0, epochs=1, crop=32, batch_size=6,
    )
    train_segment(cfg)
    wider = dataclasses.replace(cfg, nbase=(8, 16, 32, 128), resume=cfg.checkpoint_path)
    with pytest.raises(ConfigError, match="nbase"):
        train_segment(wider)
    as_restore = RestoreTrainConfig(
        task="denoise", segmenter=tiny_segmenter, images=synth_set / "images",
        masks=synth_set / "masks", out=tmp_path / "r", nbase=TINY_NBASE, epochs=1, crop=32,
        canvas=64, resume=cfg.checkpoint_path,
    )
    with pytest.raises(ConfigError, match="'segment' run"):
        train_restore(as_restore)
    (tmp_path / "junk").write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="junk"):
        train_segment(dataclasses.replace(cfg, resume=tmp_path / "junk"))
