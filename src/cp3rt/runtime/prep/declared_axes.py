"""What a file's axes are, as the file declares them, and what cp3rt runs from them.

``plan_axes`` turns the axis letters a reader found (``io.read.read_axes``: ImageJ hyperstack,
OME, tifffile metadata, RGB samples) into the T frames to loop over and the ``channel_axis`` /
``z_axis`` for :func:`cp3rt.runtime.prep.axes.to_cyx`. The rule it keeps: planes that are not
declared channels are never merged into one 2-D image (Cellpose's gray channel would average
them, ``nchan`` would cut them); such an input is refused with the options that apply.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from cp3rt import defaults as D
from cp3rt.errors import InputError


@dataclasses.dataclass(frozen=True)
class AxesPlan:
    """How a file's axes are run: ``frames`` (the T axis, each index one run) or None;
    ``channel_axis`` / ``z_axis`` for :func:`to_cyx`, counted in one frame's axes."""

    frames: int | None = None
    channel_axis: int | None = None
    z_axis: int | None = None


def plan_axes(
    shape: Sequence[int],
    axes: str | None,
    *,
    volume: bool,
    channel_axis: int | None = None,
    z_axis: int | None = None,
    picked_channels: bool = False,
    source: str = "the image",
) -> AxesPlan:
    """Decide, from what a file says its axes are (``axes``: letters ``T Z C Y X ?``, ``?``
    undeclared; None when the format names none), what is run: each T frame on its own, a
    declared C axis as channels, a declared Z axis as the volume's planes. Planes that are not
    declared channels are never merged into one 2-D image: a 2-D run of a Z-stack, or of a
    stack whose extra axis the file does not name, raises :class:`InputError` with the options.

    Axes the caller names (``channel_axis`` / ``z_axis``) are taken as given (no T loop).
    Without names, a 2-D array is ``YX`` and a 3-D one ending in 3 or 4 is ``YXC`` (colour).
    ``picked_channels`` (channels chosen by number, e.g. ``--chan 2 --chan2 1``): one undeclared
    axis of fewer than 10 planes in a 2-D run is the channels, as Cellpose reads it (a choice,
    not an average).
    """
    shape = tuple(int(n) for n in shape)
    if channel_axis is not None or z_axis is not None:
        return AxesPlan(None, channel_axis, z_axis)
    if axes is None or len(axes) != len(shape):
        axes = _default_axes(shape)
    extra = [(i, a) for i, a in enumerate(axes) if shape[i] > 1 and a not in "YX"]
    frames = next((i for i, a in extra if a == "T"), None)
    zs = [i for i, a in extra if a == "Z"]
    cs = [i for i, a in extra if a == "C"]
    unknown = [i for i, a in extra if a not in "TZC"]
    where = f"{source} (shape {shape}, axes {axes})"
    if (picked_channels and not volume and not cs and not zs and len(unknown) == 1
            and shape[unknown[0]] < D.CHANNEL_GUESS_MAX):
        cs, unknown = unknown, []
    if len(cs) > 1 or len(zs) > 1 or len([i for i, a in extra if a == "T"]) > 1:
        raise InputError(f"{where} names one kind of axis twice; name them with --channel-axis N "
                         "and --z-axis N (channel_axis=/z_axis= in Python).")
    if not volume and zs:
        raise InputError(
            f"{where} is a Z-stack of {shape[zs[0]]} planes, which a 2-D run would merge into one "
            "image: add --do-3d (3-D) or --stitch-threshold T (each plane in 2-D, stitched), or "
            "--channel-axis N if the planes are channels.")
    if unknown and (not volume or zs or len(unknown) > 1):
        n = shape[unknown[0]]
        raise InputError(
            f"{where} has {n} planes along an axis the file does not name, which cp3rt will not "
            "merge into one image: add --do-3d or --stitch-threshold T for a Z-stack (with "
            "--z-axis N), or --channel-axis N for channels (channel_axis=/z_axis= in Python).")

    def local(i: int | None) -> int | None:  # the axis index inside one T frame
        return None if i is None else i - (frames is not None and i > frames)

    z = zs[0] if zs else (unknown[0] if unknown else None)
    return AxesPlan(frames, local(cs[0] if cs else None), local(z) if volume else None)


def _default_axes(shape: tuple[int, ...]) -> str:
    if len(shape) == 3 and shape[-1] in (3, 4):
        return "YXC"
    return "?" * (len(shape) - 2) + "YX"
