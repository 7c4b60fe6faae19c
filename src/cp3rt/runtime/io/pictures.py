"""Pictures a person looks at instead of reading numbers: a result overlay that says what it
shows (object count, diameter, model; raw beside restored with ``--restore``), an overview of a
huge image's labels (every n-th pixel, read lazily) and an evaluation picture of matched /
missed / extra objects.

Drawn with numpy and Pillow (a core dependency; its bundled default font, no matplotlib).
Every picture is a 1/99-percentile-normalised image (as ``render.write_overlay_png``) with a
caption strip on top; images under ``MIN_WIDTH`` px wide are enlarged by a whole factor
(nearest neighbour) so outlines and text stay legible, and the caption is never cut: the
canvas widens to fit it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cp3rt.errors import ConfigError
from cp3rt.runtime.io.render import display_rgb, masks_to_outlines
from cp3rt.runtime.io.write import output_path

MIN_WIDTH = 320  # smaller pictures are enlarged by a whole factor up to this
MAX_SIDE = 2048  # ...as long as no side exceeds this
BACKGROUND = (24, 24, 24)
OUTLINE = (255, 64, 64)
TEXT = (240, 240, 240)
# Evaluation classes: matched predictions, missed true objects (FN), extra predictions (FP).
MATCHED, MISSED, EXTRA = (60, 200, 90), (230, 40, 200), (250, 200, 30)
Caption = Sequence[str | tuple[str, tuple[int, int, int]]]  # a line of text, or (text, colour)


def caption_font(size: int) -> Any:
    """Pillow's default font at ``size`` px (scalable from Pillow 10.1), for captions and legends."""
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def enlarge_factor(shape: tuple[int, int]) -> int:
    """Whole factor that brings a (Y, X) picture to ``MIN_WIDTH`` wide, no side over ``MAX_SIDE``."""
    want = -(-MIN_WIDTH // max(shape[1], 1))
    room = MAX_SIDE // max(shape)
    return max(1, min(want, room))


def _enlarge(rgb: np.ndarray, factor: int) -> np.ndarray:
    return rgb if factor == 1 else np.repeat(np.repeat(rgb, factor, axis=0), factor, axis=1)


def compose(panels: Sequence[np.ndarray], caption: Caption, labels: Sequence[str] = ()) -> np.ndarray:
    """Panels (uint8 (Y, X, 3), same height) side by side under a caption strip; ``labels``
    are written in each panel's top-left corner. Returns uint8 (Y, X, 3)."""
    from PIL import Image, ImageDraw

    gap = 4 if len(panels) > 1 else 0
    width = sum(p.shape[1] for p in panels) + gap * (len(panels) - 1)
    size = int(np.clip(max(width, MIN_WIDTH) // 45, 12, 28))
    font = caption_font(size)
    lines = [(c, TEXT) if isinstance(c, str) else c for c in caption]
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    text_w = max((probe.textlength(t, font=font) for t, _ in lines), default=0)
    strip = (size + 6) * len(lines) + 8
    canvas = Image.new("RGB", (int(max(width, text_w + 2 * size)), strip + panels[0].shape[0]), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    for i, (text, colour) in enumerate(lines):
        draw.text((size // 2, 4 + i * (size + 6)), text, fill=colour, font=font)
    x = 0
    for k, panel in enumerate(panels):
        canvas.paste(Image.fromarray(panel), (x, strip))
        if k < len(labels) and labels[k]:
            box = draw.textbbox((x + 4, strip + 4), labels[k], font=font)
            draw.rectangle((box[0] - 3, box[1] - 3, box[2] + 3, box[3] + 3), fill=BACKGROUND)
            draw.text((x + 4, strip + 4), labels[k], fill=TEXT, font=font)
        x += panel.shape[1] + gap
    return np.asarray(canvas)


def outlined(image: Any, masks: np.ndarray, factor: int, colour: tuple[int, int, int] = OUTLINE) -> np.ndarray:
    """The display RGB of ``image`` ((Y, X), (Y, X, C)), enlarged by ``factor``, with the
    outlines of ``masks`` drawn at the enlarged size (one screen pixel wide)."""
    rgb = _enlarge(display_rgb(np.asarray(image)), factor)
    rgb[masks_to_outlines(_enlarge(masks, factor))] = colour
    return rgb


def save_png(path: str | os.PathLike[str], rgb: np.ndarray) -> Path:
    """Write a uint8 RGB array as a PNG, atomically."""
    from PIL import Image

    with output_path(path) as tmp:
        Image.fromarray(rgb).save(tmp, format="PNG")
    return Path(path)


def result_caption(n_objects: int, *, diameter: float | None = None, model: str | None = None,
                   restore: str | None = None, name: str | None = None) -> list[str]:
    """The lines written above a result picture."""
    first = f"{n_objects} object{'s' if n_objects != 1 else ''}"
    if name:
        first = f"{name}: {first}"
    params = []
    if diameter:
        params.append(f"diameter {diameter:.1f} px")
    if model:
        params.append(f"model {model}")
    if restore:
        params.append(f"restore {restore}")
    return [first, "  ".join(params)] if params else [first]


def write_result_picture(path: str | os.PathLike[str], image: Any, masks: Any, caption: Caption,
                         raw: Any = None) -> Path:
    """Outlines of ``masks`` on ``image`` under ``caption``; with ``raw`` (the image before
    restoration, same height and width) the raw image is shown on the left, ``image`` (the
    restored one) on the right, both outlined."""
    m = np.asarray(masks)
    shown = [np.asarray(x) for x in ((raw, image) if raw is not None else (image,))]
    for x in shown:
        if m.ndim != 2 or x.shape[:2] != m.shape:
            raise ConfigError(f"image has shape {x.shape} and masks {m.shape}; a result picture needs a 2-D "
                              "label image and images of the same height and width ((Y, X) or (Y, X, C)).")
    factor = enlarge_factor(m.shape)
    panels = [outlined(x, m, factor) for x in shown]
    labels = ("raw", "restored") if raw is not None else ()
    return save_png(path, compose(panels, caption, labels))


def match_picture(gt: np.ndarray, pred: np.ndarray, matched: np.ndarray, missed: np.ndarray,
                  extra: np.ndarray, image: Any = None) -> np.ndarray:
    """RGB of an evaluation: matched predictions green, missed true objects (false negatives)
    magenta, extra predictions (false positives) yellow; filled at half strength over ``image``
    (or a dark background), outlined at full strength. ``matched`` / ``extra`` hold prediction
    labels, ``missed`` true labels."""
    factor = enlarge_factor(gt.shape)
    base = display_rgb(np.asarray(image)) // 2 if image is not None else np.full((*gt.shape, 3), 30, np.uint8)
    rgb = _enlarge(base, factor).astype(np.float32)
    g, p = _enlarge(gt, factor), _enlarge(pred, factor)
    layers = ((p, matched, MATCHED), (p, extra, EXTRA), (g, missed, MISSED))
    for labels, chosen, colour in layers:
        inside = np.isin(labels, chosen) & (labels > 0)
        rgb[inside] = 0.5 * rgb[inside] + 0.5 * np.asarray(colour, np.float32)
    out = rgb.astype(np.uint8)
    for labels, chosen, colour in layers:
        edge = masks_to_outlines(np.where(np.isin(labels, chosen), labels, 0))
        out[edge] = colour
    return out


EVAL_LEGEND = ("matched (true positives)", "missed (false negatives)", "extra (false positives)")


def write_match_picture(path: str | os.PathLike[str], gt: Any, pred: Any, matched: Any, missed: Any,
                        extra: Any, *, title: str, threshold: float, image: Any = None,
                        legend: Sequence[str] = EVAL_LEGEND) -> Path:
    """:func:`match_picture` under a caption with the counts (named by ``legend``: matched,
    only in ``gt``, only in ``pred``), written as a PNG."""
    gt, pred = np.asarray(gt), np.asarray(pred)
    if gt.shape != pred.shape or gt.ndim != 2:
        raise ConfigError(f"ground truth has shape {gt.shape} and prediction {pred.shape}; an evaluation "
                          "picture needs two 2-D label images of one shape.")
    rgb = match_picture(gt, pred, np.asarray(matched), np.asarray(missed), np.asarray(extra), image)
    caption = [f"{title} (IoU >= {threshold:g})",
               (f"{legend[0]} {len(matched)}", MATCHED), (f"{legend[1]} {len(missed)}", MISSED),
               (f"{legend[2]} {len(extra)}", EXTRA)]
    return save_png(path, compose([rgb], caption))


def _labelled(panel: np.ndarray, text: str) -> np.ndarray:
    """``panel`` with ``text`` in its top-left corner on a dark box."""
    from PIL import Image, ImageDraw

    im = Image.fromarray(panel)
    draw = ImageDraw.Draw(im)
    font = caption_font(int(np.clip(panel.shape[1] // 16, 12, 24)))
    box = draw.textbbox((4, 4), text, font=font)
    draw.rectangle((box[0] - 3, box[1] - 3, box[2] + 3, box[3] + 3), fill=BACKGROUND)
    draw.text((4, 4), text, fill=TEXT, font=font)
    return np.asarray(im)


def volume_planes(n_planes: int, most: int = 6) -> list[int]:
    """Up to ``most`` Z indices spread evenly over a stack, first and last included."""
    return sorted({int(round(z)) for z in np.linspace(0, n_planes - 1, min(most, n_planes))})


def write_volume_picture(path: str | os.PathLike[str], volume: Any, masks: Any, caption: Caption,
                         most: int = 6) -> Path:
    """A 3-D result as a montage of up to ``most`` Z planes (rows of three), each outlined and
    labelled with its Z index, under ``caption``."""
    v, m = np.asarray(volume), np.asarray(masks)
    if m.ndim != 3 or v.shape[:3] != m.shape:
        raise ConfigError(f"volume has shape {v.shape} and masks {m.shape}; a volume picture needs (Z, Y, X) "
                          "masks and a volume of the same (Z, Y, X).")
    zs = volume_planes(m.shape[0], most)
    factor = enlarge_factor(m.shape[1:]) if len(zs) == 1 else 1
    panels = [_labelled(outlined(v[z], m[z], factor), f"z={z}") for z in zs]
    blank = np.full_like(panels[0], BACKGROUND[0])
    rows = []
    for i in range(0, len(panels), 3):
        row = panels[i:i + 3] + [blank] * (min(3, len(panels)) - len(panels[i:i + 3]))
        rows.append(np.concatenate([np.pad(p, ((0, 4), (0, 4), (0, 0)), constant_values=BACKGROUND[0]) for p in row],
                                   axis=1))
    return save_png(path, compose([np.concatenate(rows, axis=0)], caption))


def overview_stride(shape_yx: Sequence[int], max_side: int | None = None) -> int:
    """Every how many pixels an overview samples so that no side exceeds ``max_side`` (``MAX_SIDE``)."""
    return max(1, -(-max(int(n) for n in shape_yx) // (max_side or MAX_SIDE)))


def write_overview_picture(path: str | os.PathLike[str], image: Any, labels: Any, caption: Caption) -> Path:
    """Outlines of a huge image's labels on the image, both read lazily at every n-th pixel
    (``overview_stride``; labels by nearest sample, never blended), so memory stays bounded by
    the picture. ``image``: sliceable (Y, X) or (C, Y, X); ``labels``: sliceable (Y, X)."""
    ly, lx = labels.shape[-2:]
    step = overview_stride((ly, lx))
    lab = np.asarray(labels[::step, ::step])
    img = np.asarray(image[..., ::step, ::step])
    if img.ndim == 3:  # (C, Y, X) -> (Y, X, C) for display
        img = np.moveaxis(img, 0, -1)
    if step > 1:
        caption = [*caption, f"overview: 1 in {step} pixels per axis ({lab.shape[1]} x {lab.shape[0]} of {lx} x {ly})"]
    return save_png(path, compose([outlined(img, lab, enlarge_factor(lab.shape))], caption))
