"""``cp3rt train segment|restore``: train Cellpose v3 nets; writes Cellpose-v3 weight files.

Only flag handling and rendering here; the work is :mod:`cp3rt.train`. torch is imported inside
the commands, so ``cp3rt --help`` stays torch-free.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from cp3rt import defaults as D
from cp3rt.errors import ConfigError

_SEG_EPILOG = """
**Examples**

    cp3rt train segment --images data/train/images --masks data/train/masks --out my_nuclei --diam-mean 17
    cp3rt train segment --images data/train --out my_cyto --resume my_cyto.ckpt
    cp3rt train segment --images mine/images --masks mine/masks --out my_nuclei --pretrained cp3rt_nuclei \
        --nbase 16,32,64,128 --diam-mean 17 --lr 0.001 --epochs 60   # fine-tune a shipped net

**Notes**

- Without --masks, the mask of `NAME.tif` is `NAME_masks.tif` in the same folder.
- Images with fewer than --min-masks masks are dropped; `diam_labels` is set to the mean
  training diameter. A checkpoint `OUT.ckpt` is written every --save-every epochs.
"""

_RESTORE_EPILOG = """
**Examples**

    cp3rt train restore --task denoise --segmenter my_nuclei --images data/train/images --masks data/train/masks --out my_denoise
    cp3rt train restore --task denoise ... --lam-per 0 --lam-seg 0 --lam-rec 1   # reconstruction loss only

**Notes**

