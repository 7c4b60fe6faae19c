"""OME-Zarr (NGFF 0.4 on zarr v2, 0.5 on zarr v3) metadata, read and written through
ome-zarr-py, the OME reference implementation (the ``zarr`` extra): an image's levels, axes,
units and scales, label images whose pyramid matches the image's, plate and well metadata.

cp3rt writes no NGFF JSON of its own: the metadata go through ``ome_zarr.writer`` in the
version of the image the labels belong to. The label arrays themselves are created here with
zarr (zero-filled, chunked) because a huge image's labels are written block by block; the
lower levels are filled from level 0 by nearest-neighbour sampling once level 0 is complete
(``fill_lower_levels``), in tiles, so memory stays bounded whatever the image size.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from cp3rt._lazy import require
from cp3rt.errors import InputError, OutputError

_PURPOSE = "reading and writing OME-Zarr (NGFF 0.4 / 0.5) images"
FILL_TILE = 1024  # output pixels a side per step of the nearest-neighbour pyramid


def ome_zarr() -> Any:
    """The ``ome_zarr`` package (ome-zarr-py) with its ``io``, ``format``, ``axes`` and
    ``writer`` modules loaded; a missing one is a one-line error naming the extra."""
    mod = require("ome_zarr", _PURPOSE)
    for sub in ("io", "format", "axes", "writer"):
        require(f"ome_zarr.{sub}", _PURPOSE)
    return mod


def _zarr() -> Any:
    return require("zarr", f"{_PURPOSE} (pip install 'cp3rt[zarr]')")


def _format_for(path: Path) -> Any:
    """The ome-zarr-py Format to open ``path`` with: 0.5 for a zarr v3 store, else the version
    its ``.zattrs`` name (0.4 by default), so that the library logs no version mismatch."""
    fmt = ome_zarr().format
    if (path / "zarr.json").is_file():
        return fmt.FormatV05()
    try:
        attrs = json.loads((path / ".zattrs").read_text())
        meta = (attrs.get("multiscales") or [{}])[0] if "multiscales" in attrs else attrs.get("plate") or attrs.get("well")
        return fmt.format_from_version(str(meta["version"]))
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError):
        return fmt.FormatV04()


def ome_attrs(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The NGFF attributes of the zarr group at ``path`` whatever the version: 0.5 keeps them
    under ``attrs["ome"]``, 0.4 and before at the top level; {} for no group."""
    p = Path(path)
    loc = ome_zarr().io.parse_url(str(p), mode="r", fmt=_format_for(p))
    return dict(loc.root_attrs) if loc is not None and loc.zgroup else {}


@dataclasses.dataclass(frozen=True)
class NgffImage:
    """One multiscale image as its metadata describe it (level 0 first)."""

    path: Path
    version: str  # "0.4", "0.5" (older ones read as they are)
    axes: tuple[dict[str, str], ...]  # NGFF axis objects: name, type, unit when given
    datasets: tuple[str, ...]  # level paths inside the group
    shapes: tuple[tuple[int, ...], ...]  # per level
    transforms: tuple[tuple[dict[str, Any], ...], ...]  # per level: coordinateTransformations

    @property
    def axis_names(self) -> str:
        return "".join(a["name"] for a in self.axes)

    def units(self) -> dict[str, str]:
        return {a["name"]: a["unit"] for a in self.axes if a.get("unit")}

    def scale(self, level: int = 0) -> tuple[float, ...]:
        """The level's pixel size per axis (1 where no scale is given)."""
        for t in self.transforms[level]:
            if t.get("type") == "scale" and "scale" in t:
                return tuple(float(s) for s in t["scale"])
        return (1.0,) * len(self.axes)


def read_image(path: str | os.PathLike[str]) -> NgffImage | None:
    """The first multiscale image of the OME-Zarr group at ``path``; None when the group has
    no ``multiscales`` (a plate, a bare group). Raises InputError for invalid axes."""
    p = Path(path)
    oz = ome_zarr()
    loc = oz.io.parse_url(str(p), mode="r", fmt=_format_for(p))
    if loc is None or not loc.zgroup:
        return None
    ms = loc.root_attrs.get("multiscales")
    if not ms or not ms[0].get("datasets"):
        return None
    version = loc.version
    try:
        axes = oz.axes.Axes(ms[0].get("axes"), fmt=oz.format.format_from_version(version)).to_list()
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{p}: invalid NGFF {version} axes ({exc}).") from exc
    group = _zarr().open_group(str(p), mode="r")
    datasets = tuple(str(d["path"]) for d in ms[0]["datasets"])
    try:
        shapes = tuple(tuple(int(n) for n in group[d].shape) for d in datasets)
    except KeyError as exc:
        raise InputError(f"{p}: NGFF level {exc} is listed in 'multiscales' but missing.") from exc
    if axes is None:  # 0.1 / 0.2: no axes, always (t, c, z, y, x) trimmed to the data
        axes = [{"name": n} for n in "tczyx"[-len(shapes[0]):]]
    axes = tuple({k: str(v) for k, v in a.items()} if isinstance(a, dict) else {"name": str(a)} for a in axes)
    transforms = tuple(tuple(d.get("coordinateTransformations") or ()) for d in ms[0]["datasets"])
    return NgffImage(p, version, axes, datasets, shapes, transforms)


