"""CPnet: the Cellpose v3 residual U-Net (spec §1), loadable from v3 weight files unchanged.

``CPnet(nbase, nout).state_dict()`` has exactly the keys, order and shapes of the reference
(Appendix B), so a v3 file loads strictly and ``CPnet.save`` writes a file the reference reads. A CPnet from a
weight file is :func:`cp3rt.models.weights.load_cpnet` (the net knows nothing of files; the file
reader checks them against the net's shapes, so it imports this module and not the reverse).
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from cp3rt._fs import atomic_write_bytes
from cp3rt.errors import ConfigError
from cp3rt.models._blocks import BN_EPS, BN_MOMENTUM, Decoder, Encoder, make_style

DIAM_KEYS = ("diam_mean", "diam_labels")
DEFAULT_DIAM_MEAN = 30.0  # constructor default of the reference CPnet (§1.5)


def _check_arch(nbase: Sequence[int], nout: int, diam_mean: float) -> tuple[int, ...]:
    nb = tuple(nbase)
    if len(nb) < 2 or not all(isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in nb):
        raise ConfigError(
            f"nbase={list(nb)!r} is not allowed: need at least 2 positive integer channel counts, "
            "e.g. [2, 32, 64, 128, 256]."
        )
    if not isinstance(nout, int) or isinstance(nout, bool) or nout < 1:
        raise ConfigError(f"nout={nout!r} is not allowed: need a positive integer (3 or 1).")
    if not (isinstance(diam_mean, (int, float)) and math.isfinite(diam_mean) and diam_mean > 0):
        raise ConfigError(f"diam_mean={diam_mean!r} is not allowed: need a finite number > 0.")
    return nb


class CPnet(nn.Module):
    """Residual U-Net with additive skips and a global style vector (spec §1.2).

    ``forward(x)`` takes (B, nbase[0], H, W) with H, W multiples of 2**(len(nbase)-2) and returns
    ``(y, style, features)``: y (B, nout, H, W), style (B, nbase[-1]) and the encoder outputs.
    """

    def __init__(self, nbase: Sequence[int], nout: int, *, diam_mean: float = DEFAULT_DIAM_MEAN):
        super().__init__()
        nb = _check_arch(nbase, nout, diam_mean)
        self.nbase = nb
        self.nout = nout
        nbaseup = nb[1:] + (nb[-1],)
        # Registered first so they are the first two state-dict keys, like the reference.
        self.diam_mean = nn.Parameter(torch.full((1,), float(diam_mean)), requires_grad=False)
        self.diam_labels = nn.Parameter(torch.full((1,), float(diam_mean)), requires_grad=False)
        self.downsample = Encoder(nb)
        self.upsample = Decoder(nbaseup)
        self.output = nn.Sequential(
            nn.BatchNorm2d(nbaseup[0], eps=BN_EPS, momentum=BN_MOMENTUM),
            nn.ReLU(),
            nn.Conv2d(nbaseup[0], nout, 1),
        )

    @property
    def nchan(self) -> int:
        return self.nbase[0]

    def forward(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        feats = self.downsample(x)
        style = make_style(feats[-1])
        y = self.output(self.upsample(style, feats))
        return y, style, feats

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write a bare state dict (no wrapper, no prefix) like Cellpose v3's ``save_model``."""
        buf = io.BytesIO()
        torch.save(self.state_dict(), buf)
        path = Path(path)
        atomic_write_bytes(path, buf.getvalue())
        return path