- Degradations are drawn on the fly (Poisson / blur / downsampling presets of the task).
- The segmenter stays frozen; a 2-channel segmenter is converted to 1 channel for the losses.
- After replacing a segmenter, refit its restorer to it: `--pretrained OLD_RESTORER --segmenter NEW`.
"""


def register(app: typer.Typer) -> None:
    sub = typer.Typer(
        help="Train segmentation or restoration nets (Cellpose 3 method).",
        no_args_is_help=True, rich_markup_mode="markdown",
    )
    sub.command("segment", help="Train a segmentation net from image/mask pairs.",
                epilog=_SEG_EPILOG, no_args_is_help=True)(segment)
    sub.command("restore", help="Train a restoration net through a frozen segmenter.",
                epilog=_RESTORE_EPILOG, no_args_is_help=True)(restore)
    app.add_typer(sub, name="train")


def _nbase(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ConfigError(
            f"--nbase {text!r} is not allowed: need comma-separated integers, e.g. 32,64,128,256."
        ) from None
    return values


def segment(
    images: Path = typer.Option(..., "--images", help="Folder of training images."),
    out: Path = typer.Option(..., "--out", "-o", help="Weight file to write (Cellpose v3 format)."),
    masks: Optional[Path] = typer.Option(None, "--masks", help="Folder of masks (same names); default: NAME_masks.* next to each image."),
    nbase: str = typer.Option(",".join(map(str, D.TRAIN_NBASE)), "--nbase", help="Channel counts per level after the input."),
    nchan: int = typer.Option(2, "--nchan", help="Input channels (extra ones are zeros)."),
    diam_mean: float = typer.Option(D.DIAM_MEAN_CYTO, "--diam-mean", help="Object diameter the net works at (17 for nuclei)."),
    epochs: int = typer.Option(D.TRAIN_SEG_EPOCHS, "--epochs"),
    lr: float = typer.Option(D.TRAIN_SEG_LR, "--lr", help="Peak AdamW learning rate."),
    weight_decay: float = typer.Option(D.TRAIN_WEIGHT_DECAY, "--weight-decay"),
    batch_size: int = typer.Option(D.BATCH_SIZE, "--batch-size"),
    crop: int = typer.Option(D.TILE_SIZE, "--crop", help="Training crop side (multiple of 16)."),
    min_masks: int = typer.Option(D.TRAIN_MIN_MASKS, "--min-masks"),
    images_per_epoch: Optional[int] = typer.Option(None, "--images-per-epoch"),
    seed: int = typer.Option(0, "--seed"),
    save_every: int = typer.Option(1, "--save-every", help="Checkpoint every N epochs."),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="Checkpoint file (default OUT.ckpt)."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue from this checkpoint."),
    flow_cache: Optional[Path] = typer.Option(None, "--flow-cache", help="Folder to keep computed flows in."),
    pretrained: Optional[str] = typer.Option(
        None, "--pretrained",
        help="Fine-tune: start from this model (zoo name, weight file or cp3rt ONNX) instead of random weights."),
) -> None:
    from cp3rt._lazy import require

    require("torch", "cp3rt train")
    from cp3rt.train.config import SegmentTrainConfig
    from cp3rt.train.segment import train_segment

    cfg = SegmentTrainConfig(
        images=images, out=out, masks=masks, nbase=_nbase(nbase), nchan=nchan,
        diam_mean=diam_mean, epochs=epochs, learning_rate=lr, weight_decay=weight_decay,
        batch_size=batch_size, crop=crop, min_train_masks=min_masks,
        images_per_epoch=images_per_epoch, seed=seed, checkpoint=checkpoint,
        save_every=save_every, resume=resume, flow_cache=flow_cache, pretrained=pretrained,
    )
    _render(train_segment, cfg)


def restore(
    task: str = typer.Option(..., "--task", help="denoise | deblur | upsample | oneclick."),
    segmenter: Path = typer.Option(..., "--segmenter", help="Segmentation weight file used in the losses."),
    images: Path = typer.Option(..., "--images", help="Folder of clean training images."),
    out: Path = typer.Option(..., "--out", "-o", help="Weight file to write (Cellpose v3 format)."),
    masks: Optional[Path] = typer.Option(None, "--masks", help="Folder of masks; default: NAME_masks.* next to each image."),
    nbase: str = typer.Option(",".join(map(str, D.TRAIN_NBASE)), "--nbase"),
    diam_mean: Optional[float] = typer.Option(None, "--diam-mean", help="Default: the segmenter's."),
    epochs: int = typer.Option(D.TRAIN_RESTORE_EPOCHS, "--epochs"),
    lr: float = typer.Option(D.TRAIN_RESTORE_LR, "--lr"),
    weight_decay: float = typer.Option(D.TRAIN_WEIGHT_DECAY, "--weight-decay"),
    batch_size: int = typer.Option(D.BATCH_SIZE, "--batch-size"),
    crop: int = typer.Option(D.TILE_SIZE, "--crop"),
    canvas: int = typer.Option(D.TRAIN_RESTORE_CANVAS, "--canvas", help="Side of the degradation canvas."),
    lam_per: float = typer.Option(D.TRAIN_LAM_PER, "--lam-per", help="Perceptual loss weight."),
    lam_seg: float = typer.Option(D.TRAIN_LAM_SEG, "--lam-seg", help="Segmentation loss weight."),
    lam_rec: float = typer.Option(D.TRAIN_LAM_REC, "--lam-rec", help="Reconstruction loss weight."),
    rotate: bool = typer.Option(True, "--rotate/--no-rotate"),
    min_masks: int = typer.Option(1, "--min-masks"),
    images_per_epoch: Optional[int] = typer.Option(None, "--images-per-epoch"),
    seed: int = typer.Option(0, "--seed"),
    save_every: int = typer.Option(1, "--save-every"),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint"),
    resume: Optional[Path] = typer.Option(None, "--resume"),
    flow_cache: Optional[Path] = typer.Option(None, "--flow-cache"),
    pretrained: Optional[str] = typer.Option(
        None, "--pretrained",
        help="Fine-tune: start from this restoration model (zoo name, weight file or cp3rt ONNX)."),
) -> None:
    from cp3rt._lazy import require

    require("torch", "cp3rt train")
    from cp3rt.train.config import RestoreTrainConfig
    from cp3rt.train.restore import train_restore

    cfg = RestoreTrainConfig(
        task=task, segmenter=segmenter, images=images, out=out, masks=masks,
        nbase=_nbase(nbase), diam_mean=diam_mean, epochs=epochs, learning_rate=lr,
        weight_decay=weight_decay, batch_size=batch_size, crop=crop, canvas=canvas,
        lam_per=lam_per, lam_seg=lam_seg, lam_rec=lam_rec, rotate=rotate,
        min_train_masks=min_masks, images_per_epoch=images_per_epoch, seed=seed,
        checkpoint=checkpoint, save_every=save_every, resume=resume, flow_cache=flow_cache, pretrained=pretrained,
    )
    _render(train_restore, cfg)


def _render(trainer: Any, cfg: Any) -> None:
    """Run ``trainer(cfg, progress)`` with a rich progress bar showing the latest losses."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(), TextColumn("{task.fields[losses]}"), transient=False,
    ) as bar:
        task = bar.add_task("loading", total=None, losses="")

        def progress(ev: Any) -> None:
            losses = " ".join(f"{k} {v:.4g}" for k, v in ev.losses.items()
                              if k not in ("epoch", "lr"))
            if ev.phase == "load":
                bar.update(task, description="flows", completed=ev.step, total=ev.steps)
            elif ev.phase == "step":
                bar.update(task, description=f"epoch {ev.epoch + 1}/{ev.epochs}",
                           completed=ev.step, total=ev.steps, losses=f"lr {ev.lr:.2g} {losses}")
            elif ev.phase == "epoch":
                bar.console.print(f"epoch {ev.epoch + 1}/{ev.epochs}  lr {ev.lr:.3g}  {losses}")

        result = trainer(cfg, progress)
    typer.echo(
        f"wrote {result.weights} ({result.epochs} epochs, {result.n_images} images, "
        f"diam_mean {result.diam_mean:g}, diam_labels {result.diam_labels:.3g}, "
        f"{result.seconds:.0f} s); checkpoint {result.checkpoint}"
    )
    if result.dropped:
        typer.echo(f"dropped {len(result.dropped)} images with too few masks")
