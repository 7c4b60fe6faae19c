"""Issue 13, the batch half: colliding output names (1), claims shared by two runs (2), an
unexpected error is one image's failure (3), a TIFF without its pixel data (4), a cancelled
batch (5), ``--out`` naming a file (9). Library level, with the numpy stand-in net; the CLI and
real processes are in tests/cli/test_run_robust.py."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest
import tifffile
from PIL import Image
from scale_testutil import NumpyEngine, blob_image

from cp3rt import Pipeline
from cp3rt.errors import ConfigError
from cp3rt.runtime import OutputOptions, PipelineConfig, RunConfig, run_inputs
from cp3rt.runtime.batch.cancel import Cancel
from cp3rt.runtime.batch.claims import lock_path, try_claim
from cp3rt.runtime.batch.inputs import route_inputs
from cp3rt.runtime.io.out_dir import check_output_dir
from cp3rt.runtime.io.read import check_tiff_data, read_image

RUN = RunConfig(channels=(0, 0), diameter=20.0)


@pytest.fixture
def stand_in(monkeypatch):
    opened = []

    def from_config(cls, cfg, run=None):
        opened.append(cfg)
        return Pipeline.from_engines(NumpyEngine(nchan=2), run=run)

    monkeypatch.setattr(Pipeline, "from_config", classmethod(from_config))
    return opened


def _image(path, seed=0, size=96):
    image, _ = blob_image((size, size), 6, seed, radius=7)
    if path.suffix == ".tif":
        tifffile.imwrite(path, image)
    else:
        Image.fromarray((image // 256).astype(np.uint8)).save(path)
    return path


def _run(inputs, out=None, **kw):
    return run_inputs(inputs, PipelineConfig(), RUN, OutputOptions(out_dir=out), **kw)


# 1 --------------------------------------------------------------------------------------------

def test_same_stem_in_two_folders_mirrors_the_tree_under_out(tmp_path, stand_in):
    for d, seed in (("d1", 1), ("d2", 2)):
        (tmp_path / "in" / d).mkdir(parents=True)
        _image(tmp_path / "in" / d / "x.tif", seed)
    summary = _run([tmp_path / "in" / "d1", tmp_path / "in" / "d2"], tmp_path / "out")
    assert summary.count("done") == 2
    a, b = (tifffile.imread(tmp_path / "out" / d / "x_cp_masks.tif") for d in ("d1", "d2"))
    assert not np.array_equal(a, b)  # two images, two mask files
    assert not (tmp_path / "out" / "x_cp_masks.tif").exists()
    assert _run([tmp_path / "in" / "d1", tmp_path / "in" / "d2"], tmp_path / "out").count("skipped") == 2


@pytest.mark.parametrize("names", [("img.png", "img.jpg"), ("x.tif", "x.ome.tif")])
@pytest.mark.parametrize("out", [None, "out"])
def test_same_stem_in_one_folder_is_refused_before_any_work(tmp_path, stand_in, names, out):
    for i, name in enumerate(names):
        _image(tmp_path / name, i)
    with pytest.raises(ConfigError) as err:
        _run([tmp_path], out and tmp_path / out)
    assert all(name in str(err.value) for name in names) and "\n" not in str(err.value)
    assert stand_in == [] and not list(tmp_path.rglob("*_cp_masks.tif"))


def test_a_huge_input_and_an_image_with_one_stem_are_refused(tmp_path, stand_in):
    _image(tmp_path / "x.tif")
    _image(tmp_path / "x.png")
    with pytest.raises(ConfigError, match="x.png"):
        run_inputs([tmp_path / "x.tif", tmp_path / "x.png"], PipelineConfig(), RUN, OutputOptions(),
                   block_size=64)


def test_an_output_that_would_overwrite_an_input_is_refused(tmp_path, stand_in):
    _image(tmp_path / "a.tif")
    _image(tmp_path / "a_flows.tif", 1)  # named explicitly: folders skip output-like names
    with pytest.raises(ConfigError, match="a_flows.tif"):
        run_inputs([tmp_path / "a.tif", tmp_path / "a_flows.tif"], PipelineConfig(), RUN,
                   OutputOptions(save_flows=True))


@pytest.mark.parametrize("layout", ["two folders, one --out", "one folder, .ome.zarr + .zarr"])
def test_two_plates_that_would_write_one_wells_table_are_refused_before_any_work(tmp_path, stand_in, layout):
    from scale_testutil import write_plate

    if layout.startswith("two"):
        plates, out = [tmp_path / "a" / "p.ome.zarr", tmp_path / "b" / "p.ome.zarr"], tmp_path / "out"
    else:
        plates, out = [tmp_path / "p.ome.zarr", tmp_path / "p.zarr"], None
    for plate in plates:
        plate.parent.mkdir(parents=True, exist_ok=True)
        write_plate(plate)
    with pytest.raises(ConfigError) as err:
        _run(plates, out)
    msg = str(err.value)
    assert str(plates[0]) in msg and str(plates[1]) in msg and "p_wells.csv" in msg and "\n" not in msg
    assert stand_in == [] and not list(tmp_path.rglob("labels"))


# 2 --------------------------------------------------------------------------------------------

def test_an_image_claimed_by_a_live_run_is_left_alone_then_settled(tmp_path, stand_in):
    (tmp_path / "in").mkdir()
    imgs = [_image(tmp_path / "in" / f"i{k}.tif", k) for k in range(3)]
    out = tmp_path / "out"
    held = try_claim(out / "i1_cp_masks.tif")  # 'another run' working on i1
    partial = out / ".i1_cp_masks.tif.abc.part.tif"
    partial.write_bytes(b"the other run's bytes")
    events = []

    def other_run_finishes():
        while not any(e.outcome is not None and e.outcome.status == "claimed" for e in events):
            threading.Event().wait(0.02)
        assert partial.exists()  # not removed: its owner is alive
        tifffile.imwrite(out / "i1_cp_masks.tif", np.zeros((96, 96), np.uint16))
        partial.unlink()
        held.release()

    t = threading.Thread(target=other_run_finishes)
    t.start()
    summary = _run([tmp_path / "in"], out, on_event=lambda e: e.kind == "end" and events.append(e))
    t.join()
    by = {o.path.name: o for o in summary.outcomes}
    assert [by[p.name].status for p in imgs] == ["done", "skipped", "done"] and summary.ok
    assert by["i1.tif"].note == "done by another run"
    assert not lock_path(out / "i0_cp_masks.tif").exists()  # released claims leave no lock file


def test_a_lock_file_left_by_a_dead_run_is_free_and_its_partials_go(tmp_path, stand_in):
    _image(tmp_path / "a.tif")
    lock_path(tmp_path / "a_cp_masks.tif").write_text('{"pid": 999999, "host": "gone", "started": 0}')
    (tmp_path / ".a_cp_masks.tif.x.part.tif").write_bytes(b"dead run")
    assert _run([tmp_path / "a.tif"]).count("done") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tif", "a_cp_masks.tif"]


# 3 --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("error", [MemoryError(), ValueError("array is too big")])
def test_an_unexpected_error_is_that_images_failure(tmp_path, stand_in, monkeypatch, error):
    for k in range(3):
        _image(tmp_path / f"i{k}.tif", k)
    import cp3rt.runtime.io as cio

    real = cio.read_image

    def read(path):
        if os.path.basename(path) == "i1.tif":
            raise error
        return real(path)

    monkeypatch.setattr(cio, "read_image", read)
    summary = _run([tmp_path])  # three files: the streaming runner
    by = {o.path.name: o for o in summary.outcomes}
    assert [by[f"i{k}.tif"].status for k in range(3)] == ["done", "failed", "done"]
    line = by["i1.tif"].error
    assert "\n" not in line and "i1.tif" in line and type(error).__name__ in line
    assert "Traceback" in by["i1.tif"].detail


def test_an_unexpected_error_in_a_block_run_is_that_images_failure(tmp_path, stand_in, monkeypatch):
    _image(tmp_path / "a.tif", size=160)
    import cp3rt.runtime.batch.blocks.files as bf

    def boom(*a, **k):
        raise ValueError("array is too big")

    monkeypatch.setattr(bf, "segment_image_file", boom)
    routes = route_inputs([tmp_path / "a.tif"], RUN, force_blocks=True)
    summary = run_inputs(routes, PipelineConfig(), RUN, OutputOptions(), block_size=64)
    (outcome,) = summary.outcomes
    assert outcome.status == "failed" and "a.tif" in outcome.error and "ValueError" in outcome.error


# 4 --------------------------------------------------------------------------------------------

def _header_only_bigtiff(path, side=100_000):
    tifffile.imwrite(path, shape=(side, side), dtype=np.uint8, bigtiff=True)
    with open(path, "r+b") as fh:
        fh.truncate(8192)
    return path


def test_a_header_only_bigtiff_is_refused_before_any_block(tmp_path, stand_in):
    big = _header_only_bigtiff(tmp_path / "big.tif")
    summary = _run([big])
    (outcome,) = summary.outcomes
    assert outcome.status == "failed"
    assert outcome.error == (f"{big}: pixel data missing/truncated (header says 10000000368 bytes, file has "
                             "8192); the file was cut short: copy or export it again.")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.tif"]  # no 40 GB .part


def test_a_truncated_tiff_is_refused_not_read_as_zeros(tmp_path):
    tifffile.imwrite(tmp_path / "t.tif", np.ones((300, 300), np.uint16))
    data = (tmp_path / "t.tif").read_bytes()
    (tmp_path / "t.tif").write_bytes(data[: len(data) // 2])
    for check in (check_tiff_data, read_image):
        with pytest.raises(Exception, match=r"t.tif: pixel data missing/truncated \(header says 180256"):
            check(tmp_path / "t.tif")


# 5 --------------------------------------------------------------------------------------------

def test_a_cancel_stops_between_images_and_counts_the_rest(tmp_path, stand_in):
    for k in range(10):  # more than the streaming runner has in flight
        _image(tmp_path / f"i{k}.tif", k)
    cancel = Cancel()
    summary = _run([tmp_path], on_event=lambda e: e.kind == "end" and cancel.set("SIGINT"), cancel=cancel)
    assert summary.count("done") >= 1 and summary.count("done") + summary.not_started == 10
    assert summary.not_started >= 1 and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_a_cancel_abandons_a_huge_image_between_blocks_without_partials(tmp_path, stand_in):
    _image(tmp_path / "a.tif", size=256)
    cancel = Cancel()
    routes = route_inputs([tmp_path / "a.tif"], RUN, force_blocks=True)
    summary = run_inputs(routes, PipelineConfig(), RUN, OutputOptions(), block_size=64, cancel=cancel,
                         on_event=lambda e: e.kind == "tiles" and cancel.set("SIGTERM"))
    assert summary.outcomes == () and summary.not_started == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tif"]


# 9 --------------------------------------------------------------------------------------------

def test_out_naming_a_file_fails_once_before_any_work(tmp_path, stand_in):
    _image(tmp_path / "a.tif")
    (tmp_path / "afile").write_text("x")
    for out in (tmp_path / "afile", tmp_path / "afile" / "sub"):
        with pytest.raises(ConfigError, match="afile.* is a file") as err:
            _run([tmp_path / "a.tif"], out)
        assert "\n" not in str(err.value)
    assert stand_in == []
    check_output_dir(tmp_path / "new" / "folder")  # missing: fine, created at the first write
    assert not os.path.exists(tmp_path / "new")


# the good oddities through the Python API ----------------------------------------------------

def test_odd_but_valid_arrays_give_the_masks_of_their_plain_copy():
    image, _ = blob_image((96, 120), 6, 3, radius=7)
    wide = np.repeat(image, 2, axis=1)
    variants = {
        "strided view": (wide[:, ::2], image),
        "Fortran order": (np.asfortranarray(image), image),
        "transposed view": (image.T.copy().T, image),
        "big-endian": (image.astype(">u2"), image),
        "reversed view": (image[::-1, ::-1], np.ascontiguousarray(image[::-1, ::-1])),
        "bool": (image > 30000, (image > 30000).astype(np.uint8)),
    }
    with Pipeline.from_engines(NumpyEngine(nchan=2), run=RUN) as pipe:
        for name, (odd, plain) in variants.items():
            got, want = pipe.run(odd).masks, pipe.run(plain).masks
            assert np.array_equal(got, want), name
        assert pipe.run(image[:1, :1]).masks.shape == (1, 1)


def test_a_lock_file_a_killed_run_left_on_a_finished_image_goes_on_the_next_run(tmp_path, stand_in):
    _image(tmp_path / "a.tif")
    assert _run([tmp_path / "a.tif"]).count("done") == 1
    lock_path(tmp_path / "a_cp_masks.tif").write_text("{}")  # killed between its last write and release
    assert _run([tmp_path / "a.tif"]).count("skipped") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tif", "a_cp_masks.tif"]
