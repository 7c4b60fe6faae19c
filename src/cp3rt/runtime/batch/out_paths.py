"""Where a batch's outputs go, decided once before any work (after ``io.out_dir.check_output_dir``:
``--out`` must be a folder cp3rt can write): ``plan_outputs`` (no two inputs may ever write the
same output file).

The rule for inputs whose outputs would collide (``<stem>_cp_masks.tif`` and the other kinds
all derive from the stem):

* stems that collide only across folders (``d1/x.tif`` + ``d2/x.tif`` with one ``--out``):
  the outputs mirror the input tree under ``--out``, relative to the inputs' common folder
  (``out/d1/x_cp_masks.tif``, ``out/d2/x_cp_masks.tif``). Flat ``--out`` stays the layout
  when nothing collides, so existing runs keep resuming where they wrote.
* stems that collide inside one folder (``img.png`` + ``img.jpg``, ``x.tif`` + ``x.ome.tif``),
  or an output that would overwrite an input: refused before any work, naming the inputs.
  Renaming outputs (``img_png_cp_masks.tif``) would break the Cellpose naming that other tools
  match masks to images by, so the user chooses which file to run (or renames one).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

from cp3rt.errors import ConfigError
from cp3rt.runtime.batch.files import OutputOptions


def plan_outputs(items: Sequence[Path], outputs: OutputOptions) -> OutputOptions:
    """``outputs``, mirroring the input tree under ``out_dir`` when stems collide across
    folders; :class:`ConfigError` when they collide inside one folder (see the module doc)."""
    stores = [Path(p) for p in items if _writes_inside(Path(p))]
    _check_stores(stores, outputs)
    files = [Path(p) for p in items if Path(p) not in stores]
    if _clashes(files, outputs) and outputs.out_dir is not None:
        root = Path(os.path.commonpath([os.path.abspath(p.parent) for p in files]))
        outputs = dataclasses.replace(outputs, mirror_root=root)
    clashes = _clashes(files, outputs)
    if clashes:
        final, names = next(iter(clashes.items()))
        more = f" (and {len(clashes) - 1} more output names)" if len(clashes) > 1 else ""
        raise ConfigError(
            f"{' and '.join(map(str, names))} would both write {final}{more}; outputs are named after "
            "the file name without its extension, so run one of them (or rename it).")
    return outputs


def check_plate_outputs(plates: Sequence[Path], outputs: OutputOptions) -> None:
    """:class:`ConfigError` when two plates would write one output: the same wells table
    (``p.ome.zarr`` + ``p.zarr`` in one folder, or two ``p.ome.zarr`` with one ``--out``) or the
    same label mirror under ``--out``. Plates are not mirrored like images: their tables and
    picture are named after the plate, and screening software finds them by that name."""
    from cp3rt.runtime.batch.plates import output_plate, wells_csv_path

    seen: dict[Path, Path] = {}
    for plate in plates:
        mirror = output_plate(plate, outputs)
        for final in (wells_csv_path(plate, outputs), *([mirror] if mirror is not None else [])):
            key = Path(os.path.abspath(final))
            if key in seen and Path(os.path.abspath(seen[key])) != Path(os.path.abspath(plate)):
                raise ConfigError(
                    f"plates {seen[key]} and {plate} would both write {final}; run them with "
                    "different --out folders (or rename one).")
            seen[key] = plate


def _check_stores(stores: Sequence[Path], outputs: OutputOptions) -> None:
    """OME-Zarr images get their labels inside themselves, or with ``--out`` inside a store of
    the same name there (``blocks.files.image_output_store``): two of one name would share it."""
    if outputs.out_dir is None:
        return
    seen: dict[str, Path] = {}
    for store in stores:
        if store.name in seen and os.path.abspath(seen[store.name]) != os.path.abspath(store):
            raise ConfigError(
                f"{seen[store.name]} and {store} would both write their labels to "
                f"{Path(outputs.out_dir) / store.name}; run them with different --out folders (or rename one).")
        seen[store.name] = store


def _writes_inside(path: Path) -> bool:
    """An OME-Zarr image: its labels go into an NGFF store (itself, or its mirror under --out),
    never into files named after its stem."""
    if not path.is_dir():
        return False
    from cp3rt.runtime.batch.blocks.file_outputs import is_ome_zarr

    try:
        return is_ome_zarr(path)
    except Exception:  # noqa: BLE001 - unreadable: its own run reports it
        return False


def _clashes(files: Sequence[Path], outputs: OutputOptions) -> dict[Path, list[Path]]:
    """Output path -> the inputs that would write it (or that it would overwrite), for every
    output path claimed twice, over every kind requested (masks, flows, _seg.npy, overlays...)."""
    owners: dict[Path, list[Path]] = {Path(os.path.abspath(p)): [p] for p in files}  # inputs own themselves
    for p in files:
        for final in outputs.paths_for(p).values():
            owners.setdefault(Path(os.path.abspath(final)), []).append(p)
    return {k: v for k, v in owners.items() if len(v) > 1}
