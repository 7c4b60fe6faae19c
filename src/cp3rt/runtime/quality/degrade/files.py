"""Degrade image files into an output folder with a JSON record (library side of
``cp3rt degrade``)."""

from __future__ import annotations

import datetime as _dt
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cp3rt._version import __version__
from cp3rt.errors import Cp3rtError, Cp3rtWarning, InputError, OutputError
from cp3rt.runtime.io.out_dir import check_output_dir
from cp3rt.runtime.io.read import read_image
from cp3rt.runtime.io.write import write_image_tif, write_json
from cp3rt.runtime.prep.axes import check_real_dtype
from cp3rt.runtime.prep.normalize import check_finite, check_float32_range
from cp3rt.runtime.quality.degrade.ops import normalize_clean
from cp3rt.runtime.quality.degrade.params import DIAMETER, Noise, check_run
from cp3rt.runtime.quality.degrade.synth import AppliedNoise, add_noise_batch

RECORD_NAME = "cp3rt_degrade.json"
MAX_CHANNELS = 4  # a 3-D image with a side this small is read as channels, not as a stack

Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class DegradeRun:
    """Outputs of one run: written images (in input order), what each got, the files that
    failed as (input, one-line reason), and the record."""

    outputs: tuple[Path, ...]
    applied: tuple[AppliedNoise, ...]
    record: Path
    failed: tuple[tuple[Path, str], ...] = ()
    warnings: tuple[tuple[Path, str], ...] = ()  # (input, one line) for each written image

    @property
    def ok(self) -> bool:
        return not self.failed


def _to_cyx(image: np.ndarray, path: Path) -> tuple[np.ndarray, str]:
    if image.ndim == 2:
        return image[None], "yx"
    if image.ndim == 3 and image.shape[-1] <= MAX_CHANNELS < min(image.shape[:2]):
        return np.moveaxis(image, -1, 0), "yxc"
    if image.ndim == 3 and image.shape[0] <= MAX_CHANNELS < min(image.shape[1:]):
        return image, "cyx"
    raise InputError(
        f"{path} has shape {image.shape}; degrade needs a 2-D image with at most "
        f"{MAX_CHANNELS} channels (Z-stacks and time series are not supported)."
    )


def _from_cyx(image: np.ndarray, layout: str) -> np.ndarray:
    if layout == "yx":
        return image[0]
    return np.moveaxis(image, 0, -1) if layout == "yxc" else image


def _plan_outputs(inputs: Sequence[Path], out_dir: Path) -> list[Path]:
    outputs: list[Path] = []
    seen: dict[Path, Path] = {}
    for src in inputs:
        dst = out_dir / f"{src.stem}.tif"
        if dst.resolve() == src.resolve():
            raise OutputError(f"Writing {dst} would overwrite its input; choose another --out.")
        if dst in seen:
            raise OutputError(
                f"{seen[dst]} and {src} would both be written to {dst}; rename one of them."
            )
        seen[dst] = src
        outputs.append(dst)
    return outputs


def degrade_files(
    inputs: Sequence[str | os.PathLike[str]],
    noise: Noise,
    out_dir: str | os.PathLike[str],
    seed: int = 0,
    diameter: float = DIAMETER,
    noise_name: str | None = None,
    command: str | None = None,
    progress: Progress | None = None,
) -> DegradeRun:
    """Read each image, normalise it (1/99 percentiles, clip >= 0), degrade it and write
    ``out_dir/<stem>.tif`` (float32, same axis order) plus ``out_dir/cp3rt_degrade.json``.

    Everything that can be checked without reading an image (seed, diameter, blur width, output
    names) is checked first (ConfigError / OutputError). A file that cannot be read or degraded
    is recorded in ``failed`` with one line naming it, and the run goes on. Each image is written
    under a temporary name and renamed; the record is rewritten after every image (``complete``
    false until the end), so an interrupted run leaves a record of what it wrote.

    Image ``i`` uses its own generator from ``SeedSequence(seed).spawn``: the same seed and
    input list give the same files.
    """
    paths = [Path(p) for p in inputs]
    if not paths:
        raise InputError("No input image was given.")
    check_run(noise, seed=seed, diameter=diameter)
    out = check_output_dir(out_dir)
    outputs = _plan_outputs(paths, out)
    children = np.random.SeedSequence(seed).spawn(len(paths))
    header = _record_header(noise, seed, diameter, noise_name, command)
    written: list[Path] = []
    applied: list[AppliedNoise] = []
    entries: list[dict[str, Any]] = []
    failed: list[tuple[Path, str]] = []
    notes: list[tuple[Path, str]] = []
    record = out / RECORD_NAME

    def save(complete: bool) -> Path:
        return write_json(record, {**header, "complete": complete, "images": entries,
                                   "failed": [{"input": str(p), "error": e} for p, e in failed]})

    for i, (src, dst) in enumerate(zip(paths, outputs)):
        try:
            entry, plan = _degrade_one(src, dst, noise, np.random.default_rng(children[i]),
                                       diameter)
        except (Cp3rtError, OSError, ValueError, MemoryError) as err:
            failed.append((src, _one_line(src, err)))
        else:
            written.append(dst)
            applied.append(plan)
            entries.append(entry)
            notes.extend((src, line) for line in entry["warnings"])
        save(complete=False)
        if progress is not None:
            progress(i + 1, len(paths), src.name)
    return DegradeRun(tuple(written), tuple(applied), save(complete=True), tuple(failed),
                      tuple(notes))


def _record_header(noise: Noise, seed: int, diameter: float, noise_name: str | None,
                   command: str | None) -> dict[str, Any]:
    """What the run record says about the whole run (written before every image's entry)."""
    return {
        "tool": "cp3rt degrade", "cp3rt_version": __version__,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command, "seed": int(seed), "diameter": float(diameter),
        "noise_name": noise_name, "noise": noise.to_dict(),
        "normalisation": "per channel 1/99 percentiles to 0/1, negatives clipped to 0",
    }


def _degrade_one(src: Path, dst: Path, noise: Noise, rng: np.random.Generator,
                 diameter: float) -> tuple[dict[str, Any], AppliedNoise]:
    raw = read_image(src)
    check_real_dtype(raw, str(src))
    check_float32_range(raw, str(src))
    cyx, layout = _to_cyx(raw, src)
    check_finite(cyx, str(src))
    with warnings.catch_warnings(record=True) as caught:  # degrade runs one image at a time
        warnings.simplefilter("always", Cp3rtWarning)
        clean = normalize_clean(cyx, name=str(src))
    notes = [str(w.message) for w in caught if issubclass(w.category, Cp3rtWarning)]
    for w in caught:  # anything else goes on to the caller's filters
        if not issubclass(w.category, Cp3rtWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    try:
        noisy, plan = add_noise_batch(clean[None], noise, rng, diameter)
    except InputError as err:
        raise InputError(f"{src}: {err}") from err
    write_image_tif(dst, _from_cyx(noisy[0], layout))
    entry = {"input": str(src), "output": str(dst), "shape_cyx": list(cyx.shape),
             "layout": layout, "applied": plan[0].to_dict(), "warnings": notes}
    return entry, plan[0]


def _one_line(src: Path, err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    if not isinstance(err, Cp3rtError):
        text = f"cannot be degraded ({type(err).__name__}: {text})"
    return text if str(src) in text else f"{src}: {text}"
