"""CPnet with its BatchNorms folded into the neighbouring convolutions and style layers.

In eval mode a BatchNorm is a per-channel affine map ``a * x + c``. CPnet's convolutions are
pre-activation (BN -> ReLU -> conv), so a BN can be folded exactly (in real arithmetic) where
what it normalises is a linear function of something else that is used nowhere else:

* encoder: the BN in front of the 2nd and 4th conv of a block normalises the 1st / 3rd conv's
  output and nothing else reads it -> scale that conv's weights and bias;
* projection shortcut (BN -> 1x1 conv, no ReLU, no padding) -> fold into the 1x1 conv's input
  side (exact because a 1x1 conv has no zero padding for the shift to miss);
* decoder style convs: ``BN(x + skip + Linear(style))`` is ``a*x + a*skip + (a*Linear(style) + c)``
  -> ``a`` goes into the conv that produced ``x`` (when nothing else reads it) and into the
  style Linear, whose bias also takes ``c``; what stays is a per-channel scale of the skip
  tensor or of the residual stream, fused with the ReLU by a compiler.

BNs whose input is also read elsewhere (a block's input, the residual stream, the decoder
output) stay as a per-channel affine + ReLU (``_PreAct``). Of the 41 BatchNorms of a CPnet, 13
stay as affine + ReLU and 8 become a per-channel scale inside an add; the other 20 disappear.

The folded net computes the same function as ``CPnet.forward`` up to float rounding (tested on
CPU against the unfolded net). Weights are folded in float64 and rounded once. The style path
(global mean, L2 norm, Linear layers) stays float32 whatever the conv precision, as in
:func:`cp3rt.engines.torch_cuda.mixed_forward`.
"""

from __future__ import annotations

import torch
from torch import nn

from cp3rt.models._blocks import ResDown, ResUp
from cp3rt.models.cpnet import CPnet


