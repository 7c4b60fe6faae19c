"""Where the labels of a huge input go, and how its outcome is recorded: shared by the 2-D
(``image_files``) and 3-D (``volume_files``) block runs.

* OME-Zarr input -> ``labels/cp3rt`` inside it (NGFF 0.4), marked complete when done, so a
  re-run skips it; a half-written group from a killed run is redone.
* TIFF or plain zarr array -> ``<stem>_cp_masks.tif`` as BigTIFF, written under a temporary
  name and renamed when complete (same resume rule as small images).
Only masks are written for such images (no _seg.npy/flows/tables: they would be as big as the
image, or need it whole, and the point is bounded memory); a 2-D one gets an overview picture
with ``--overlay`` (``image_files``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cp3rt import defaults as D
from cp3rt._fs import atomic_path
from cp3rt.errors import ConfigError
from cp3rt.runtime.batch.claims import remove_stale_partials
from cp3rt.runtime.batch.files import ImageOutcome, OutputOptions
from cp3rt.runtime.config import RunConfig

if TYPE_CHECKING:  # pragma: no cover
    from cp3rt.runtime.pipeline import Pipeline

# The per-object outputs need the whole label image in memory: refused too, not silently skipped.
_EXTRA_OUTPUTS = ("save_flows", "save_restored", "save_seg", "overlay", "table", "rois", "outlines",
                  "exclude_on_edges")


def is_ome_zarr(path: Path) -> bool:
    from cp3rt.runtime.io.ngff import read_image
    from cp3rt.runtime.io.zarr_io import zarr_module

    node = zarr_module().open(str(path), mode="r")
    return not hasattr(node, "shape") and read_image(path) is not None  # NGFF 0.4 or 0.5


def block_diameter(pipeline: Pipeline, run: RunConfig) -> float:
    return float(run.diameter) if run.diameter else float(pipeline.segment_net.diam_mean)


def refuse_extra_outputs(path: Path, outputs: OutputOptions, what: str, allowed: tuple[str, ...] = ()) -> None:
    extra = [f"--{k.replace('_', '-').removeprefix('save-')}" for k in _EXTRA_OUTPUTS
             if getattr(outputs, k) and k not in allowed]
    if extra:
        raise ConfigError(f"{path}: {', '.join(extra)} are not written for {what} processed in blocks; "
                          "only the masks are.")


def write_block_labels(
    path: Path, outputs: OutputOptions, shape: tuple[int, ...],
    segment: Callable[[Any, Path], Any], marker: Callable[[Any, Any], dict[str, Any]],
    labels_root: Path | None = None,
) -> tuple[tuple[Path, ...], Any]:
    """Create the labels of a huge input, fill them with ``segment(out, scratch_parent)`` and
    mark them complete: an OME-Zarr input gets ``labels/cp3rt`` (``marker`` gives the attributes
    written last), anything else an atomically renamed BigTIFF. (outputs, None) when already done
    and not ``outputs.overwrite``. ``labels_root``: the group that gets an OME-Zarr input's
    ``labels/`` (a read-only plate's mirror), default the input itself; the labels copy the
    input's levels, scales, units and NGFF version."""
    from cp3rt.runtime.io import zarr_io

    if path.is_dir() and is_ome_zarr(path):
        root = labels_root or path
        label_path = root / "labels" / D.LABELS_NAME
        if zarr_io.is_complete(root) and not outputs.overwrite:
            return (label_path,), None
        out = zarr_io.create_ngff_labels(root, shape, overwrite=True, image=path)
        summary = segment(out, path.parent)
        zarr_io.mark_complete(out, **marker(out, summary))
        return (label_path,), summary
    final = outputs.paths_for(path)["masks"]
    remove_stale_partials(final)
    if final.is_file() and not outputs.overwrite:
        return (final,), None
    with atomic_path(final) as tmp:
        out = zarr_io.create_bigtiff_labels(tmp, shape)
        summary = segment(out, final.parent)
        out.flush()
        del out  # close the memmap before the rename
    return (final,), summary


def outcome_of(path: Path, written: tuple[Path, ...], summary: Any, seconds: float, diameter: float) -> ImageOutcome:
    """``summary``: a plane or volume block summary (its ``n_objects``), None when skipped;
    ``diameter``: the one every block was segmented at."""
    if summary is None:
        return ImageOutcome(path, "skipped", outputs=written)
    return ImageOutcome(path, "done", summary.n_objects, {"segment": seconds}, written, diameter=float(diameter))


def failed_outcome(path: Path, err: BaseException) -> ImageOutcome:
    text = str(err).strip().replace("\n", " ") or type(err).__name__
    return ImageOutcome(path, "failed", error=text if str(path) in text else f"{path}: {text}")
