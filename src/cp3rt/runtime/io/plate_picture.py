"""A plate heat-map: one cell per well (rows A, B, ... down, columns 1, 2, ... across), coloured
by a per-well value (the object count by default) and labelled with it, so an empty, failed or
over-seeded well shows at a glance. Wells the plate does not list are grey.

Input: the per-well rows a plate run writes to ``<plate>_wells.csv`` (``batch.plates.well_table``:
dicts with ``row``, ``column`` and the value), so the picture and the CSV always agree.
Drawn with Pillow (core) and a small viridis-like palette; no matplotlib.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from cp3rt.errors import ConfigError
from cp3rt.runtime.io.pictures import BACKGROUND, TEXT, caption_font, save_png

# Anchors of a perceptually ordered palette (viridis at 0, 0.25, 0.5, 0.75, 1).
_PALETTE = np.array([(68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37)], np.float64)
_EMPTY = (70, 70, 70)


def palette(t: float) -> tuple[int, int, int]:
    """Colour of ``t`` in [0, 1] (clipped): linear between the palette's anchors."""
    x = float(np.clip(t, 0.0, 1.0)) * (len(_PALETTE) - 1)
    i = min(int(x), len(_PALETTE) - 2)
    c = _PALETTE[i] + (x - i) * (_PALETTE[i + 1] - _PALETTE[i])
    return tuple(int(round(v)) for v in c)


def _order(names: set[str]) -> list[str]:
    """Row / column names in plate order: numbers numerically, letters A..Z, AA.. by length."""
    return sorted(names, key=lambda s: (0, int(s), "") if s.isdigit() else (1, len(s), s))


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"


def heatmap_rgb(wells: Sequence[Mapping[str, object]], value: str = "objects", title: str = "") -> np.ndarray:
    """The heat-map as uint8 (Y, X, 3); see the module doc."""
    from PIL import Image, ImageDraw

    if not wells:
        raise ConfigError("a plate heat-map needs at least one well row.")
    cells = {(str(w["row"]), str(w["column"])): float(w[value]) for w in wells}  # type: ignore[arg-type]
    rows, cols = _order({r for r, _ in cells}), _order({c for _, c in cells})
    top = max(cells.values()) or 1.0
    cell, margin = 56, 44
    font, small = caption_font(18), caption_font(14)
    head = 40 if title else 8
    width = max(margin + cell * len(cols) + 16, 360)
    canvas = Image.new("RGB", (width, head + margin + cell * len(rows) + 44), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((10, 10), title, fill=TEXT, font=font)
    y0 = head + margin
    for j, c in enumerate(cols):
        draw.text((margin + j * cell + cell // 2, y0 - 10), c, fill=TEXT, font=small, anchor="ms")
    for i, r in enumerate(rows):
        draw.text((margin - 10, y0 + i * cell + cell // 2), r, fill=TEXT, font=small, anchor="rm")
        for j, c in enumerate(cols):
            box = (margin + j * cell + 2, y0 + i * cell + 2, margin + (j + 1) * cell - 2, y0 + (i + 1) * cell - 2)
            v = cells.get((r, c))
            colour = _EMPTY if v is None else palette(v / top)
            draw.rectangle(box, fill=colour)
            if v is not None:
                dark = sum(colour) > 3 * 140
                draw.text(((box[0] + box[2]) // 2, (box[1] + box[3]) // 2), _fmt(v), anchor="mm",
                          fill=(20, 20, 20) if dark else TEXT, font=small)
    _colour_bar(draw, margin, y0 + cell * len(rows) + 14, cell * max(len(cols), 4), top, value, small)
    return np.asarray(canvas)


def _colour_bar(draw, x0: int, y: int, length: int, top: float, value: str, font) -> None:  # noqa: ANN001
    for k in range(length):
        draw.line((x0 + k, y, x0 + k, y + 10), fill=palette(k / max(length - 1, 1)))
    draw.text((x0, y + 12), "0", fill=TEXT, font=font)
    draw.text((x0 + length, y + 12), f"{_fmt(top)} {value.replace('_', ' ')}", fill=TEXT, font=font, anchor="ra")


def write_plate_heatmap(path: str | os.PathLike[str], wells: Sequence[Mapping[str, object]],
                        value: str = "objects", title: str | None = None) -> Path:
    """Write the heat-map of ``value`` per well as a PNG (default title: the file's plate name)."""
    if title is None:
        title = f"{re.sub(r'_wells$', '', Path(path).stem)}: {value.replace('_', ' ')} per well"
    return save_png(path, heatmap_rgb(wells, value, title))
