"""Training of Cellpose v3 nets (torch side, like cp3rt.models; never imported by the runtime).

``train_segment(SegmentTrainConfig(...))`` trains a segmentation CPnet and
``train_restore(RestoreTrainConfig(...))`` a restoration CPnet with the Cellpose 3 losses; both
write Cellpose-v3-format weight files and report progress through a callback.
"""

from __future__ import annotations

from cp3rt._lazy import lazy_getattr

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from cp3rt.train.config import RestoreTrainConfig, SegmentTrainConfig
    from cp3rt.train.loop import TrainResult
    from cp3rt.train.progress import TrainProgress
    from cp3rt.train.restore import train_restore
    from cp3rt.train.segment import train_segment

__all__ = ["RestoreTrainConfig", "SegmentTrainConfig", "TrainProgress", "TrainResult",
           "train_restore", "train_segment"]

_LAZY = {
    "RestoreTrainConfig": "cp3rt.train.config",
    "SegmentTrainConfig": "cp3rt.train.config",
    "TrainResult": "cp3rt.train.loop",
    "TrainProgress": "cp3rt.train.progress",
    "train_restore": "cp3rt.train.restore",
    "train_segment": "cp3rt.train.segment",
}


__getattr__ = lazy_getattr('cp3rt.train', _LAZY)
