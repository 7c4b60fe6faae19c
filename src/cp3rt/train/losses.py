"""Training losses of Cellpose 3 (spec §7.1, §7.4; paper Methods).

Label tensors are ``[cellprob, flowY, flowX]`` (B, 3, H, W) with unit flows; the nets are trained
on 5 x those flows (``FLOW_SCALE``), which is why the dynamics later divide by 5.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from cp3rt.defaults import FLOW_SCALE

REC_WEIGHT = 80.0    # reconstruction loss = 80 * MSE: puts it on the scale of the other two
PER_SD_EPS = 1e-6    # added to the s.d. of the target Gram matrix (§7.1)


def segmentation_loss(y: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``MSE(y[:, :2], 5 * flows) / 2 + BCEWithLogits(y[:, 2], cellprob > 0.5)``."""
    flows = FLOW_SCALE * labels[:, 1:3]
    inside = (labels[:, 0] > 0.5).to(y.dtype)
    return F.mse_loss(y[:, :2], flows) / 2.0 + F.binary_cross_entropy_with_logits(y[:, 2], inside)


def reconstruction_loss(restored: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """``80 * MSE`` over all elements."""
    return REC_WEIGHT * F.mse_loss(restored, clean)


def gram_matrices(features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Per level: channel maps centred and scaled to unit spatial s.d., then ``F F^T / (H W)``.

    That is the channel correlation matrix (B, C, C) the paper calls Sigma.
    """
    grams = []
    for f in features:
        f = f - f.mean(dim=(-2, -1), keepdim=True)
        # A constant channel (s.d. 0) would give NaN; the reference has no guard. A tiny floor
        # leaves every non-degenerate case unchanged.
        f = f / f.std(dim=(-2, -1), keepdim=True).clamp_min(1e-12)
        flat = f.flatten(2)
        grams.append(flat @ flat.transpose(1, 2) / flat.shape[-1])
    return grams


def perceptual_loss(
    restored_features: Sequence[torch.Tensor], clean_features: Sequence[torch.Tensor]
) -> torch.Tensor:
    """Sum over levels of ``mean((G_hat - G)^2) / (sd(G) + 1e-6)^2`` per sample, batch mean.

    ``clean_features`` are the segmenter's d0..d3 on the clean image (treated as constants);
    normalising by the target's s.d. makes every level contribute about equally.
    """
    targets = [g.detach() for g in gram_matrices(clean_features)]
    preds = gram_matrices(restored_features)
    total = torch.zeros(targets[0].shape[0], dtype=targets[0].dtype, device=targets[0].device)
    for g_hat, g in zip(preds, targets):
        sd = g.flatten(1).std(dim=1) + PER_SD_EPS
        total = total + ((g_hat - g) ** 2).mean(dim=(1, 2)) / sd**2
    return total.mean()


def restoration_losses(
    restored: torch.Tensor,
    clean: torch.Tensor,
    labels: torch.Tensor | None,
    segmenter: torch.nn.Module | None,
    lam: tuple[float, float, float],
) -> dict[str, torch.Tensor]:
    """The weighted terms and their sum: keys ``per``, ``seg``, ``rec``, ``total`` (§7.1).

    ``segmenter`` is the frozen 1-channel seg net (eval mode, no grad on its weights); the
    gradient flows through it into the restoration net. Terms with weight 0 are not computed.
    """
    lam_per, lam_seg, lam_rec = lam
    zero = restored.new_zeros(())
    out = {"per": zero, "seg": zero, "rec": zero}
    if lam_rec > 0:
        out["rec"] = lam_rec * reconstruction_loss(restored, clean)
    if lam_seg > 0 or lam_per > 0:
        if segmenter is None:
            raise ValueError("the segmentation and perceptual losses need a segmenter")
        y, _, feats = segmenter(restored)
        if lam_seg > 0:
            if labels is None:
                raise ValueError("the segmentation loss needs labels")
            out["seg"] = lam_seg * segmentation_loss(y, labels)
        if lam_per > 0:
            with torch.no_grad():
                _, _, clean_feats = segmenter(clean)
            out["per"] = lam_per * perceptual_loss(feats, clean_feats)
    out["total"] = out["per"] + out["seg"] + out["rec"]
    return out
