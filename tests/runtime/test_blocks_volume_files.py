"""Huge volume files (issue 7): 3-D TIFF in -> 3-D BigTIFF labels out (atomically, skipped when
done), OME-Zarr in -> (Z, Y, X) labels/ group, lazy (Z, [C,] Y, X) views of file layouts, the
size rule, and failures that name the file and the problem."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import zarr
from volume_testutil import BLOCK, DIAM, SoftEngine, seam_volume

from cp3rt import Pipeline
from cp3rt.errors import ConfigError, InputError
from cp3rt.runtime.batch.blocks import volume_files
from cp3rt.runtime.batch.blocks.lazy import tiff_axes
from cp3rt.runtime.batch.blocks.volume import segment_volume_blocks
from cp3rt.runtime.batch.blocks.volume_files import (
    VolumeView,
    is_huge_volume,
    is_volume_input,
    open_volume,
    segment_volume_file,
    volume_axes,
)
from cp3rt.runtime.batch.files import OutputOptions
from cp3rt.runtime.config import RunConfig
from cp3rt.runtime.io.ngff import read_image
from cp3rt.runtime.io.zarr_io import is_complete, open_lazy, write_ngff_image
from cp3rt.runtime.quality.metrics import average_precision

MIN_AP90_SAME = 1.0  # file path vs library call on the same blocks and engine: nothing may change
# as `cp3rt run` builds it: channels=(chan, chan2) for a 2-channel net
RUN = RunConfig(do_3D=True, anisotropy=2.0, min_size=10, diameter=DIAM, channels=(0, 0))


@pytest.fixture(scope="module")
def scene():
    vol, truth, block_z = seam_volume(2.0, seed=4)
    out = np.zeros(vol.shape, np.uint32)
    with Pipeline.from_engines(SoftEngine(diam_mean=DIAM)) as p:
        segment_volume_blocks(p, vol, out, diameter=DIAM, run=RUN.replace(channels=None), block_size=BLOCK,
                              block_size_z=block_z)
    return vol, out, block_z


def _file(path, outputs=None, run=RUN, block_z=10, nchan=2):
    with Pipeline.from_engines(SoftEngine(nchan=nchan, diam_mean=DIAM)) as p:
        return segment_volume_file(p, path, run, outputs or OutputOptions(), block_size=BLOCK,
                                   block_size_z=block_z)


def _ap90(a, b):
    return float(average_precision(a, b, [0.9])[0][0])


def test_tiff_volume_writes_3d_bigtiff_atomically_and_rerun_skips(tmp_path, scene):
    vol, reference, block_z = scene
    src = tmp_path / "stack.tif"
    tifffile.imwrite(src, vol)
    outcome = _file(src, block_z=block_z)
    assert outcome.status == "done" and outcome.n_objects == reference.max()
    final = tmp_path / "stack_cp_masks.tif"
    assert outcome.outputs == (final,)
    with tifffile.TiffFile(final) as tf:
        assert tf.is_bigtiff and tf.series[0].axes == "ZYX"
        got = tf.asarray()
    assert got.dtype == np.uint32 and got.shape == vol.shape
    assert _ap90(reference, got) >= MIN_AP90_SAME
    assert not list(tmp_path.glob(".*part*"))
    mtime = final.stat().st_mtime_ns
    assert _file(src, block_z=block_z).status == "skipped"
    assert final.stat().st_mtime_ns == mtime
    assert _file(src, OutputOptions(overwrite=True), block_z=block_z).status == "done"


def test_a_failing_run_leaves_no_file(tmp_path, scene, monkeypatch):
    vol, _, block_z = scene
    src = tmp_path / "stack.tif"
    tifffile.imwrite(src, vol)

    def half_then_fail(pipeline, volume, out, **kw):
        out[: len(out) // 2] = 7
        raise InputError("disk went away")

    monkeypatch.setattr(volume_files, "segment_volume_blocks", half_then_fail)
    outcome = _file(src, block_z=block_z)
    assert outcome.status == "failed" and "stack.tif" in outcome.error and "disk went away" in outcome.error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stack.tif"]


def test_ome_zarr_czyx_gets_3d_labels_group_and_rerun_skips(tmp_path, scene):
    vol, reference, block_z = scene
    root = tmp_path / "vol.ome.zarr"
    # NGFF 0.5 (zarr v3), two levels (Y, X halved), anisotropic pixels in micrometres
    write_ngff_image(root, np.stack([vol, vol // 3]), chunks=32, axes="czyx", version="0.5", scale_factors=(2,),
                     scale={"z": 2.0, "y": 0.5, "x": 0.5}, units=dict.fromkeys("zyx", "micrometer"))
    outcome = _file(root, run=RUN.replace(channels=None), block_z=block_z)
    assert outcome.status == "done" and is_complete(root)
    got = np.asarray(open_lazy(root / "labels" / "cp3rt")[...])
    assert got.shape == vol.shape and _ap90(reference, got) >= MIN_AP90_SAME
    image, labels = read_image(root), read_image(root / "labels" / "cp3rt")
    assert labels.version == "0.5" and labels.axis_names == "zyx" and labels.units() == image.units()
    assert [s[1:] for s in image.shapes] == list(labels.shapes) and len(labels.shapes) == 2
    assert [image.scale(k)[1:] for k in range(2)] == [labels.scale(k) for k in range(2)] == [(2.0, 0.5, 0.5),
                                                                                             (2.0, 1.0, 1.0)]
    level1 = np.asarray(zarr.open_array(str(root / "labels" / "cp3rt" / "1"), mode="r")[...])
    np.testing.assert_array_equal(level1, got[:, 1::2, 1::2])  # nearest neighbour, never blended
    assert _file(root, run=RUN.replace(channels=None), block_z=block_z).status == "skipped"


def test_size_rule_and_volume_detection(tmp_path):
    p = tmp_path / "v.tif"
    tifffile.imwrite(p, np.zeros((6, 30, 50), np.uint8))
    assert is_volume_input(p)
    assert is_huge_volume(p, side=49, voxels=10**9) and not is_huge_volume(p, side=50, voxels=10**9)
    assert is_huge_volume(p, side=50, voxels=6 * 30 * 50 - 1) and not is_huge_volume(p, side=50, voxels=9000)
    flat = tmp_path / "flat.tif"
    tifffile.imwrite(flat, np.zeros((300, 300), np.uint8))
    assert not is_volume_input(flat) and not is_huge_volume(flat, side=10, voxels=10)
    write_ngff_image(tmp_path / "v.zarr", np.zeros((5, 40, 40), np.uint8), chunks=16, axes="zyx")
    assert is_huge_volume(tmp_path / "v.zarr", side=39) and not is_huge_volume(tmp_path / "v.zarr", side=40)
    assert not is_volume_input(tmp_path / "nothing_here")


def test_layouts_read_lazily_as_zcyx(tmp_path):
    rng = np.random.default_rng(0)
    zcyx = rng.integers(0, 255, (5, 2, 20, 30), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "ij.tif", zcyx, imagej=True, metadata={"axes": "ZCYX"})
    v = open_volume(tmp_path / "ij.tif")
    assert v.shape == (5, 2, 20, 30)
    np.testing.assert_array_equal(v[1:4, ..., 2:9:2, 3:], zcyx[1:4, :, 2:9:2, 3:])
    rgb = rng.integers(0, 255, (4, 20, 30, 3), dtype=np.uint8)  # (Z, Y, X, S) RGB stack
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    assert tiff_axes(tmp_path / "rgb.tif")[1].endswith("YXS")
    np.testing.assert_array_equal(open_volume(tmp_path / "rgb.tif")[...], np.moveaxis(rgb, -1, 1))
    plain = rng.integers(0, 9, (6, 20, 30), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "plain.tif", plain)  # axes QYX: the one other axis is Z
    assert open_volume(tmp_path / "plain.tif").shape == (6, 20, 30)
    tczyx = rng.integers(0, 9, (1, 2, 6, 20, 30), dtype=np.uint16)
    write_ngff_image(tmp_path / "t.zarr", tczyx, chunks=16, axes="tczyx")
    np.testing.assert_array_equal(open_volume(tmp_path / "t.zarr")[2:5], tczyx[0].transpose(1, 0, 2, 3)[2:5])
    # an explicit z_axis / channel_axis wins over the file's names
    czyx = tczyx[0]
    tifffile.imwrite(tmp_path / "czyx.tif", czyx)
    np.testing.assert_array_equal(open_volume(tmp_path / "czyx.tif", z_axis=1, channel_axis=0)[...],
                                  czyx.transpose(1, 0, 2, 3))
    assert volume_axes((3, 2, 20, 30), "QQYX") == "ZCYX"  # two unnamed axes: the shorter is C
    assert volume_axes((2, 3, 20, 30), "QQYX") == "CZYX"
    assert volume_axes((1, 3, 7, 20, 30), "TCQYX") == "1CZYX"
    with pytest.raises(InputError, match="not a volume"):  # a named channel axis is never Z
        volume_axes((1, 5, 1, 20, 30), "TCZYX", "cells.ome.zarr")
    assert VolumeView(czyx, "CZYX").shape == (6, 2, 20, 30)


def test_bad_inputs_fail_with_the_file_and_the_problem(tmp_path, scene):
    with pytest.raises(InputError, match="T=3"):
        volume_axes((3, 5, 20, 30), "TZYX", "movie.tif")
    with pytest.raises(InputError, match="not a volume"):
        volume_axes((20, 30), "YX", "flat.tif")
    with pytest.raises(ConfigError, match="z_axis=5"):
        volume_axes((5, 20, 30), "ZYX", "v.tif", z_axis=5)
    flat = tmp_path / "flat.tif"
    tifffile.imwrite(flat, np.zeros((64, 64), np.uint16))
    outcome = _file(flat)
    assert outcome.status == "failed" and "flat.tif" in outcome.error and "not a volume" in outcome.error
    src = tmp_path / "v.tif"
    tifffile.imwrite(src, scene[0])
    outcome = _file(src, OutputOptions(overlay=True, save_flows=True))
    assert outcome.status == "failed" and "--overlay" in outcome.error and "--flows" in outcome.error
    outcome = _file(src, run=RunConfig(diameter=DIAM))
    assert outcome.status == "failed" and "do_3D" in outcome.error
    assert not (tmp_path / "v_cp_masks.tif").exists()


def test_cli_runs_a_volume_in_3d_blocks(tmp_path, scene, monkeypatch):
    """`cp3rt run stack.tif --do-3d --blocks` takes the volume path (3-D blocks), not the 2-D one."""
    from cp3rt.cli.app import main

    monkeypatch.setattr(Pipeline, "from_config", classmethod(lambda cls, cfg, run=None: Pipeline.from_engines(
        SoftEngine(nchan=2, diam_mean=DIAM), run=run)))
    vol = scene[0]
    src = tmp_path / "stack.tif"
    tifffile.imwrite(src, vol)
    want = np.zeros(vol.shape, np.uint32)
    with Pipeline.from_engines(SoftEngine(diam_mean=DIAM)) as p:
        segment_volume_blocks(p, vol, want, diameter=DIAM, run=RUN.replace(channels=None), block_size=BLOCK)
    args = ["run", str(src), "--do-3d", "--anisotropy", "2", "--min-size", "10", "--diameter", str(DIAM),
            "--blocks", "--block-size", str(BLOCK), "--out", str(tmp_path / "o")]
    assert main(args) == 0
    with tifffile.TiffFile(tmp_path / "o" / "stack_cp_masks.tif") as tf:
        assert tf.is_bigtiff and tf.series[0].axes == "ZYX"  # the 3-D block writer, not the 2-D one
        got = tf.asarray()
    assert want.max() > 0 and _ap90(want, got) >= MIN_AP90_SAME


def test_split_inputs_sends_big_volumes_to_blocks_only_for_volume_runs(tmp_path):
    from cp3rt.runtime.batch.blocks.files import split_inputs

    vol = np.zeros((6, 40, 50), np.uint16)  # 12,000 voxels, sides under the 64 used below
    tifffile.imwrite(tmp_path / "v.tif", vol)
    tifffile.imwrite(tmp_path / "small.tif", vol[:, :20, :20])
    huge, rest = split_inputs([tmp_path], side=64)
    assert huge == [] and len(rest) == 2
    huge, rest = split_inputs([tmp_path], side=64, volumes=True, volume_voxels=10_000)
    assert [p.name for p in huge] == ["v.tif"] and [p.name for p in rest] == ["small.tif"]