def _pick(transform: dict[str, Any], keep: list[int]) -> dict[str, Any]:
    """A scale / translation transform restricted to the axes ``keep``."""
    out = dict(transform)
    for key in ("scale", "translation"):
        if key in out:
            out[key] = [out[key][i] for i in keep]
    return out


def label_levels(image: NgffImage, shape: tuple[int, ...]) -> tuple[str, list[tuple[tuple[int, ...], list]]]:
    """(label axes, [(shape, coordinateTransformations) per level]) for labels of ``shape``
    ((Y, X) or (Z, Y, X)) on ``image``: the image's spatial axes, levels, scales and units."""
    names = "zyx"[-len(shape):]
    missing = [n for n in names if n not in image.axis_names]
    if missing:
        raise OutputError(f"{image.path}: labels {names} need the axes {missing} that the image "
                          f"(axes {image.axis_names}) does not have.")
    keep = [image.axis_names.index(n) for n in names]
    levels = []
    for s, tr in zip(image.shapes, image.transforms):
        lshape = tuple(s[i] for i in keep)
        # before 0.4 no transforms: a level's pixel is level 0's times the size ratio
        levels.append((lshape, [_pick(t, keep) for t in tr] or
                       [{"type": "scale", "scale": [image.shapes[0][i] / s[i] for i in keep]}]))
    if levels[0][0] != tuple(shape):
        raise OutputError(f"{image.path}: labels of shape {tuple(shape)} do not match the image's level 0 "
                          f"{levels[0][0]} on axes {names}.")
    return names, levels


def create_labels(root: str | os.PathLike[str], image: NgffImage, shape: tuple[int, ...], name: str,
                  chunks: tuple[int, ...]) -> Any:
    """Create ``root/labels/<name>`` as a multiscale label image with the image's levels,
    scales, units and NGFF version (every level zero-filled), register it in ``labels``
    with ``image-label`` metadata and return level 0, writable. ``root`` is the image's own
    group, or a group of an output store (a read-only plate's mirror): then ``source.image``
    is the relative path from the labels to the image."""
    oz = ome_zarr()
    zarr = _zarr()
    # 0.1-0.3 images (ome-zarr-py no longer writes those versions) get 0.4 labels
    fmt = oz.format.format_from_version(image.version if image.version in ("0.4", "0.5") else "0.4")
    names, levels = label_levels(image, shape)
    axes = [{**image.axes[image.axis_names.index(n)]} for n in names]
    group = zarr.open_group(str(root), mode="a")
    if group.info._zarr_format != fmt.zarr_format:
        raise OutputError(f"{root}: an NGFF {fmt.version} image must be a zarr v{fmt.zarr_format} store.")
    labels = group.require_group("labels")
    lab = labels.create_group(name, overwrite=True)
    extra = {"dimension_names": list(names)} if fmt.zarr_format == 3 else {}
    arrays = []
    for k, (lshape, _) in enumerate(levels):
        arrays.append(lab.create_array(str(k), shape=lshape, dtype="uint32", fill_value=0,
                                       chunks=tuple(min(c, n) for c, n in zip(chunks, lshape)), **extra))
    datasets = [{"path": str(k), "coordinateTransformations": tr} for k, (_, tr) in enumerate(levels)]
    try:
        oz.writer.write_multiscales_metadata(lab, datasets, fmt=fmt, axes=axes, name=name)
    except ValueError as exc:  # the library's validation of what the image's metadata gave
        raise OutputError(f"{root}: cannot describe labels for NGFF {fmt.version} ({exc}).") from exc
    listed = [n for n in oz.writer.get_metadata(labels).get("labels", []) if n != name]
    # 0.5 wants the version beside 'labels' too, which write_label_metadata leaves out
    oz.writer.add_metadata(labels, {"labels": listed, **({"version": fmt.version} if fmt.zarr_format == 3 else {})},
                           fmt=fmt)
    label_dir = Path(root).resolve() / "labels" / name
    source = os.path.relpath(image.path.resolve(), label_dir).replace(os.sep, "/") + "/"
    oz.writer.write_label_metadata(labels, name, fmt=fmt, source={"image": source})
    return arrays[0]


