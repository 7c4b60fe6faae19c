"""OME-Zarr round trips with the ecosystem's own tools (issue 14, items 1 and 2): images and
plates WRITTEN BY ome-zarr-py (NGFF 0.4 on zarr v2, 0.5 on zarr v3) go in; the labels cp3rt
writes are read back by ome-zarr-py's Reader (what napari's OME-Zarr reader builds on) with the
image's levels, scales and units, and ome-zarr-models (the NGFF 0.4 / 0.5 models) accepts them.
A read-only plate run with --out is left unchanged and gets an output plate store."""

from __future__ import annotations

import hashlib
import importlib
import os
import stat

import numpy as np
import pytest
from scale_testutil import NumpyEngine, blob_image

from cp3rt import Pipeline
from cp3rt.cli.app import main
from cp3rt.runtime.batch.blocks.files import segment_file
from cp3rt.runtime.batch.files import OutputOptions
from cp3rt.runtime.batch.plates import plate_fields
from cp3rt.runtime.config import RunConfig
from cp3rt.runtime.io.zarr_io import is_complete
from cp3rt.runtime.quality.metrics import average_precision

import ome_zarr
import ome_zarr_models
import zarr
from ome_zarr.format import format_from_version  # noqa: E402
from ome_zarr.io import parse_url  # noqa: E402
from ome_zarr.reader import Label, Multiscales, Reader  # noqa: E402
from ome_zarr.writer import write_image, write_plate_metadata, write_well_metadata  # noqa: E402

DIAM, BLOCK = 20.0, 128
RUN = RunConfig(channels=(0, 0), diameter=DIAM)
PIXEL_UM = 0.65
MIN_AP50_TRUTH = 0.9  # the stand-in net finds the drawn (separated) blobs
VERSIONS = ("0.4", "0.5")


def _write_library_image(group, image, version, levels=3):
    """(C, Y, X) image, ``levels`` levels (x2 each), 0.65 µm pixels, written by ome-zarr-py."""
    write_image(image, group, scale_factors=[2 ** k for k in range(1, levels)], fmt=format_from_version(version),
                axes="cyx", scale={"c": 1.0, "y": PIXEL_UM, "x": PIXEL_UM},
                axes_units={"y": "micrometer", "x": "micrometer"}, storage_options={"chunks": (1, 64, 64)})


def _nodes(path):
    """ome-zarr-py's Reader over ``path``: (image node, label node) as a viewer sees them."""
    nodes = list(Reader(parse_url(str(path), fmt=format_from_version(_version(path))))())
    image = next(n for n in nodes if n.load(Multiscales) and not n.load(Label))
    label = next(n for n in nodes if n.load(Label))
    return image, label


def _version(path):
    return "0.5" if (path / "zarr.json").is_file() else "0.4"


def _layer_scale(node, channel_axis=None):
    """A napari layer's scale from ome-zarr-py's node metadata, as napari-ome-zarr's reader
    builds it: level 0's scale transform, without the channel axis (split into layers)."""
    scale = next(t["scale"] for t in node.metadata["coordinateTransformations"][0] if t["type"] == "scale")
    return [s for i, s in enumerate(scale) if i != channel_axis]


def _check_labels_follow_image(path, version):
    image, label = _nodes(path)
    assert len(label.data) == len(image.data) == 3
    for lev_img, lev_lab in zip(image.data, label.data):  # every level: same (Y, X) grid
        assert lev_lab.shape == lev_img.shape[-2:]
    for tr_img, tr_lab in zip(image.metadata["coordinateTransformations"],
                              label.metadata["coordinateTransformations"]):
        assert [{**t, **{k: t[k][-2:] for k in ("scale", "translation") if k in t}} for t in tr_img] == tr_lab
    assert [a for a in label.metadata["axes"]] == [a for a in image.metadata["axes"] if a["name"] in "yx"]
    assert all(a.get("unit") == "micrometer" for a in label.metadata["axes"])
    # what a napari user gets: the label layer lies exactly on the image layer
    channel_axis = [a["name"] for a in image.metadata["axes"]].index("c")
    assert _layer_scale(label) == _layer_scale(image, channel_axis) == [PIXEL_UM, PIXEL_UM]
    # label pyramid: nearest neighbour, values never blended
    lev0 = np.asarray(label.data[0])
    for lev in label.data[1:]:
        lev = np.asarray(lev)
        iy = np.minimum(((np.arange(lev.shape[0]) + 0.5) * lev0.shape[0] / lev.shape[0]).astype(int), lev0.shape[0] - 1)
        ix = np.minimum(((np.arange(lev.shape[1]) + 0.5) * lev0.shape[1] / lev.shape[1]).astype(int), lev0.shape[1] - 1)
        np.testing.assert_array_equal(lev, lev0[np.ix_(iy, ix)])
    # the NGFF models accept the image with its labels, and the label image, in its version
    group = zarr.open_group(str(path), mode="r")
    model = ome_zarr_models.open_ome_zarr(group)
    assert type(model).__module__ == f"ome_zarr_models.v0{version[-1]}.image"
    label_model = ome_zarr_models.open_ome_zarr(group["labels"]["cp3rt"])
    assert type(label_model).__name__ == "ImageLabel"
    assert type(label_model).__module__ == f"ome_zarr_models.v0{version[-1]}.image_label"
    return lev0


