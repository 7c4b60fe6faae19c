"""Train a Cellpose 3 restoration net (nchan 1, nout 1) through a frozen segmenter (§6.3, §7).

Every batch is degraded on the fly: clean crops are resized so objects get a random diameter
``d* = diam_mean * 2^U(-1, 1)`` on a 340 x 340 canvas, degraded by the task's preset with blur
tied to ``d*`` (cp3rt.runtime.quality.degrade), then augmented to the crop size with objects at about
``diam_mean``. Loss = lam_per * perceptual + lam_seg * segmentation + lam_rec * 80 MSE.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch

from cp3rt.manifest import sha256_file
from cp3rt.runtime.quality.degrade import Noise, add_noise_batch, noise_preset, normalize_clean
from cp3rt.train.augment import place, random_rotate_and_resize
from cp3rt.train.config import RestoreTrainConfig
from cp3rt.train.data import FlowCache, TrainImage, find_pairs, load_training_set
from cp3rt.train.loop import LoopPlan, TrainResult, run_epochs, settings_dict, start_state
from cp3rt.train.losses import restoration_losses
from cp3rt.train.progress import ProgressCallback, TrainProgress
from cp3rt.train.schedule import restore_lr_schedule
from cp3rt.train.segnet import RESTORE_NOUT, load_segmenter, new_net, pretrained_net

KIND = "restore"
RESUME_FIELDS = ("task", "nbase", "diam_mean", "segmenter_sha256", "lam_per", "lam_seg", "lam_rec")
TASK_PRESET = {"denoise": "poisson", "deblur": "blur", "upsample": "downsample",
               "oneclick": "oneclick"}


def task_noise(task: str) -> Noise:
    """The §6.2 degradation preset a restoration task is trained with."""
    return noise_preset(TASK_PRESET[task])


def restore_batch(
    items: list[TrainImage],
    idx: np.ndarray,
    rng: np.random.Generator,
    *,
    noise: Noise,
    diam_mean: float,
    canvas: int,
    crop: int,
    scale_range: float,
    rotate: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(noisy, clean, labels) tensors of shapes (B,1,S,S), (B,1,S,S), (B,3,S,S) (§6.3)."""
    chosen = [items[i] for i in idx]
    n = len(chosen)
    clean = np.zeros((n, 1, canvas, canvas), np.float32)
    labels = np.zeros((n, 3, canvas, canvas), np.float32)
    target_diam = diam_mean * 2.0 ** rng.uniform(-1.0, 1.0, size=n)
    for k, it in enumerate(chosen):
        warp = place(rng, it.image.shape[-2:], (canvas, canvas),
                     scale=target_diam[k] / it.diameter)
        clean[k] = warp.apply(it.image[:1], order=1)
        labels[k] = warp.apply_labels(it.labels())
    np.maximum(clean, 0.0, out=clean)  # bilinear resampling keeps >= 0; guards rounding only
    noisy, _ = add_noise_batch(clean, noise, rng, diameters=target_diam)
    both = np.concatenate([noisy, clean], axis=1)
    imgs, lbls, _ = random_rotate_and_resize(
        list(both), list(labels), rng, rescale=target_diam / diam_mean,
        scale_range=scale_range, out_size=crop, rotate=rotate,
    )
    assert lbls is not None
    return (torch.from_numpy(imgs[:, :1].copy()), torch.from_numpy(imgs[:, 1:2].copy()),
            torch.from_numpy(lbls))


def _load_clean_set(
    cfg: RestoreTrainConfig, progress: ProgressCallback | None, t0: float
) -> tuple[list[TrainImage], list[str]]:
    """The training images (§7.2: first channel, 1/99-percentile normalised, clipped at 0 —
    the clean images ``add_noise`` expects) and the names of those dropped for too few masks."""

    def on_image(k: int, n: int) -> None:
        if progress is not None:
            progress(TrainProgress("load", 0, cfg.epochs, k, n, 0.0, {},
                                   time.perf_counter() - t0, "computing flows"))

    return load_training_set(
        find_pairs(cfg.images, cfg.masks), nchan=1, min_masks=cfg.min_train_masks,
        cache=FlowCache(cfg.flow_cache), normalize=normalize_clean, on_image=on_image,
    )


def _restore_step(
    cfg: RestoreTrainConfig,
    items: list[TrainImage],
    net: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    segmenter: torch.nn.Module,
    rng: np.random.Generator,
    diam_mean: float,
) -> Callable[[np.ndarray], dict[str, float]]:
    """One optimiser step on the images ``idx``, degraded afresh; returns the losses."""
    noise = task_noise(cfg.task)

    def step(idx: np.ndarray) -> dict[str, float]:
        noisy, clean, lbl = restore_batch(
            items, idx, rng, noise=noise, diam_mean=diam_mean, canvas=cfg.canvas,
            crop=cfg.crop, scale_range=cfg.scale_range, rotate=cfg.rotate,
        )
        net.train()
        restored = net(noisy)[0]
        losses = restoration_losses(restored, clean, lbl, segmenter, cfg.lam)
        optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()
        optimizer.step()
        return {name: float(v.detach()) for name, v in losses.items()}

    return step


def train_restore(
    cfg: RestoreTrainConfig, progress: ProgressCallback | None = None
) -> TrainResult:
    """Run the whole restoration training described by ``cfg``; returns what was written."""
    t0 = time.perf_counter()
    segmenter = load_segmenter(cfg.segmenter)
    diam_mean = float(cfg.diam_mean or segmenter.diam_mean.item())
    items, dropped = _load_clean_set(cfg, progress, t0)
    names = [it.name for it in items]
    if cfg.pretrained is None:
        net = new_net(1, cfg.nbase, RESTORE_NOUT, diam_mean, cfg.seed)
    else:
        net = pretrained_net(cfg.pretrained, nchan=1, nbase=cfg.nbase, nout=RESTORE_NOUT, diam_mean=diam_mean)
    optimizer = torch.optim.AdamW(
        [p for p in net.parameters() if p.requires_grad],
        lr=cfg.learning_rate, weight_decay=cfg.weight_decay,
    )
    settings = {**settings_dict(cfg), "diam_mean": diam_mean,
                "segmenter_sha256": sha256_file(cfg.segmenter)}
    state = start_state(net, optimizer, seed=cfg.seed, resume=cfg.resume, kind=KIND,
                        settings=settings, resume_fields=RESUME_FIELDS, image_names=names)
    plan = LoopPlan(
        kind=KIND, settings=settings, lrs=restore_lr_schedule(cfg.learning_rate, cfg.epochs),
        n_images=len(items), image_names=names, batch_size=cfg.batch_size,
        images_per_epoch=cfg.images_per_epoch, with_replacement=True,
        save_every=cfg.save_every, checkpoint=cfg.checkpoint_path,
    )
    step = _restore_step(cfg, items, net, optimizer, segmenter, state.rng, diam_mean)
    run_epochs(plan, state, step, progress)
    net.eval()
    net.save(cfg.out)
    if progress is not None:
        progress(TrainProgress("done", cfg.epochs, cfg.epochs, 0, 0, 0.0,
                               state.history[-1] if state.history else {},
                               time.perf_counter() - t0, str(cfg.out)))
    return TrainResult(
        weights=cfg.out, checkpoint=cfg.checkpoint_path, epochs=state.epochs_done,
        n_images=len(items), dropped=tuple(dropped), diam_mean=diam_mean,
        diam_labels=float(net.diam_labels.item()), history=tuple(state.history),
        seconds=time.perf_counter() - t0,
    )
