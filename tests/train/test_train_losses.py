"""Losses (spec §7.1, §7.4) against the reference oracle, and each loss decreasing in training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from cellpose import denoise as ref_denoise
from cellpose import train as ref_train

from cp3rt.runtime.quality.degrade import noise_preset, normalize_clean
from cp3rt.train.data import FlowCache, find_pairs, load_training_set
from cp3rt.train.losses import (
    perceptual_loss,
    reconstruction_loss,
    restoration_losses,
    segmentation_loss,
)
from cp3rt.train.restore import restore_batch
from cp3rt.train.segnet import RESTORE_NOUT, SEG_NOUT, freeze, new_net, one_channel

from conftest import TINY_NBASE

LOSS_RTOL = 1e-5   # same float32 maths in a different order
STEPS = 8          # optimiser steps on one fixed batch
MIN_DROP = 0.05    # the loss must fall by at least 5 % over those steps


def _labels(rng: np.random.Generator, b=2, s=32) -> np.ndarray:
    lbl = rng.standard_normal((b, 3, s, s)).astype(np.float32)
    lbl[:, 0] = rng.random((b, s, s)) > 0.5
    return lbl


def test_segmentation_loss_matches_reference() -> None:
    rng = np.random.default_rng(0)
    lbl = _labels(rng)
    y = torch.from_numpy(rng.standard_normal((2, 3, 32, 32)).astype(np.float32))
    want = ref_train._loss_fn_seg(lbl, y, torch.device("cpu"))
    got = segmentation_loss(y, torch.from_numpy(lbl))
    torch.testing.assert_close(got, want, rtol=LOSS_RTOL, atol=0)
    torch.testing.assert_close(got, ref_denoise.loss_fn_seg(torch.from_numpy(lbl), y),
                               rtol=LOSS_RTOL, atol=0)


def test_reconstruction_and_perceptual_losses_match_reference() -> None:
    torch.manual_seed(0)
    seg = freeze(new_net(1, TINY_NBASE, SEG_NOUT, 17.0, seed=1))
    clean = torch.rand(2, 1, 32, 32)
    restored = clean + 0.3 * torch.randn(2, 1, 32, 32)
    torch.testing.assert_close(reconstruction_loss(restored, clean),
                               ref_denoise.loss_fn_rec(clean, restored), rtol=LOSS_RTOL, atol=0)
    _, _, feats = seg(restored)
    _, _, clean_feats = seg(clean)
    want = ref_denoise.loss_fn_per(clean, seg, feats)
    torch.testing.assert_close(perceptual_loss(feats, clean_feats), want, rtol=1e-4, atol=0)


@pytest.mark.parametrize("lam", [(1.0, 1.5, 0.0), (0.0, 0.0, 1.0), (0.5, 0.7, 2.0)])
def test_total_restoration_loss_matches_reference_train_loss(lam) -> None:
    rng = np.random.default_rng(2)
    seg = freeze(new_net(1, TINY_NBASE, SEG_NOUT, 17.0, seed=1))
    net0 = new_net(1, TINY_NBASE, RESTORE_NOUT, 17.0, seed=2).train()
    noisy = torch.rand(2, 1, 32, 32)
    clean = torch.rand(2, 1, 32, 32)
    lbl = torch.from_numpy(_labels(rng))
    want, _ = ref_denoise.train_loss(net0, noisy, seg, clean, lbl, list(lam))
    got = restoration_losses(net0(noisy)[0], clean, lbl, seg, lam)["total"]
    torch.testing.assert_close(got.reshape(1), want, rtol=1e-4, atol=0)


def test_one_channel_matches_reference(tmp_path: Path) -> None:
    """§1.4: same tensors as the reference's one_chan_cellpose (standard width, as it hardcodes)."""
    two = new_net(2, (32, 64, 128, 256), SEG_NOUT, 30.0, seed=4)
    with torch.no_grad():  # make channel 1 differ from channel 0 everywhere it matters
        for p in two.parameters():
            p.add_(0.01 * torch.randn_like(p))
    two.save(tmp_path / "seg2")
    want = ref_denoise.one_chan_cellpose("cpu", pretrained_model=str(tmp_path / "seg2"))
    got = one_channel(two)
    ref_sd, sd = want.state_dict(), got.state_dict()
    assert list(sd) == list(ref_sd)
    for key in sd:
        if key in ("diam_mean", "diam_labels"):
            continue  # the reference leaves them at its constructor default
        torch.testing.assert_close(sd[key], ref_sd[key], rtol=0, atol=0, msg=key)


@pytest.fixture(scope="module")
def fixed_restore_batch(synth_set: Path):
    items, _ = load_training_set(find_pairs(synth_set / "images", synth_set / "masks"), nchan=1,
                                 min_masks=1, cache=FlowCache(), normalize=normalize_clean)
    rng = np.random.default_rng(0)
    return restore_batch(items, np.arange(4), rng, noise=noise_preset("poisson"), diam_mean=17.0,
                         canvas=96, crop=64, scale_range=0.5, rotate=True)


def _train_steps(net, loss_fn, steps: int = STEPS) -> list[float]:
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=5e-3,
                            weight_decay=1e-5)
    history = []
    for _ in range(steps):
        net.train()
        loss = loss_fn()
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(float(loss.detach()))
    return history


def _assert_decreases(history: list[float], name: str) -> None:
    assert min(history[-2:]) < (1 - MIN_DROP) * history[0], f"{name} did not decrease: {history}"


def test_segmentation_loss_decreases(fixed_restore_batch) -> None:
    _, clean, lbl = fixed_restore_batch
    net = new_net(2, TINY_NBASE, SEG_NOUT, 17.0, seed=0)
    x = torch.cat([clean, torch.zeros_like(clean)], dim=1)
    _assert_decreases(_train_steps(net, lambda: segmentation_loss(net(x)[0], lbl)), "seg")


@pytest.fixture(scope="module")
def briefly_trained_segmenter(fixed_restore_batch):
    """A 1-channel tiny segmenter fitted to the clean batch, so its loss reacts to the input."""
    _, clean, lbl = fixed_restore_batch
    net = new_net(1, TINY_NBASE, SEG_NOUT, 17.0, seed=1)
    _train_steps(net, lambda: segmentation_loss(net(clean)[0], lbl), steps=20)
    return freeze(net)


@pytest.mark.parametrize("term,lam", [("per", (1.0, 0.0, 0.0)), ("seg", (0.0, 1.5, 0.0)),
                                      ("rec", (0.0, 0.0, 1.0))])
def test_each_restoration_loss_decreases(
    fixed_restore_batch, briefly_trained_segmenter, term, lam
) -> None:
    noisy, clean, lbl = fixed_restore_batch
    seg = briefly_trained_segmenter
    net = new_net(1, TINY_NBASE, RESTORE_NOUT, 17.0, seed=2)
    history = _train_steps(
        net, lambda: restoration_losses(net(noisy)[0], clean, lbl, seg, lam)[term])
    _assert_decreases(history, term)
    # The frozen segmenter must not have changed.
    assert all(not p.requires_grad for p in seg.parameters())
