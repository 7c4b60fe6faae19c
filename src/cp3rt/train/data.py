"""Training data: pair images with masks, normalise, measure diameters, compute flow targets.

Pairing: with a masks folder, ``masks/<name>`` or ``masks/<stem>_masks.<ext>`` belongs to
``images/<name>``; without one, ``<stem>_masks.<ext>`` next to the image (Cellpose's layout).
Flows come from heat diffusion (``cp3rt.runtime.dynamics.masks_to_flows``) and are cached per
mask content, in memory and optionally on disk, because they are the slow part of loading.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from cp3rt._fs import atomic_path
from cp3rt.defaults import TRAIN_MIN_DIAMETER
from cp3rt.errors import InputError
from cp3rt.runtime.dynamics.flows import masks_to_flows
from cp3rt.runtime.io.read import IMAGE_SUFFIXES, read_image, read_masks
from cp3rt.runtime.prep.normalize import normalize_image
from cp3rt.runtime.quality.metrics import diameters

MASK_TAG = "_masks"
_SKIP_TAGS = (MASK_TAG, "_flows", "_seg", "_cp_masks")
FLOW_CACHE_VERSION = 1  # bump when the flow recipe changes, so old cache files are ignored


@dataclasses.dataclass(frozen=True)
class TrainImage:
    """One training image with its targets, stored compactly (float16 flows, uint8 cellprob)."""

    name: str
    image: np.ndarray      # (C, Y, X) float32, normalised per channel
    cellprob: np.ndarray   # (Y, X) uint8, 1 inside objects
    flows: np.ndarray      # (2, Y, X) float16 unit flows (Y, X)
    masks: np.ndarray      # (Y, X) label image (for evaluation and diameters)
    diameter: float        # median object diameter, clamped to >= 5 px (§1.5)

    @property
    def n_masks(self) -> int:
        return int(np.unique(self.masks[self.masks > 0]).size)

    def labels(self) -> np.ndarray:
        """``[cellprob, flowY, flowX]`` as float32 (3, Y, X), the layout the warps expect."""
        out = np.empty((3, *self.cellprob.shape), np.float32)
        out[0] = self.cellprob
        out[1:] = self.flows
        return out


def _stem_tagless(path: Path) -> str:
    return path.name[: -len(path.suffix)] if path.suffix else path.name


def find_pairs(images: Path, masks: Path | None = None) -> list[tuple[Path, Path]]:
    """Sorted (image, mask) pairs; raises InputError for a missing folder or an unpaired image."""
    images = Path(images)
    if not images.is_dir():
        raise InputError(f"--images {images} is not a folder.")
    if masks is not None and not Path(masks).is_dir():
        raise InputError(f"--masks {masks} is not a folder.")
    pairs = []
    for img in sorted(images.iterdir()):
        stem = _stem_tagless(img)
        if img.suffix.lower() not in IMAGE_SUFFIXES or stem.endswith(_SKIP_TAGS):
            continue
        folder = Path(masks) if masks is not None else images
        candidates = [folder / img.name] if masks is not None else []
        candidates += [folder / f"{stem}{MASK_TAG}{ext}" for ext in (img.suffix, *IMAGE_SUFFIXES)]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            where = f"in {masks}" if masks is not None else f"next to it ({stem}{MASK_TAG}.tif)"
            raise InputError(f"image {img} has no mask file {where}.")
        pairs.append((img, found))
    if not pairs:
        raise InputError(f"--images {images} holds no image files ({', '.join(IMAGE_SUFFIXES)}).")
    return pairs


def as_channels(image: np.ndarray, nchan: int, source: str) -> np.ndarray:
    """(Y, X), (Y, X, C) or (C, Y, X) with C <= 4 -> (nchan, Y, X): first channels, zero-padded."""
    x = np.asarray(image)
    if x.ndim == 2:
        x = x[None]
    elif x.ndim == 3 and x.shape[-1] <= 4 < min(x.shape[:2]):
        x = np.moveaxis(x, -1, 0)
    elif not (x.ndim == 3 and x.shape[0] <= 4 < min(x.shape[1:])):
        raise InputError(
            f"{source} has shape {x.shape}; training needs a 2-D image with at most 4 channels."
        )
    out = np.zeros((nchan, *x.shape[-2:]), np.float32)
    k = min(nchan, x.shape[0])
    out[:k] = x[:k]
    return out


def normalize99(image: np.ndarray) -> np.ndarray:
    """The runtime's normalisation (§3.3), so training sees images exactly as inference will."""
    return normalize_image(image)


