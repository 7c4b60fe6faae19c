"""Comparison helpers for the model tests (a uniquely named module: tests/ has no packages)."""

from __future__ import annotations

import numpy as np
import torch


def report_mismatch(name: str, got: np.ndarray, want: np.ndarray, atol: float) -> str:
    """Worst element and mismatch rate, for assertion messages."""
    diff = np.abs(np.asarray(got, np.float64) - np.asarray(want, np.float64))
    worst = np.unravel_index(int(np.argmax(diff)), diff.shape)
    rate = float((diff > atol).mean())
    return (
        f"{name}: max |diff| {diff.max():.3g} > {atol:g} at {tuple(int(i) for i in worst)} "
        f"(got {got[worst]:.6g}, want {want[worst]:.6g}); mismatch rate {rate:.2%}"
    )


def max_abs(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.abs(np.asarray(got, np.float64) - np.asarray(want, np.float64)).max())


def randomise_bn(net: torch.nn.Module, gen: torch.Generator) -> None:
    """Non-trivial BN: running stats and affine params away from (0, 1) so BN is not identity."""
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_(torch.rand(c, generator=gen) - 0.5)
                m.running_var.copy_(0.5 + 1.5 * torch.rand(c, generator=gen))
                m.weight.copy_(0.5 + torch.rand(c, generator=gen))
                m.bias.copy_(0.4 * torch.rand(c, generator=gen) - 0.2)
                m.num_batches_tracked.fill_(7)