def label_group_of(level0: Any) -> Any:
    """The label group holding the level-0 array ``level0`` (made by ``create_labels``)."""
    parent = level0.path.rsplit("/", 1)[0] if "/" in level0.path else ""
    return _zarr().open_group(store=level0.store, path=parent, mode="r+")


def nearest_index(n_out: int, n_in: int) -> np.ndarray:
    """Level-0 index sampled by each of ``n_out`` pixels of a lower level (pixel centres)."""
    return np.minimum(((np.arange(n_out) + 0.5) * (n_in / n_out)).astype(np.int64), n_in - 1)


def fill_lower_levels(level0: Any, tile: int = FILL_TILE) -> int:
    """Fill every lower level of ``level0``'s label group by nearest-neighbour sampling of level
    0 (label values are never blended), ``tile`` output pixels a side at a time; returns the
    number of levels filled."""
    lab = label_group_of(level0)
    paths = [str(d["path"]) for d in ome_zarr().writer.get_metadata(lab)["multiscales"][0]["datasets"]]
    src_shape = level0.shape
    for path in paths[1:]:
        dst = lab[path]
        index = [nearest_index(n, m) for n, m in zip(dst.shape, src_shape)]
        steps = [range(0, n, tile) for n in dst.shape]
        for start in np.array(np.meshgrid(*steps, indexing="ij")).reshape(len(steps), -1).T:
            sel = tuple(slice(int(s), int(s) + tile) for s in start)
            dst[sel] = level0.oindex[tuple(ix[sl] for ix, sl in zip(index, sel))]
    return len(paths) - 1


def plate_attrs(path: str | os.PathLike[str]) -> dict[str, Any]:
    """``ome_attrs`` of a zarr group with NGFF ``plate`` or ``well`` metadata, {} for anything
    else (told apart with zarr alone, so that other inputs never need ome-zarr-py)."""
    p = Path(path)
    if not (p.is_dir() and any((p / f).is_file() for f in (".zattrs", "zarr.json"))):
        return {}
    node = _zarr().open(str(p), mode="r")
    raw = dict(node.attrs)
    raw = raw.get("ome", raw) if isinstance(raw.get("ome"), dict) else raw
    return ome_attrs(p) if "plate" in raw or "well" in raw else {}


def store_version(path: str | os.PathLike[str]) -> str:
    """The NGFF version of the group at ``path`` as ome-zarr-py detects it."""
    p = Path(path)
    loc = ome_zarr().io.parse_url(str(p), mode="r", fmt=_format_for(p))
    if loc is None:
        raise InputError(f"{p} is not a zarr group.")
    return loc.version


def mirror_image(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """Create (or keep) at ``dst`` an empty group in the zarr format of ``src``'s NGFF version:
    where an OME-Zarr image's labels go when the run has an output folder, as a plate's fields
    go into ``mirror_plate``'s store. It holds only ``labels/``, whose ``image-label`` source
    points back to ``src``; the input is never written to."""
    oz = ome_zarr()
    version = store_version(src)
    fmt = oz.format.format_from_version(version if version in ("0.4", "0.5") else "0.4")
    try:
        _zarr().open_group(str(dst), mode="a", zarr_format=fmt.zarr_format)
    except OSError as exc:
        raise OutputError(f"{dst}: cannot write the output image store ({exc.strerror or exc}).") from exc


def mirror_plate(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """Create (or refresh) at ``dst`` an HCS plate store with ``src``'s plate and well metadata
    in its NGFF version, and an empty group per field: where the labels of a read-only plate go.
    The fields hold only ``labels/``, whose ``image-label`` source points back into ``src``."""
    oz = ome_zarr()
    src, dst = Path(src), Path(dst)
    version = store_version(src)
    fmt = oz.format.format_from_version(version if version in ("0.4", "0.5") else "0.4")
    plate = ome_attrs(src)["plate"]
    try:
        group = _zarr().open_group(str(dst), mode="a", zarr_format=fmt.zarr_format)
        wells = [str(w["path"]) for w in plate["wells"]]
        oz.writer.write_plate_metadata(
            group, [r["name"] for r in plate["rows"]], [c["name"] for c in plate["columns"]], wells, fmt=fmt,
            acquisitions=plate.get("acquisitions"), field_count=plate.get("field_count"), name=plate.get("name"))
        for well in wells:
            images = ome_attrs(src / well)["well"]["images"]
            oz.writer.write_well_metadata(group.require_group(well), images, fmt=fmt)
            for img in images:
                group.require_group(f"{well}/{img['path']}")
    except OSError as exc:
        raise OutputError(f"{dst}: cannot write the output plate ({exc.strerror or exc}).") from exc