class FlowCache:
    """Flows keyed by the sha256 of the mask array; an optional folder keeps them across runs."""

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = Path(folder) if folder is not None else None
        self._memory: dict[str, np.ndarray] = {}

    @staticmethod
    def key(masks: np.ndarray) -> str:
        m = np.ascontiguousarray(masks)
        h = hashlib.sha256(f"v{FLOW_CACHE_VERSION}{m.shape}{m.dtype.str}".encode())
        h.update(m.tobytes())
        return h.hexdigest()

    def flows(self, masks: np.ndarray) -> np.ndarray:
        key = self.key(masks)
        if key in self._memory:
            return self._memory[key]
        path = self.folder / f"{key}.npy" if self.folder is not None else None
        flows = None
        if path is not None and path.is_file():
            try:
                flows = np.load(path, allow_pickle=False)
            except (OSError, ValueError):
                flows = None  # a damaged cache entry is recomputed and rewritten
            if flows is not None and flows.shape != (2, *masks.shape):
                flows = None
        if flows is None:
            flows = masks_to_flows(masks).astype(np.float16)
            if path is not None:
                with atomic_path(path) as tmp:
                    with open(tmp, "wb") as fh:
                        np.save(fh, flows)
        self._memory[key] = flows
        return flows


def load_image_pair(
    image_path: Path, mask_path: Path, *, nchan: int, cache: FlowCache,
    normalize: Callable[[np.ndarray], np.ndarray] = normalize99,
) -> TrainImage:
    image = as_channels(read_image(image_path), nchan, str(image_path))
    masks = np.asarray(read_masks(mask_path))
    if masks.ndim != 2 or masks.shape != image.shape[-2:]:
        raise InputError(
            f"mask {mask_path} has shape {masks.shape} but image {image_path} is "
            f"{image.shape[-2:]}; they must be the same 2-D size."
        )
    if masks.dtype.kind not in "iu":
        if masks.dtype.kind != "f" or not np.all(np.mod(masks, 1) == 0) or masks.min() < 0:
            raise InputError(f"mask {mask_path} is not an integer label image.")
    masks = masks.astype(np.int32 if masks.max(initial=0) < 2**31 else np.int64)
    return TrainImage(
        name=image_path.name,
        image=normalize(image),
        cellprob=(masks > 0).astype(np.uint8),
        flows=cache.flows(masks),
        masks=masks,
        diameter=max(TRAIN_MIN_DIAMETER, diameters(masks)),
    )


def load_training_set(
    pairs: Sequence[tuple[Path, Path]],
    *,
    nchan: int,
    min_masks: int,
    cache: FlowCache,
    normalize: Callable[[np.ndarray], np.ndarray] = normalize99,
    on_image: Callable[[int, int], None] | None = None,
) -> tuple[list[TrainImage], list[str]]:
    """Load every pair; images with fewer than ``min_masks`` objects are dropped (names returned)."""
    kept, dropped = [], []
    for n, (img, msk) in enumerate(pairs):
        item = load_image_pair(img, msk, nchan=nchan, cache=cache, normalize=normalize)
        (kept if item.n_masks >= min_masks else dropped).append(item)
        if on_image is not None:
            on_image(n + 1, len(pairs))
    if not kept:
        raise InputError(
            f"no training image has at least {min_masks} masks ({len(dropped)} dropped)."
        )
    return kept, [d.name for d in dropped]


def mean_diameter(items: Sequence[TrainImage]) -> float:
    """``diam_labels``: mean of the per-image (clamped) median diameters (§1.5)."""
    return float(np.mean([it.diameter for it in items]))
