"""What the segmentation sees after a restoration: which channels, and how they are normalised.

Shared by the 2-D path (``stages.image``) and the volume path (``stages.volume``), which both
hand a restored image on to the segmentation net.
"""

from __future__ import annotations

from cp3rt.runtime.config import RunConfig
from cp3rt.runtime.prep.normalize import NormalizeConfig


def channels_after_restore(channels: tuple[int, int] | None) -> tuple[int, int] | None:
    """§3.12 step 4: restored channel 0 = cytoplasm, channel 1 = nucleus (if any)."""
    if channels is None:
        return None
    return (0, 0) if channels[0] == 0 else (1, 2)


def normalize_after_restore(cfg: RunConfig) -> NormalizeConfig | None:
    """§3.12 step 3: the restored image is re-normalised with default settings.

    The reference also carries ``invert`` into this second normalisation (inverting twice);
    cp3rt inverts once, before restoration, unless reference_bugs is set.
    """
    if cfg.normalize is None or not cfg.normalize.normalizes:
        return None
    if cfg.reference_bugs and cfg.normalize.invert:
        return NormalizeConfig(invert=True)
    return NormalizeConfig()
