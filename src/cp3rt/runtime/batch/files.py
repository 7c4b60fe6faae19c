"""Run a Pipeline over many image files and write the outputs; used by ``cp3rt run``.

Guarantees: every output is written under a temporary name and renamed when complete; an
image whose requested outputs all exist is skipped (unless ``overwrite``), so a killed batch
resumes where it stopped; temporary files left by a killed run are removed; a bad file is
recorded as a failure (one line naming file and problem) and the batch goes on.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from cp3rt.errors import ConfigError, Cp3rtError, OutputError
from cp3rt.runtime.config import RunConfig
from cp3rt.runtime.result import STAGES

if TYPE_CHECKING:  # pragma: no cover
    from cp3rt.runtime.pipeline import Pipeline
    from cp3rt.runtime.result import Result

Status = Literal["done", "skipped", "failed"]
MASKS_SUFFIX = "_cp_masks.tif"  # Cellpose's default mask file name (§8.2)
SEG_SUFFIX = "_seg.npy"
FLOWS_SUFFIX = "_flows.tif"
RESTORED_SUFFIX = "_restored.tif"
OVERLAY_SUFFIX = "_overlay.png"


@dataclasses.dataclass(frozen=True)
class OutputOptions:
    """What to write and where. ``out_dir`` None writes next to each input image."""

    out_dir: Path | None = None
    save_flows: bool = False
    save_restored: bool = False
    save_seg: bool = False
    overlay: bool = False
    overwrite: bool = False

    def paths_for(self, image: Path) -> dict[str, Path]:
        """Output kind -> final path for one input image (masks always included)."""
        folder = Path(self.out_dir) if self.out_dir is not None else image.parent
        stem = image.stem
        for suffix in (".ome",):  # x.ome.tif -> x
            stem = stem.removesuffix(suffix)
        out = {"masks": folder / f"{stem}{MASKS_SUFFIX}"}
        if self.save_seg:
            out["seg"] = folder / f"{stem}{SEG_SUFFIX}"
        if self.save_flows:
            out["flows"] = folder / f"{stem}{FLOWS_SUFFIX}"
        if self.save_restored:
            out["restored"] = folder / f"{stem}{RESTORED_SUFFIX}"
        if self.overlay:
            out["overlay"] = folder / f"{stem}{OVERLAY_SUFFIX}"
        return out


@dataclasses.dataclass(frozen=True)
class ImageOutcome:
    """What happened to one input file."""

    path: Path
    status: Status
    n_objects: int = 0
    timings: dict[str, float] = dataclasses.field(default_factory=dict)
    outputs: tuple[Path, ...] = ()
    error: str | None = None


@dataclasses.dataclass(frozen=True)
class BatchSummary:
    outcomes: tuple[ImageOutcome, ...]
    seconds: float

    def count(self, status: Status) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    @property
    def ok(self) -> bool:
        return self.count("failed") == 0

    @property
    def n_objects(self) -> int:
        return sum(o.n_objects for o in self.outcomes)

    def stage_seconds(self) -> dict[str, float]:
        """Seconds per pipeline stage summed over the processed images (plus 'write')."""
        total = {k: 0.0 for k in (*STAGES, "write")}
        for o in self.outcomes:
            for k, v in o.timings.items():
                total[k] = total.get(k, 0.0) + v
        return total


@dataclasses.dataclass(frozen=True)
class BatchEvent:
    """Progress report: ``kind`` is 'start' (before an image), 'tiles' (inside one), 'end'."""

    kind: Literal["start", "tiles", "end"]
    index: int
    total: int
    path: Path
    done_tiles: int = 0
    total_tiles: int = 0
    outcome: ImageOutcome | None = None


def collect_inputs(inputs: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """``io.find_images`` minus files this runner writes itself (restored images, overlays),
    so that re-running on a folder that holds earlier outputs does not take them as inputs."""
    from cp3rt.runtime.io import find_images

    own = tuple(s.rsplit(".", 1)[0] for s in (RESTORED_SUFFIX, OVERLAY_SUFFIX, FLOWS_SUFFIX))
    explicit = {Path(p) for p in inputs if Path(p).is_file()}
    return [p for p in find_images(inputs) if p in explicit or not p.stem.endswith(own)]


def remove_stale_partials(final: Path) -> list[Path]:
    """Delete temporary files a killed run left for ``final`` (see cp3rt._fs.atomic_path)."""
    removed = []
    if final.parent.is_dir():
        for p in final.parent.glob(f".{final.name}.*.part*"):
            try:
                p.unlink()
                removed.append(p)
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise OutputError(f"{p}: cannot remove a stale partial file ({exc.strerror}).") from exc
    return removed


def run_batch(
    pipeline: Pipeline,
    images: Sequence[Path],
    run: RunConfig | None = None,
    outputs: OutputOptions | None = None,
    *,
    on_event: Callable[[BatchEvent], None] | None = None,
) -> BatchSummary:
    """Segment every file in ``images`` with ``pipeline`` and write the requested outputs."""
    run = run or RunConfig()
    outputs = outputs or OutputOptions()
    emit = on_event or (lambda _event: None)
    t0 = time.perf_counter()
    if not run.diameter and run.estimate_diameter:
        pipeline.size_model()  # fetch it now: a missing size model fails the batch, not each image
    results = []
    total = len(images)
    for i, image in enumerate(images):
        image = Path(image)
        emit(BatchEvent("start", i, total, image))
        outcome = process_file(pipeline, image, run, outputs, lambda d, n, i=i, image=image: emit(
            BatchEvent("tiles", i, total, image, d, n)))
        results.append(outcome)
        emit(BatchEvent("end", i, total, image, outcome=outcome))
    return BatchSummary(tuple(results), time.perf_counter() - t0)


def process_file(
    pipeline: Pipeline,
    image: Path,
    run: RunConfig,
    outputs: OutputOptions,
    progress: Callable[[int, int], None],
) -> ImageOutcome:
    """One image file: skipped when its outputs exist, else read, run and written; user errors
    and disk errors become a failed outcome (one line), so a batch goes on."""
    try:
        finals = outputs.paths_for(image)
        if pipeline.restore_net is None:  # nothing to save: must not block the skip check
            finals.pop("restored", None)
        for final in finals.values():
            remove_stale_partials(final)
        if not outputs.overwrite and all(p.is_file() for p in finals.values()):
            return ImageOutcome(image, "skipped", outputs=tuple(finals.values()))
        from cp3rt.runtime.io import read_image

        t = time.perf_counter()
        raw = read_image(image)
        t_read = time.perf_counter() - t
        result = pipeline.run(raw, run=run, progress=progress)
        t = time.perf_counter()
        written = write_outputs(image, raw, result, finals, run=run,
                                restore_type=pipeline.config.restore)
        timings = dict(result.timings)
        timings["read"] = t_read
        timings["write"] = time.perf_counter() - t
        return ImageOutcome(image, "done", result.n_objects, timings, written)
    except Cp3rtError as err:
        return ImageOutcome(image, "failed", error=_one_line(image, err))
    except OSError as err:  # disk full, permissions... while writing
        return ImageOutcome(image, "failed", error=_one_line(image, err))


def _one_line(image: Path, err: BaseException) -> str:
    text = str(err).strip().replace("\n", " ") or type(err).__name__
    return text if str(image) in text else f"{image}: {text}"


def write_outputs(
    image: Path,
    raw: np.ndarray,
    result: Result,
    finals: dict[str, Path],
    *,
    run: RunConfig,
    restore_type: str | None = None,
) -> tuple[Path, ...]:
    """Write the outputs named in ``finals`` (each atomically, by cp3rt.runtime.io); masks
    last, so that their presence means the image is complete even if the process dies."""
    from cp3rt.runtime import io as cio

    order = [k for k in finals if k != "masks"] + ["masks"]
    flat_only = sorted(k for k in ("overlay", "seg") if k in finals)
    if result.masks.ndim == 3 and flat_only:
        raise ConfigError(
            f"{image}: --{' and --'.join('save-seg' if k == 'seg' else k for k in flat_only)} "
            "only work for 2-D images, not for volumes (--do-3d / --stitch-threshold)."
        )
    written = []
    for kind in order:
        final = finals[kind]
        if kind == "masks":
            cio.write_masks_tif(final, result.masks)
        elif kind == "seg":
            cio.write_seg_npy(final, result, image_path=image, channels=run.channels,
                              restore_type=restore_type)
        elif kind == "flows":  # (3, Y, X): dY, dX, cellprob as in Cellpose's flows
            cio.write_image_tif(final, np.concatenate([result.dP, result.cellprob[None]]))
        elif kind == "restored":
            if result.restored is None:
                continue
            cio.write_image_tif(final, result.restored)
        elif kind == "overlay":
            cio.write_overlay_png(final, _overlay_base(result, raw, run), result.masks)
        written.append(final)
    return tuple(written)


def _overlay_base(result: Result, raw: np.ndarray, run: RunConfig) -> np.ndarray:
    """The image the outlines are drawn on: the restored image if any, else the segmented
    (first) channel of the input as the pipeline read it."""
    if result.restored is not None:
        return result.restored[0]
    from cp3rt.runtime.prep.axes import to_cyx

    return to_cyx(raw, channels=run.channels, channel_axis=run.channel_axis, z_axis=run.z_axis,
                  nchan=None)[0]