def _bn_affine(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """(a, c) in float64 with bn(x) == a * x + c per channel (eval mode)."""
    a = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
    return a, bn.bias.double() - bn.running_mean.double() * a


def _conv(src: nn.Conv2d, out_scale: torch.Tensor | None = None,
          out_shift: torch.Tensor | None = None, in_affine: tuple | None = None) -> nn.Conv2d:
    """Copy of ``src`` computing ``out_scale * src(a_in * x + c_in) + out_shift``."""
    w = src.weight.double()
    b = src.bias.double() if src.bias is not None else torch.zeros(w.shape[0], dtype=torch.float64)
    if in_affine is not None:  # only exact for 1x1 convs without padding (checked by the caller)
        a_in, c_in = in_affine
        b = b + (w * c_in[None, :, None, None]).sum(dim=(1, 2, 3))
        w = w * a_in[None, :, None, None]
    if out_scale is not None:
        w = w * out_scale[:, None, None, None]
        b = b * out_scale
    if out_shift is not None:
        b = b + out_shift
    conv = nn.Conv2d(src.in_channels, src.out_channels, src.kernel_size, padding=src.padding)
    with torch.no_grad():
        conv.weight.copy_(w.float())
        conv.bias.copy_(b.float())
    return conv


def _linear(src: nn.Linear, scale: torch.Tensor, shift: torch.Tensor) -> nn.Linear:
    """Copy of ``src`` computing ``scale * src(s) + shift``."""
    lin = nn.Linear(src.in_features, src.out_features)
    with torch.no_grad():
        lin.weight.copy_((src.weight.double() * scale[:, None]).float())
        lin.bias.copy_((src.bias.double() * scale + shift).float())
    return lin


def _proj(seq: nn.Sequential) -> nn.Conv2d:
    """BN -> 1x1 conv shortcut as one 1x1 conv."""
    conv = seq[1]
    if conv.kernel_size != (1, 1) or conv.padding != (0, 0):
        raise ValueError("only a 1x1 unpadded projection can absorb the BatchNorm in front of it")
    return _conv(conv, in_affine=_bn_affine(seq[0]))


class _PreAct(nn.Module):
    """relu(a * x + c) per channel: a BatchNorm that cannot be folded, then the ReLU."""

    def __init__(self, bn: nn.BatchNorm2d) -> None:
        super().__init__()
        a, c = _bn_affine(bn)
        self.register_buffer("a", a.float()[None, :, None, None])
        self.register_buffer("c", c.float()[None, :, None, None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x * self.a + self.c)


class FoldedDown(nn.Module):
    """ResDown with 3 of its 5 BatchNorms folded (see the module docstring)."""

    def __init__(self, block: ResDown) -> None:
        super().__init__()
        c = block.conv
        self.pre0 = _PreAct(c[0][0])
        a1, c1 = _bn_affine(c[1][0])
        self.conv0 = _conv(c[0][2], a1, c1)
        self.conv1 = _conv(c[1][2])
        self.proj = _proj(block.proj)
        self.pre2 = _PreAct(c[2][0])
        a3, c3 = _bn_affine(c[3][0])
        self.conv2 = _conv(c[2][2], a3, c3)
        self.conv3 = _conv(c[3][2])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.proj(x) + self.conv1(torch.relu(self.conv0(self.pre0(x))))
        return h + self.conv3(torch.relu(self.conv2(self.pre2(h))))


class FoldedUp(nn.Module):
    """ResUp with its style-conv BatchNorms folded into the convs before them and the Linears."""

    def __init__(self, block: ResUp) -> None:
        super().__init__()
        c = block.conv
        self.pre0 = _PreAct(c[0][0])
        a1, c1 = _bn_affine(c[1].conv[0])
        self.conv0 = _conv(c[0][2], a1)
        self.register_buffer("skip_scale", a1.float()[None, :, None, None])
        self.full1 = _linear(c[1].full, a1, c1)
        self.conv1 = _conv(c[1].conv[2])
        self.proj = _proj(block.proj)
        a2, c2 = _bn_affine(c[2].conv[0])
        self.register_buffer("h_scale", a2.float()[None, :, None, None])
        self.full2 = _linear(c[2].full, a2, c2)
        a3, c3 = _bn_affine(c[3].conv[0])
        self.conv2 = _conv(c[2].conv[2], a3)
        self.full3 = _linear(c[3].full, a3, c3)
        self.conv3 = _conv(c[3].conv[2])

    def forward(self, x: torch.Tensor, skip: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        def bias(full: nn.Linear, like: torch.Tensor) -> torch.Tensor:
            # fp32 Linear on the fp32 style, rounded once where it meets the features
            return full(style).to(like.dtype)[:, :, None, None]

        u = self.conv0(self.pre0(x))
        u = torch.relu(u + skip * self.skip_scale + bias(self.full1, u))
        h = self.proj(x) + self.conv1(u)
        v = torch.relu(h * self.h_scale + bias(self.full2, h))
        w = self.conv2(v)
        return h + self.conv3(torch.relu(w + bias(self.full3, w)))


class FoldedCPnet(nn.Module):
    """The function of a CPnet (eval mode) with BatchNorms folded; ``forward(x) -> (y, style)``.

    :meth:`to_precision` moves convolutions and per-channel maps to fp16/bf16 (optionally
    channels-last) and keeps the style Linears fp32.
    """

    def __init__(self, net: CPnet) -> None:
        super().__init__()
        if net.training:
            raise ValueError("fold a CPnet in eval mode: training-mode BatchNorm is not an affine map")
        self.nbase = net.nbase
        self.nout = net.nout
        self.down = nn.ModuleList(FoldedDown(b) for b in net.downsample.down)
        self.up = nn.ModuleList(FoldedUp(b) for b in net.upsample.up)
        self.out_pre = _PreAct(net.output[0])
        self.out_conv = _conv(net.output[2])
        self._dtype = torch.float32

    @property
    def nchan(self) -> int:
        return self.nbase[0]

    def to_precision(self, dtype: torch.dtype, *, channels_last: bool = False) -> FoldedCPnet:
        self._dtype = dtype
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                module.to(dtype)
                if channels_last:
                    module.to(memory_format=torch.channels_last)
            elif isinstance(module, (_PreAct,)):
                module.a, module.c = module.a.to(dtype), module.c.to(dtype)
            elif isinstance(module, FoldedUp):
                module.skip_scale = module.skip_scale.to(dtype)
                module.h_scale = module.h_scale.to(dtype)
        return self

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = []
        h = x.to(self._dtype)
        for n, block in enumerate(self.down):
            h = block(h if n == 0 else nn.functional.max_pool2d(feats[-1], 2, 2))
            feats.append(h)
        deepest = feats[-1].float()
        style = deepest.mean(dim=(2, 3))
        style = style / torch.sqrt(torch.sum(style * style, dim=1, keepdim=True))  # no epsilon, as CPnet
        h = self.up[-1](feats[-1], feats[-1], style)
        for n in range(len(self.up) - 2, -1, -1):
            h = self.up[n](nn.functional.interpolate(h, scale_factor=2, mode="nearest"), feats[n], style)
        return self.out_conv(self.out_pre(h)), style


def fold_batchnorm(net: CPnet) -> FoldedCPnet:
    """A new module computing ``net``'s (y, style) with folded BatchNorms; ``net`` is not changed."""
    with torch.no_grad():
        return FoldedCPnet(net).eval()
