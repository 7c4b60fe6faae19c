"""Reading image files into numpy arrays (spec §8.1), with one clear error per bad file."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from cp3rt.errors import Cp3rtError, InputError

TIFF_SUFFIXES = (".tif", ".tiff", ".flex")
PIL_SUFFIXES = (".png", ".jpg", ".jpeg")
IMAGE_SUFFIXES = TIFF_SUFFIXES + PIL_SUFFIXES
READABLE_SUFFIXES = IMAGE_SUFFIXES + (".npy",)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0].rstrip(".") if text else type(exc).__name__


def _read_tiff(path: Path) -> np.ndarray:
    import tifffile

    check_tiff_data(path)
    return np.asarray(tifffile.imread(path))


def check_tiff_data(path: str | os.PathLike[str]) -> None:
    """Refuse a TIFF whose pixel data is not all in the file (a header-only file, a copy cut
    short): its strips / tiles must end inside the file. Otherwise the reader allocates what the
    header claims and fills the missing part with zeros, or fails deep inside a block run."""
    import tifffile

    p = Path(path)
    size = p.stat().st_size
    try:
        with tifffile.TiffFile(p) as tif:
            need = max((_data_end(page) for page in tif.pages), default=0)
    except Cp3rtError:
        raise
    except Exception as exc:  # noqa: BLE001 - tifffile's many error types for a broken header
        raise InputError(f"{p} cannot be read as a TIFF image: {_reason(exc)}.") from exc
    if need > size:
        raise InputError(f"{p}: pixel data missing/truncated (header says {need} bytes, file has {size}); "
                         "the file was cut short: copy or export it again.")


def _data_end(page: object) -> int:
    """Where the last strip / tile of a TIFF page ends (byte offset; 0 when it names none)."""
    offsets = tuple(getattr(page, "dataoffsets", ()) or ())
    counts = tuple(getattr(page, "databytecounts", ()) or ())
    return max((int(o) + int(c) for o, c in zip(offsets, counts)), default=0)


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _check_png_depth(path: Path) -> None:
    # Pillow decodes 16-bit colour / grey+alpha PNGs as 8-bit without telling: refuse them.
    with open(path, "rb") as fh:
        head = fh.read(26)
    if head[:8] == _PNG_SIGNATURE and head[12:16] == b"IHDR" and len(head) == 26:
        depth, colour = head[24], head[25]
        if depth == 16 and colour in (2, 4, 6):
            raise InputError(
                f"{path} is a 16-bit colour PNG, which cp3rt cannot read without losing "
                "precision; save it as TIFF instead."
            )


def _read_pil(path: Path) -> np.ndarray:
    from PIL import Image

    if path.suffix.lower() == ".png":
        _check_png_depth(path)
    with Image.open(path) as im:
        im.load()
        mode = im.mode
        if mode == "1":
            im = im.convert("L")  # bilevel -> 0/255 like OpenCV, not bool
        elif mode == "P":
            im = im.convert("RGB")
        elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
            im = im.convert("RGB")
        arr = np.asarray(im)
    # Alpha is dropped and grey+alpha becomes grey RGB: the reference (OpenCV unchanged read,
    # then BGR->RGB of 3 channels) returns the same arrays.
    if mode == "RGBA":
        arr = arr[..., :3]
    elif mode == "LA":
        arr = np.repeat(arr[..., :1], 3, axis=-1)
    return np.ascontiguousarray(arr.astype(arr.dtype.newbyteorder("="), copy=False))


def _read_npy(path: Path) -> np.ndarray:
    with open(path, "rb") as fh:
        if fh.read(6) != b"\x93NUMPY":
            # np.load would fall back to unpickling, and report that instead.
            raise ValueError("no .npy header")
    try:
        arr = np.load(path, allow_pickle=False)
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise InputError(
                f"{path} holds pickled Python objects (e.g. a Cellpose _seg.npy), not a plain "
                "array; read masks from it with read_seg_npy."
            ) from exc
        raise
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "biuf":
        dtype = getattr(arr, "dtype", "?")
        raise InputError(f"{path} does not hold a numeric array (dtype {dtype}).")
    return arr


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a .tif/.tiff/.flex (tifffile), .png/.jpg/.jpeg (Pillow) or plain .npy file.

    Colour images come back channels-last (RGB; alpha dropped), grey images 2-D, TIFFs in
    their stored axis order. Any problem raises :class:`InputError` naming the file.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p} does not exist.")
    if p.is_dir():
        raise InputError(f"{p} is a folder, not an image file.")
    suffix = p.suffix.lower()
    if suffix not in READABLE_SUFFIXES:
        raise InputError(
            f"{p} has the unsupported extension '{p.suffix}'; cp3rt reads "
            f"{', '.join(READABLE_SUFFIXES)}."
        )
    if p.stat().st_size == 0:
        raise InputError(f"{p} is empty (0 bytes).")
    if suffix in TIFF_SUFFIXES:
        reader, kind = _read_tiff, "a TIFF image"
    elif suffix in PIL_SUFFIXES:
        reader, kind = _read_pil, f"a {suffix[1:].upper()} image"
    else:
        reader, kind = _read_npy, "a numpy array"
    try:
        arr = reader(p)
    except Cp3rtError:
        raise
    except Exception as exc:  # every decoder has its own exception types
        raise InputError(f"{p} cannot be read as {kind}: {_reason(exc)}.") from exc
    if arr.size == 0 or arr.ndim < 2:
        raise InputError(f"{p} holds no usable image (array shape {arr.shape}).")
    return arr


def read_masks(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a label image: any :func:`read_image` file, or the ``masks`` of a ``_seg.npy``."""
    p = Path(path)
    if p.name.endswith("_seg.npy"):
        from cp3rt.runtime.io.seg_npy import read_seg_npy

        return np.asarray(read_seg_npy(p)["masks"])
    return read_image(p)


# tifffile's axis letters -> cp3rt's: T time, Z planes, C channels (ImageJ/OME C, RGB samples S),
# Y, X; anything else (I: bare pages, Q: shape without names, ...) is '?', an undeclared axis.
_AXIS_LETTERS = {"T": "T", "Z": "Z", "C": "C", "S": "C", "Y": "Y", "X": "X"}


def read_axes(path: str | os.PathLike[str], shape: tuple[int, ...]) -> str | None:
    """What the file says each axis of its :func:`read_image` array (of ``shape``) is: a string
    of ``T Z C Y X ?`` (``?`` = the file does not say), or None when the format names no axes
    (a .npy). TIFF: tifffile's series axes (ImageJ hyperstack, OME, shaped metadata, RGB
    samples); PNG/JPEG: ``YX`` or ``YXC``."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix in PIL_SUFFIXES:
        return "YX" if len(shape) == 2 else "YXC"
    if suffix not in TIFF_SUFFIXES:
        return None
    import tifffile

    try:
        with tifffile.TiffFile(p) as tif:
            axes = tif.series[0].axes
    except Exception:  # noqa: BLE001 - read_image already read it; no axes is the safe answer
        return None
    if len(axes) != len(shape):
        return None
    return "".join(_AXIS_LETTERS.get(a, "?") for a in axes)
