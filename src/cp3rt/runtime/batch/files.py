"""Run a Pipeline over many image files and write the outputs; used by ``cp3rt run``.

Guarantees: every output is written under a temporary name and renamed when complete; an
image whose requested outputs all exist is skipped (unless ``overwrite``), so a killed batch
resumes where it stopped; an image is computed only by the run holding its claim
(``batch.claims``), so two runs on one folder share the work and only a dead run's temporary
files are removed; a bad file, or anything unexpected while one image runs, is recorded as
that image's failure (one line naming file and problem; the traceback in ``detail``) and the
batch goes on; a set ``Cancel`` (``batch.cancel``) stops it between images.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from cp3rt.errors import Cp3rtError
from cp3rt.runtime.batch.cancel import Cancel, Cancelled, is_cancelled
from cp3rt.runtime.batch.claims import clear_stale_lock, holder, remove_stale_partials, try_claim
from cp3rt.runtime.config import RunConfig
from cp3rt.runtime.result import STAGES

if TYPE_CHECKING:  # pragma: no cover
    from cp3rt.runtime.pipeline import ImageRunner, Pipeline

Status = Literal["done", "skipped", "failed", "claimed"]  # claimed: another live run has it
MASKS_SUFFIX = "_cp_masks.tif"  # Cellpose's default mask file name (§8.2)
SEG_SUFFIX = "_seg.npy"
FLOWS_SUFFIX = "_flows.tif"  # Cellpose's name: the RGB flow picture (uint8 Y, X, 3)
DP_SUFFIX = "_dP.tif"  # Cellpose's name for the raw flows: float32 (dY, dX)
CELLPROB_SUFFIX = "_cellprob.tif"  # the raw cell probability (logits), float32
RESTORED_SUFFIX = "_restored.tif"
OVERLAY_SUFFIX = "_overlay.png"
OBJECTS_SUFFIX = "_cp_objects"  # + .csv / .parquet: the per-object table (io.objects_table)
ROIS_SUFFIX = "_rois.zip"  # Cellpose's save_rois name: an ImageJ/Fiji ROI set
OUTLINES_SUFFIX = "_cp_outlines.txt"  # Cellpose's --save_txt name


@dataclasses.dataclass(frozen=True)
class OutputOptions:
    """What to write and where. ``out_dir`` None writes next to each input image; with
    ``mirror_root`` (set by ``run_inputs`` when stems collide across folders, see
    ``batch.out_paths``) an image's outputs go to ``out_dir / <its folder relative to it>``."""

    out_dir: Path | None = None
    mirror_root: Path | None = None
    save_flows: bool = False
    save_restored: bool = False
    save_seg: bool = False
    overlay: bool = False
    overwrite: bool = False
    table: str | None = None  # 'csv' | 'parquet': a per-object table (io.objects_table)
    rois: bool = False  # <stem>_rois.zip for Fiji's ROI Manager
    outlines: bool = False  # <stem>_cp_outlines.txt for ImageJ / QuPath
    exclude_on_edges: bool = False  # drop objects touching the border before writing anything

    def paths_for(self, image: Path) -> dict[str, Path]:
        """Output kind -> final path for one input image (masks always included)."""
        folder = self._folder(image)
        stem = image.stem
        for suffix in (".ome",):  # x.ome.tif -> x
            stem = stem.removesuffix(suffix)
        out = {"masks": folder / f"{stem}{MASKS_SUFFIX}"}
        if self.save_seg:
            out["seg"] = folder / f"{stem}{SEG_SUFFIX}"
        if self.save_flows:
            out["flows"] = folder / f"{stem}{FLOWS_SUFFIX}"
            out["dP"] = folder / f"{stem}{DP_SUFFIX}"
            out["cellprob"] = folder / f"{stem}{CELLPROB_SUFFIX}"
        if self.save_restored:
            out["restored"] = folder / f"{stem}{RESTORED_SUFFIX}"
        if self.overlay:
            out["overlay"] = folder / f"{stem}{OVERLAY_SUFFIX}"
        if self.table:
            out["table"] = folder / f"{stem}{OBJECTS_SUFFIX}.{self.table}"
        if self.rois:
            out["rois"] = folder / f"{stem}{ROIS_SUFFIX}"
        if self.outlines:
            out["outlines"] = folder / f"{stem}{OUTLINES_SUFFIX}"
        return out

    def _folder(self, image: Path) -> Path:
        if self.out_dir is None:
            return image.parent
        if self.mirror_root is None:
            return Path(self.out_dir)
        try:
            return Path(self.out_dir) / Path(os.path.abspath(image.parent)).relative_to(self.mirror_root)
        except ValueError:  # not under the root (an image the plan never saw): flat
            return Path(self.out_dir)


@dataclasses.dataclass(frozen=True)
class ImageOutcome:
    """What happened to one input file."""

    path: Path
    status: Status
    n_objects: int = 0
    timings: dict[str, float] = dataclasses.field(default_factory=dict)
    outputs: tuple[Path, ...] = ()
    error: str | None = None
    detail: str | None = None  # the traceback of an unexpected error (the CLI shows it with -v)
    note: str | None = None  # e.g. 'done by another run', 'claimed by pid 12 on host, since ...'
    diameter: float | None = None  # the object diameter segmentation used, px (given or estimated)


