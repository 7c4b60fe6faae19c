"""Train a Cellpose segmentation net (nout 3) from image/mask pairs (spec §7.3, §7.4).

Loss ``MSE(y[:, :2], 5 flows) / 2 + BCE(y[:, 2], cellprob)``, AdamW with the warm-up/constant/
halving schedule, the reference augmentations, images with too few masks dropped, and
``diam_labels`` set to the mean training diameter (also when fine-tuning a ``pretrained`` net,
as the reference does). Writes a Cellpose v3 weight file.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from cp3rt.models.cpnet import CPnet
from cp3rt.train.augment import random_rotate_and_resize
from cp3rt.train.config import SegmentTrainConfig
from cp3rt.train.data import FlowCache, TrainImage, find_pairs, load_training_set, mean_diameter
from cp3rt.train.loop import LoopPlan, TrainResult, run_epochs, settings_dict, start_state
from cp3rt.train.losses import segmentation_loss
from cp3rt.train.progress import ProgressCallback, TrainProgress
from cp3rt.train.schedule import segment_lr_schedule
from cp3rt.train.segnet import SEG_NOUT, new_net, pretrained_net

KIND = "segment"
RESUME_FIELDS = ("nbase", "nchan", "diam_mean")


def segment_batch(
    items: list[TrainImage], idx: np.ndarray, rng: np.random.Generator, cfg: SegmentTrainConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """Augmented crops (B, nchan, S, S) and labels (B, 3, S, S) for the images ``idx``."""
    chosen = [items[i] for i in idx]
    imgs, lbls, _ = random_rotate_and_resize(
        [it.image for it in chosen], [it.labels() for it in chosen], rng,
        rescale=[it.diameter / cfg.diam_mean for it in chosen],
        scale_range=cfg.scale_range, out_size=cfg.crop,
    )
    assert lbls is not None
    return torch.from_numpy(imgs), torch.from_numpy(lbls)


def _initial_net(cfg: SegmentTrainConfig, diam_labels: float) -> CPnet:
    """Random weights, or the ``pretrained`` net's; ``diam_labels`` from this training set."""
    if cfg.pretrained is None:
        net = new_net(cfg.nchan, cfg.nbase, SEG_NOUT, cfg.diam_mean, cfg.seed)
    else:
        net = pretrained_net(cfg.pretrained, nchan=cfg.nchan, nbase=cfg.nbase, nout=SEG_NOUT,
                             diam_mean=cfg.diam_mean)
    with torch.no_grad():
        net.diam_labels.fill_(diam_labels)
    return net


def train_segment(
    cfg: SegmentTrainConfig, progress: ProgressCallback | None = None
) -> TrainResult:
    """Run the whole training described by ``cfg``; returns what was written."""
    t0 = time.perf_counter()
    pairs = find_pairs(cfg.images, cfg.masks)

    def on_image(k: int, n: int) -> None:
        if progress is not None:
            progress(TrainProgress("load", 0, cfg.epochs, k, n, 0.0, {},
                                   time.perf_counter() - t0, "computing flows"))

    items, dropped = load_training_set(
        pairs, nchan=cfg.nchan, min_masks=cfg.min_train_masks,
        cache=FlowCache(cfg.flow_cache), on_image=on_image,
    )
    names = [it.name for it in items]
    diam_labels = mean_diameter(items)
    net = _initial_net(cfg, diam_labels)
    optimizer = torch.optim.AdamW(
        [p for p in net.parameters() if p.requires_grad],
        lr=cfg.learning_rate, weight_decay=cfg.weight_decay,
    )
    settings = settings_dict(cfg)
    state = start_state(net, optimizer, seed=cfg.seed, resume=cfg.resume, kind=KIND,
                        settings=settings, resume_fields=RESUME_FIELDS, image_names=names)
    plan = LoopPlan(
        kind=KIND, settings=settings, lrs=segment_lr_schedule(cfg.learning_rate, cfg.epochs),
        n_images=len(items), image_names=names, batch_size=cfg.batch_size,
        images_per_epoch=cfg.images_per_epoch, with_replacement=False,
        save_every=cfg.save_every, checkpoint=cfg.checkpoint_path,
    )

    def step(idx: np.ndarray) -> dict[str, float]:
        x, lbl = segment_batch(items, idx, state.rng, cfg)
        net.train()
        y = net(x)[0]
        loss = segmentation_loss(y, lbl)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return {"loss": float(loss.detach())}

    run_epochs(plan, state, step, progress)
    net.eval()
    net.save(cfg.out)
    if progress is not None:
        progress(TrainProgress("done", cfg.epochs, cfg.epochs, 0, 0, 0.0,
                               state.history[-1] if state.history else {},
                               time.perf_counter() - t0, str(cfg.out)))
    return TrainResult(
        weights=cfg.out, checkpoint=cfg.checkpoint_path, epochs=state.epochs_done,
        n_images=len(items), dropped=tuple(dropped), diam_mean=cfg.diam_mean,
        diam_labels=diam_labels, history=tuple(state.history),
        seconds=time.perf_counter() - t0,
    )