@pytest.mark.parametrize("version", VERSIONS)
def test_library_image_in_library_labels_out(tmp_path, version):
    img, truth = blob_image((300, 260), 50, 7, radius=7)
    root = tmp_path / "img.ome.zarr"
    group = zarr.open_group(str(root), mode="w", zarr_format=format_from_version(version).zarr_format)
    _write_library_image(group, np.stack([img, img // 2]), version)
    with Pipeline.from_engines(NumpyEngine(nchan=2), run=RUN) as p:
        outcome = segment_file(p, root, RUN, OutputOptions(), block_size=BLOCK)
    assert outcome.status == "done", outcome.error
    assert is_complete(root)
    labels = _check_labels_follow_image(root, version)
    assert average_precision(truth, labels, [0.5])[0][0] >= MIN_AP50_TRUTH
    if version == "0.5":  # NGFF 0.5 lives under attrs["ome"] on zarr v3, never at the top level
        attrs = zarr.open_group(str(root / "labels" / "cp3rt"), mode="r").attrs.asdict()
        assert set(attrs) >= {"ome"} and "multiscales" not in attrs


WELLS = (("A", "1"), ("B", "2"))


def _write_library_plate(root, version):
    """A 2-well, 1-field HCS plate written by ome-zarr-py; returns the truth per field."""
    fmt = format_from_version(version)
    g = zarr.open_group(str(root), mode="w", zarr_format=fmt.zarr_format)
    write_plate_metadata(g, ["A", "B"], ["1", "2"], [f"{r}/{c}" for r, c in WELLS], fmt=fmt, name="lib", field_count=1)
    truth = {}
    for k, (r, c) in enumerate(WELLS):
        well = g.require_group(r).require_group(c)
        write_well_metadata(well, [{"path": "0"}], fmt=fmt)
        img, lab = blob_image((200, 176), 12 + 6 * k, 30 + k, radius=7)
        _write_library_image(well.require_group("0"), np.stack([img, img // 2]), version)
        truth[f"{r}/{c}"] = lab
    return truth


def _ngff_attrs(group, version):
    attrs = group.attrs.asdict()
    return attrs["ome"] if version == "0.5" else attrs


def _tree_digest(root):
    """Every file's path, bytes and mode under ``root`` (what 'unchanged' means)."""
    h = hashlib.sha256()
    for folder, dirs, files in sorted(os.walk(root)):
        dirs.sort()
        for name in sorted(files):
            p = os.path.join(folder, name)
            h.update(os.path.relpath(p, root).encode())
            h.update(oct(os.stat(p).st_mode).encode())
            with open(p, "rb") as fh:
                h.update(fh.read())
    return h.hexdigest()


def _chmod_tree(root, writable):
    for folder, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            p = os.path.join(folder, name)
            mode = os.stat(p).st_mode
            os.chmod(p, mode | stat.S_IWUSR if writable else mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    mode = os.stat(root).st_mode
    os.chmod(root, mode | stat.S_IWUSR if writable else mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


@pytest.mark.parametrize("version", VERSIONS)
def test_read_only_plate_gets_an_output_plate_store(tmp_path, monkeypatch, version):
    monkeypatch.setattr(Pipeline, "from_config", classmethod(lambda cls, cfg, run=None: Pipeline.from_engines(
        NumpyEngine(nchan=2), run=run)))
    root = tmp_path / "in" / "plate.ome.zarr"
    truth = _write_library_plate(root, version)
    _chmod_tree(root, writable=False)
    before = _tree_digest(root)
    try:
        if os.geteuid() != 0:  # root writes through any mode bits: the refusal is for everyone else
            assert main(["run", str(root), "--diameter", str(DIAM)]) != 0
        out = tmp_path / "o"
        assert main(["run", str(root), "--diameter", str(DIAM), "--out", str(out)]) == 0
        assert _tree_digest(root) == before  # the input plate is left exactly as it was
    finally:
        _chmod_tree(root, writable=True)
    out_plate = out / "plate.ome.zarr"
    # the output store mirrors the plate: its plate and well metadata are valid NGFF of the plate's
    # version (its fields hold labels only, so the store as a whole is not an image plate)
    models = importlib.import_module(f"ome_zarr_models.v0{version[-1]}.hcs"), \
        importlib.import_module(f"ome_zarr_models.v0{version[-1]}.well")
    plate_group = zarr.open_group(str(out_plate), mode="r")
    assert plate_group.info._zarr_format == format_from_version(version).zarr_format
    models[0].HCSAttrs.model_validate(_ngff_attrs(plate_group, version))
    for r, c in WELLS:
        models[1].WellAttrs.model_validate(_ngff_attrs(plate_group[f"{r}/{c}"], version))
    for f in plate_fields(root):
        dst = out_plate / f.path.relative_to(root)
        assert is_complete(dst) and not is_complete(f.path)
        lab_group = zarr.open_group(str(dst / "labels" / "cp3rt"), mode="r")
        assert type(ome_zarr_models.open_ome_zarr(lab_group)).__name__ == "ImageLabel"
        # reading the labels, ome-zarr-py follows their image-label source back into the input plate
        nodes = list(Reader(parse_url(str(dst / "labels" / "cp3rt"), fmt=format_from_version(version)))())
        label = next(n for n in nodes if n.load(Label))
        image = next(n for n in nodes if not n.load(Label))
        assert os.path.realpath(image.zarr.path) == os.path.realpath(f.path)
        assert [d.shape for d in label.data] == [d.shape[-2:] for d in image.data]
        assert _layer_scale(label) == _layer_scale(image, 0) == [PIXEL_UM, PIXEL_UM]
        source = ome_zarr.writer.get_metadata(lab_group)["image-label"]["source"]["image"]
        assert (dst / "labels" / "cp3rt" / source).resolve() == f.path.resolve()
        got = np.asarray(label.data[0])
        assert average_precision(truth[f.well], got, [0.5])[0][0] >= MIN_AP50_TRUTH
    assert (out / "plate_wells.csv").is_file()


def test_without_ome_zarr_py_an_ome_zarr_input_is_one_line_naming_the_extra(tmp_path, monkeypatch):
    from cp3rt.errors import BackendUnavailableError
    from cp3rt.runtime.io.zarr_io import open_lazy

    root = tmp_path / "img.ome.zarr"
    _write_library_image(zarr.open_group(str(root), mode="w", zarr_format=3), np.zeros((1, 64, 64), np.uint16), "0.5")
    monkeypatch.setitem(__import__("sys").modules, "ome_zarr", None)  # as if not installed
    with pytest.raises(BackendUnavailableError, match=r"cp3rt\[zarr\]") as err:
        open_lazy(root)
    assert "\n" not in str(err.value)


# napari 0.9's own pydantic models use `json_encoders` (deprecated in pydantic 2): napari's, not ours
@pytest.mark.filterwarnings("ignore:`json_encoders` is deprecated:DeprecationWarning")
@pytest.mark.parametrize("version", VERSIONS)
def test_napari_ome_zarr_puts_the_labels_on_the_image(tmp_path, version):
    """napari-ome-zarr's own reader, headless (the test extra installs it with napari, no Qt)."""
    import napari_ome_zarr as reader
    img, _ = blob_image((300, 260), 50, 7, radius=7)
    root = tmp_path / "img.ome.zarr"
    _write_library_image(zarr.open_group(str(root), mode="w", zarr_format=format_from_version(version).zarr_format),
                         np.stack([img, img // 2]), version)
    with Pipeline.from_engines(NumpyEngine(nchan=2), run=RUN) as p:
        assert segment_file(p, root, RUN, OutputOptions(), block_size=BLOCK).status == "done"
    layers = reader.napari_get_reader(str(root))(str(root))
    (image, image_kw, _), = [layer for layer in layers if layer[2] == "image"]
    (labels, labels_kw, _), = [layer for layer in layers if layer[2] == "labels"]
    assert list(labels_kw["scale"]) == list(image_kw["scale"]) == [PIXEL_UM, PIXEL_UM]
    assert [d.shape for d in labels] == [d.shape[1:] for d in image]


def test_a_pre_0_4_image_gets_0_4_labels_scaled_by_level_size(tmp_path):
    """NGFF 0.3 (axes as names, no transforms; ome-zarr-py no longer writes it): labels in 0.4,
    each level's scale the size ratio to level 0, accepted by the 0.4 models."""
    img, truth = blob_image((300, 260), 50, 7, radius=7)
    root = tmp_path / "old.ome.zarr"
    _write_library_image(zarr.open_group(str(root), mode="w", zarr_format=2), np.stack([img, img // 2]), "0.4", 2)
    group = zarr.open_group(str(root), mode="r+")
    ms = group.attrs["multiscales"]
    ms[0].update(version="0.3", axes=["c", "y", "x"])
    for d in ms[0]["datasets"]:
        d.pop("coordinateTransformations")
    group.attrs["multiscales"] = ms
    with Pipeline.from_engines(NumpyEngine(nchan=2), run=RUN) as p:
        assert segment_file(p, root, RUN, OutputOptions(), block_size=BLOCK).status == "done"
    lab = zarr.open_group(str(root / "labels" / "cp3rt"), mode="r")
    assert type(ome_zarr_models.open_ome_zarr(lab)).__module__ == "ome_zarr_models.v04.image_label"
    datasets = lab.attrs["multiscales"][0]["datasets"]
    assert [d["coordinateTransformations"] for d in datasets] == [[{"type": "scale", "scale": [1.0, 1.0]}],
                                                                 [{"type": "scale", "scale": [2.0, 2.0]}]]
    assert average_precision(truth, np.asarray(lab["0"][...]), [0.5])[0][0] >= MIN_AP50_TRUTH


@pytest.mark.parametrize("version", VERSIONS)
def test_an_image_run_with_out_leaves_the_input_alone_and_writes_a_labels_store_there(tmp_path, version):
    """``cp3rt run img.ome.zarr --out DIR``: DIR/img.ome.zarr holds only labels/ (NGFF labels of
    the input's version, validated by the NGFF models) whose source is the input; the input
    itself is not written to."""
    img, truth = blob_image((300, 260), 50, 7, radius=7)
    root = tmp_path / "in" / "img.ome.zarr"
    _write_library_image(zarr.open_group(str(root), mode="w", zarr_format=format_from_version(version).zarr_format),
                         np.stack([img, img // 2]), version)
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    out = tmp_path / "out"
    with Pipeline.from_engines(NumpyEngine(nchan=2), run=RUN) as p:
        outcome = segment_file(p, root, RUN, OutputOptions(out_dir=out), block_size=BLOCK)
    assert outcome.status == "done", outcome.error
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before  # the input is untouched
    store = out / "img.ome.zarr"
    assert is_complete(store) and outcome.outputs == (store / "labels" / "cp3rt",)
    lab_group = zarr.open_group(str(store / "labels" / "cp3rt"), mode="r")
    assert type(ome_zarr_models.open_ome_zarr(lab_group)).__module__ == f"ome_zarr_models.v0{version[-1]}.image_label"
    source = ome_zarr.writer.get_metadata(lab_group)["image-label"]["source"]["image"]
    assert (store / "labels" / "cp3rt" / source).resolve() == root.resolve()
    assert average_precision(truth, np.asarray(lab_group["0"][...]), [0.5])[0][0] >= MIN_AP50_TRUTH
    with Pipeline.from_engines(NumpyEngine(nchan=2), run=RUN) as p:  # done: skipped, not redone
        assert segment_file(p, root, RUN, OutputOptions(out_dir=out), block_size=BLOCK).status == "skipped"


def test_two_images_of_one_name_with_one_out_are_refused_before_any_work(tmp_path):
    from cp3rt.errors import ConfigError
    from cp3rt.runtime import PipelineConfig, run_inputs

    img, _ = blob_image((96, 96), 4, 1, radius=7)
    roots = [tmp_path / d / "img.ome.zarr" for d in ("a", "b")]
    for root in roots:
        _write_library_image(zarr.open_group(str(root), mode="w", zarr_format=2), img[None], "0.4", 1)
    with pytest.raises(ConfigError) as err:  # raised before the nets open (PipelineConfig() names none here)
        run_inputs(roots, PipelineConfig(), RUN, OutputOptions(out_dir=tmp_path / "out"))
    assert str(roots[0]) in str(err.value) and str(roots[1]) in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "out").exists()