@dataclasses.dataclass(frozen=True)
class BatchSummary:
    outcomes: tuple[ImageOutcome, ...]
    seconds: float
    not_started: int = 0  # images left when a Cancel stopped the batch (a huge one abandoned counts)

    def count(self, status: Status) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    @property
    def ok(self) -> bool:
        return self.count("failed") == 0

    @property
    def n_objects(self) -> int:
        return sum(o.n_objects for o in self.outcomes)

    def diameters(self) -> list[float]:
        """The diameters (px) the images computed in this run were segmented at."""
        return [o.diameter for o in self.outcomes if o.diameter is not None]

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

    own = tuple(s.rsplit(".", 1)[0]
                for s in (RESTORED_SUFFIX, OVERLAY_SUFFIX, FLOWS_SUFFIX, DP_SUFFIX, CELLPROB_SUFFIX))
    explicit = {Path(p) for p in inputs if Path(p).is_file()}
    return [p for p in find_images(inputs) if p in explicit or not p.stem.endswith(own)]


def run_batch(
    pipeline: Pipeline,
    images: Sequence[Path],
    run: RunConfig | None = None,
    outputs: OutputOptions | None = None,
    *,
    on_event: Callable[[BatchEvent], None] | None = None,
    cancel: Cancel | None = None,
) -> BatchSummary:
    """Segment every file in ``images`` with ``pipeline`` and write the requested outputs;
    ``cancel`` stops it between images."""
    run = run or RunConfig()
    outputs = outputs or OutputOptions()
    emit = on_event or (lambda _event: None)
    t0 = time.perf_counter()
    if not run.diameter and run.estimate_diameter:
        pipeline.size_model()  # fetch it now: a missing size model fails the batch, not each image
    results = []
    total = len(images)
    for i, image in enumerate(images):
        if is_cancelled(cancel):
            break
        image = Path(image)
        emit(BatchEvent("start", i, total, image))
        outcome = process_file(pipeline, image, run, outputs, lambda d, n, i=i, image=image: emit(
            BatchEvent("tiles", i, total, image, d, n)))
        results.append(outcome)
        emit(BatchEvent("end", i, total, image, outcome=outcome))
    return BatchSummary(tuple(results), time.perf_counter() - t0, total - len(results))


_CURRENT = threading.local()


def current_image() -> Path | None:
    """The input this thread is processing inside ``process_file`` (None outside): lets a
    caller's ``warnings.showwarning`` name the file a warning is about, from any worker thread."""
    return getattr(_CURRENT, "image", None)


def process_file(
    pipeline: ImageRunner,
    image: Path,
    run: RunConfig,
    outputs: OutputOptions,
    progress: Callable[[int, int], None],
) -> ImageOutcome:
    """One image file: skipped when its outputs exist, 'claimed' when another live run is on
    it, else claimed, read, run and written. User errors, disk errors and anything unexpected
    become a failed outcome (one line), so a batch goes on."""
    _CURRENT.image = image
    try:
        finals = outputs.paths_for(image)
        if pipeline.restore_net is None:  # nothing to save: must not block the skip check
            finals.pop("restored", None)
        if _complete(finals, outputs):
            clear_stale_lock(finals["masks"])  # a run killed after its last write leaves one
            return ImageOutcome(image, "skipped", outputs=tuple(finals.values()))
        claim = try_claim(finals["masks"])
        if claim is None:
            return claimed_outcome(image, finals["masks"])
        with claim:
            if _complete(finals, outputs):  # another run finished it since we looked
                return ImageOutcome(image, "skipped", outputs=tuple(finals.values()), note="done by another run")
            for final in finals.values():  # ours to remove: whoever wrote them held the claim and is gone
                remove_stale_partials(final)
            return _compute(pipeline, image, run, outputs, finals, progress)
    except Cancelled:
        raise
    except (Cp3rtError, OSError) as err:  # bad input, disk full, permissions...
        return ImageOutcome(image, "failed", error=_one_line(image, err))
    except Exception as err:  # noqa: BLE001 - a bug or an exhausted machine: this image's failure
        return unexpected_outcome(image, err)
    finally:
        _CURRENT.image = None


def _complete(finals: dict[str, Path], outputs: OutputOptions) -> bool:
    return not outputs.overwrite and all(p.is_file() for p in finals.values())


def _compute(pipeline: ImageRunner, image: Path, run: RunConfig, outputs: OutputOptions,
             finals: dict[str, Path], progress: Callable[[int, int], None]) -> ImageOutcome:
    from cp3rt.runtime.batch.image_outputs import write_outputs
    from cp3rt.runtime.io import read_image

    t = time.perf_counter()
    raw = read_image(image)
    t_read = time.perf_counter() - t
    from cp3rt.runtime.batch.frames import run_file

    result = run_file(pipeline, image, raw, run, progress)  # axes as the file declares them
    t = time.perf_counter()
    if outputs.exclude_on_edges:
        from cp3rt.runtime.batch.object_outputs import without_edge_objects

        result = without_edge_objects(result)
    written = write_outputs(image, raw, result, finals, run=run, restore_type=pipeline.config.restore,
                            model=pipeline.config.segment)
    timings = dict(result.timings)
    timings["read"] = t_read
    timings["write"] = time.perf_counter() - t
    return ImageOutcome(image, "done", result.n_objects, timings, written, diameter=float(result.diameter))


def claimed_outcome(image: Path, key: Path) -> ImageOutcome:
    """``image`` is being computed by another live run (which holds ``key``'s claim)."""
    return ImageOutcome(image, "claimed", outputs=(key,), note=f"claimed by {holder(key)}")


def unexpected_outcome(image: Path, err: BaseException) -> ImageOutcome:
    """An error outside cp3rt's hierarchy (MemoryError, a library's ValueError...) as one line
    naming the file and the error type; the traceback goes to ``detail``."""
    text = f"unexpected {type(err).__name__}: {str(err).strip() or 'no message'}"
    detail = "".join(traceback.format_exception(type(err), err, err.__traceback__))
    return ImageOutcome(image, "failed", error=_one_line(image, RuntimeError(text)) + " (-v shows the traceback)",
                        detail=detail)


def _one_line(image: Path, err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if str(image) in text else f"{image}: {text}"
