"""Frozen, validated settings of the two trainers (segmentation §7.4, restoration §6.3/§7).

Defaults live in ``cp3rt.defaults`` (TRAIN_* names); validation raises ConfigError naming the
field, the value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Literal

from cp3rt import defaults as D
from cp3rt.errors import ConfigError

RestoreTask = Literal["denoise", "deblur", "upsample", "oneclick"]
RESTORE_TASKS: tuple[str, ...] = ("denoise", "deblur", "upsample", "oneclick")


def _int_at_least(name: str, value: object, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ConfigError(f"{name}={value!r} is not allowed: need an integer >= {low}.")


def _positive(name: str, value: object, *, zero_ok: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not zero_ok):
        rng = ">= 0" if zero_ok else "> 0"
        raise ConfigError(f"{name}={value!r} is not allowed: need a finite number {rng}.")


def _check_nbase(nbase: tuple[int, ...]) -> None:
    if len(nbase) < 2 or not all(isinstance(c, int) and c > 0 for c in nbase):
        raise ConfigError(
            f"nbase={list(nbase)!r} is not allowed: need >= 2 positive channel counts "
            "(without the input channels), e.g. 32,64,128,256."
        )


def _check_crop(crop: int) -> None:
    # Every level halves the size; the runtime feeds multiples of 16 (§1.2), so crops must be too.
    _int_at_least("crop", crop, D.MIN_TILE)
    if crop % D.TILE_MULTIPLE:
        raise ConfigError(
            f"crop={crop} is not allowed: need a multiple of {D.TILE_MULTIPLE} >= {D.MIN_TILE}."
        )


def _check_common(cfg: SegmentTrainConfig | RestoreTrainConfig) -> None:
    _check_nbase(cfg.nbase)
    _int_at_least("epochs", cfg.epochs, 1)
    _int_at_least("batch_size", cfg.batch_size, 1)
    _int_at_least("save_every", cfg.save_every, 1)
    _int_at_least("seed", cfg.seed, 0)
    _positive("learning_rate", cfg.learning_rate)
    _positive("weight_decay", cfg.weight_decay, zero_ok=True)
    _check_crop(cfg.crop)
    if cfg.images_per_epoch is not None:
        _int_at_least("images_per_epoch", cfg.images_per_epoch, 1)
    if not 0 <= cfg.scale_range <= 2:
        raise ConfigError(f"scale_range={cfg.scale_range!r} is not allowed: need 0 <= value <= 2.")


@dataclasses.dataclass(frozen=True)
class SegmentTrainConfig:
    """Train a segmentation CPnet (nout 3) on image/mask pairs (spec §7.3, §7.4)."""

    images: Path
    out: Path
    masks: Path | None = None           # None: ``<name>_masks.<ext>`` next to each image
    nbase: tuple[int, ...] = D.TRAIN_NBASE
    nchan: int = 2                      # extra channels are zeros (Cellpose convention)
    diam_mean: float = D.DIAM_MEAN_CYTO
    epochs: int = D.TRAIN_SEG_EPOCHS
    learning_rate: float = D.TRAIN_SEG_LR
    weight_decay: float = D.TRAIN_WEIGHT_DECAY
    batch_size: int = D.BATCH_SIZE
    crop: int = D.TILE_SIZE
    scale_range: float = D.TRAIN_SCALE_RANGE
    min_train_masks: int = D.TRAIN_MIN_MASKS
    images_per_epoch: int | None = None  # None: every training image once per epoch
    seed: int = 0
    checkpoint: Path | None = None      # None: ``<out>.ckpt``
    save_every: int = 1
    resume: Path | None = None
    flow_cache: Path | None = None      # None: flows are kept in memory only
    pretrained: str | None = None       # zoo name, weight file or cp3rt ONNX to fine-tune from

    def __post_init__(self) -> None:
        _check_common(self)
        _int_at_least("nchan", self.nchan, 1)
        _int_at_least("min_train_masks", self.min_train_masks, 0)
        _positive("diam_mean", self.diam_mean)

    @property
    def checkpoint_path(self) -> Path:
        return self.checkpoint or self.out.with_name(self.out.name + ".ckpt")


@dataclasses.dataclass(frozen=True)
class RestoreTrainConfig:
    """Train a restoration CPnet (nchan 1, nout 1) through a frozen segmenter (spec §6.3, §7)."""

    task: str
    segmenter: Path
    images: Path
    out: Path
    masks: Path | None = None
    nbase: tuple[int, ...] = D.TRAIN_NBASE
    diam_mean: float | None = None      # None: the segmenter's diam_mean
    epochs: int = D.TRAIN_RESTORE_EPOCHS
    learning_rate: float = D.TRAIN_RESTORE_LR
    weight_decay: float = D.TRAIN_WEIGHT_DECAY
    batch_size: int = D.BATCH_SIZE
    crop: int = D.TILE_SIZE
    canvas: int = D.TRAIN_RESTORE_CANVAS
    scale_range: float = D.TRAIN_SCALE_RANGE
    lam_per: float = D.TRAIN_LAM_PER
    lam_seg: float = D.TRAIN_LAM_SEG
    lam_rec: float = D.TRAIN_LAM_REC
    rotate: bool = True
    min_train_masks: int = 1
    images_per_epoch: int | None = None
    seed: int = 0
    checkpoint: Path | None = None
    save_every: int = 1
    resume: Path | None = None
    flow_cache: Path | None = None
    pretrained: str | None = None       # zoo name, weight file or cp3rt ONNX to fine-tune from

    def __post_init__(self) -> None:
        if self.task not in RESTORE_TASKS:
            raise ConfigError(f"task={self.task!r} is not allowed: choose one of {RESTORE_TASKS}.")
        _check_common(self)
        _int_at_least("canvas", self.canvas, self.crop)
        _int_at_least("min_train_masks", self.min_train_masks, 0)
        if self.diam_mean is not None:
            _positive("diam_mean", self.diam_mean)
        for name in ("lam_per", "lam_seg", "lam_rec"):
            _positive(name, getattr(self, name), zero_ok=True)
        if self.lam_per + self.lam_seg + self.lam_rec == 0:
            raise ConfigError(
                "lam_per, lam_seg and lam_rec are all 0: at least one loss weight must be > 0."
            )

    @property
    def lam(self) -> tuple[float, float, float]:
        """``[per, seg, rec]`` in the reference's order (§7.1)."""
        return (self.lam_per, self.lam_seg, self.lam_rec)

    @property
    def checkpoint_path(self) -> Path:
        return self.checkpoint or self.out.with_name(self.out.name + ".ckpt")
