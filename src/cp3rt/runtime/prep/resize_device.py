"""Bilinear resizing on the device (§3.5.1): the host's geometry, not its last bit.

``torch.nn.functional.interpolate(mode="bilinear", align_corners=False, antialias=False)``
samples at the same half-pixel-centred source coordinates as OpenCV's INTER_LINEAR with the
same border clamping and no anti-aliasing, so it computes the same function as
``prep.resize.resize_bilinear``. It rounds differently: OpenCV's three float32 code
paths (IPP's fused multiply-adds, OpenCV's own products, the 2x2 mean of an exact 2x shrink) are
not reproduced. The difference is bounded by ``RESIZE_TOLERANCE`` of the image's range (tested).
"""

from __future__ import annotations

from typing import Any

# max |device - host| as a fraction of the image's range. torch computes the source coordinate
# in float32 from a float32 scale, OpenCV/IPP from exact ratios, so the weights differ by ~1e-6
# relative (measured worst 5.2e-6 of the range on the tested cases).
RESIZE_TOLERANCE = 2e-5


def resize_on_device(image: Any, shape: tuple[int, int]) -> Any:
    """(C, Y, X) float32 tensor -> (C, *shape) float32 tensor."""
    if tuple(image.shape[-2:]) == tuple(shape):
        return image.clone()
    import torch

    out = torch.nn.functional.interpolate(image[None].float(), size=tuple(int(s) for s in shape),
                                          mode="bilinear", align_corners=False, antialias=False)
    return out[0]
