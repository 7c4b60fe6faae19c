"""CPnet building blocks (spec §1.1), written so that module names give Cellpose v3's state-dict keys.

The ``nn.Sequential`` indices are part of the file format: a pre-activation conv is
BN ``.0`` -> ReLU ``.1`` -> conv ``.2``; the projection shortcut is BN ``.0`` -> 1x1 conv ``.1``.
"""

from __future__ import annotations

import torch
from torch import nn

# BatchNorm settings of the reference (§1.1); momentum only matters for training.
BN_EPS = 1e-5
BN_MOMENTUM = 0.05


def conv_bn_relu(cin: int, cout: int, k: int) -> nn.Sequential:
    """Pre-activation conv: BN and ReLU act on the input, then a zero-padded k x k conv."""
    return nn.Sequential(
        nn.BatchNorm2d(cin, eps=BN_EPS, momentum=BN_MOMENTUM),
        nn.ReLU(),
        nn.Conv2d(cin, cout, k, padding=k // 2),
    )


def conv_bn(cin: int, cout: int, k: int) -> nn.Sequential:
    """BN then conv, no ReLU (only used as the 1x1 projection shortcut)."""
    return nn.Sequential(
        nn.BatchNorm2d(cin, eps=BN_EPS, momentum=BN_MOMENTUM),
        nn.Conv2d(cin, cout, k, padding=k // 2),
    )


class ResDown(nn.Module):
    """Encoder block: two residual pairs of 3x3 convs; the first residual uses a 1x1 projection."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        # Registration order (conv before proj) fixes the state-dict key order.
        self.conv = nn.Sequential()
        self.conv.add_module("conv_0", conv_bn_relu(cin, cout, 3))
        for i in range(1, 4):
            self.conv.add_module(f"conv_{i}", conv_bn_relu(cout, cout, 3))
        self.proj = conv_bn(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.proj(x) + self.conv[1](self.conv[0](x))
        return h + self.conv[3](self.conv[2](h))


class StyleConv(nn.Module):
    """Decoder conv that first adds an optional skip tensor and a per-channel style bias."""

    def __init__(self, cin: int, cout: int, style_dim: int) -> None:
        super().__init__()
        self.conv = conv_bn_relu(cin, cout, 3)
        self.full = nn.Linear(style_dim, cin)

    def forward(
        self, style: torch.Tensor, x: torch.Tensor, skip: torch.Tensor | None = None
    ) -> torch.Tensor:
        if skip is not None:
            x = x + skip
        bias = self.full(style)
        x = x + bias[:, :, None, None]
        return self.conv(x)


class ResUp(nn.Module):
    """Decoder block: the skip tensor enters inside the first style conv (added, not concatenated)."""

    def __init__(self, cin: int, cout: int, style_dim: int) -> None:
        super().__init__()
        self.conv = nn.Sequential()
        self.conv.add_module("conv_0", conv_bn_relu(cin, cout, 3))
        for i in range(1, 4):
            self.conv.add_module(f"conv_{i}", StyleConv(cout, cout, style_dim))
        self.proj = conv_bn(cin, cout, 1)

    def forward(self, x: torch.Tensor, skip: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        h = self.proj(x) + self.conv[1](style, self.conv[0](x), skip)
        return h + self.conv[3](style, self.conv[2](style, h))


class Encoder(nn.Module):
    """``downsample`` in the file: one ResDown per level, 2x2 max pooling between levels."""

    def __init__(self, nbase: tuple[int, ...]) -> None:
        super().__init__()
        self.down = nn.Sequential()
        for n in range(len(nbase) - 1):
            self.down.add_module(f"res_down_{n}", ResDown(nbase[n], nbase[n + 1]))
        self.maxpool = nn.MaxPool2d(2, 2)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats: list[torch.Tensor] = []
        for n, block in enumerate(self.down):
            feats.append(block(x if n == 0 else self.maxpool(feats[-1])))
        return feats


class Decoder(nn.Module):
    """``upsample`` in the file: the deepest block gets d_last as input AND skip, then 2x nearest."""

    def __init__(self, nbaseup: tuple[int, ...]) -> None:
        super().__init__()
        style_dim = nbaseup[-1]
        self.up = nn.Sequential()
        for n in range(len(nbaseup) - 1):
            self.up.add_module(f"res_up_{n}", ResUp(nbaseup[n + 1], nbaseup[n], style_dim))
        self.upsampling = nn.Upsample(scale_factor=2, mode="nearest")

    def forward(self, style: torch.Tensor, feats: list[torch.Tensor]) -> torch.Tensor:
        blocks = list(self.up)
        x = blocks[-1](feats[-1], feats[-1], style)
        for n in range(len(blocks) - 2, -1, -1):
            x = blocks[n](self.upsampling(x), feats[n], style)
        return x


def make_style(deepest: torch.Tensor) -> torch.Tensor:
    """Global mean over H, W, then divide by the L2 norm (no epsilon, like the reference).

    A mean over dims, not an average-pooling kernel sized from the input: the latter bakes the
    tile shape into an exported graph.
    """
    style = deepest.mean(dim=(2, 3))
    return style / torch.sqrt(torch.sum(style * style, dim=1, keepdim=True))
