"""Issue 14 item 3: a file's axes are taken as the file declares them, and planes that are not
declared channels are never averaged into one 2-D image. One case per layout (TYX, ZYX, CYX,
YXC, TCZYX, and an untagged stack): what the planner decides, and what a batch run writes."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from scale_testutil import NumpyEngine, blob_image

from cp3rt import Pipeline
from cp3rt.errors import InputError
from cp3rt.runtime import OutputOptions, RunConfig
from cp3rt.runtime.batch.files import run_batch
from cp3rt.runtime.io.read import read_axes
from cp3rt.runtime.prep.declared_axes import AxesPlan, plan_axes

RUN = RunConfig(channels=(0, 0), diameter=20.0)
STITCH = RUN.replace(stitch_threshold=0.25)
YX = (64, 64)


# the planner, per layout ---------------------------------------------------------------------

@pytest.mark.parametrize("shape, axes, volume, want", [
    ((3, *YX), "TYX", False, AxesPlan(frames=0)),
    ((5, *YX), "ZYX", True, AxesPlan(z_axis=0)),
    ((2, *YX), "CYX", False, AxesPlan(channel_axis=0)),
    ((*YX, 3), "YXC", False, AxesPlan(channel_axis=2)),
    ((2, 4, 2, *YX), "TZCYX", True, AxesPlan(frames=0, channel_axis=1, z_axis=0)),
    ((2, 2, 4, *YX), "TCZYX", True, AxesPlan(frames=0, channel_axis=0, z_axis=1)),
    ((3, 2, *YX), "TCYX", False, AxesPlan(frames=0, channel_axis=0)),
    ((1, 1, 3, *YX), "TZCYX", False, AxesPlan(channel_axis=2)),  # size-1 axes are no stack
    ((5, *YX), "?YX", True, AxesPlan(z_axis=0)),  # --do-3d: a bare stack is Z, as before
])
def test_plan(shape, axes, volume, want):
    assert plan_axes(shape, axes, volume=volume) == want


@pytest.mark.parametrize("shape, axes, options", [
    ((5, *YX), "ZYX", ("--do-3d", "--stitch-threshold", "--channel-axis")),
    ((2, 2, 4, *YX), "TCZYX", ("--do-3d", "--stitch-threshold")),
    ((5, *YX), "?YX", ("--do-3d", "--stitch-threshold", "--z-axis", "--channel-axis")),
    ((3, *YX), None, ("--do-3d", "--stitch-threshold", "--z-axis", "--channel-axis")),  # a .npy
])
def test_plan_refuses_to_merge_planes_in_2d(shape, axes, options):
    with pytest.raises(InputError) as info:
        plan_axes(shape, axes, volume=False, source="x.tif")
    text = str(info.value)
    assert "\n" not in text and text.startswith("x.tif") and "merge" in text
    for option in options:
        assert option in text


def test_channels_picked_by_number_read_a_small_undeclared_axis_as_channels():
    """`--chan 2 --chan2 1` on a bare 2-plane TIFF (as numpy/tifffile save it): Cellpose's
    reading, a choice of planes; gray (0) or no choice would average or cut them: refused."""
    assert plan_axes((2, *YX), "?YX", volume=False, picked_channels=True) == AxesPlan(channel_axis=0)
    with pytest.raises(InputError, match="--channel-axis"):
        plan_axes((2, *YX), "?YX", volume=False)
    with pytest.raises(InputError, match="--do-3d"):  # 12 planes are no channels
        plan_axes((12, *YX), "?YX", volume=False, picked_channels=True)


def test_named_axes_win():
    assert plan_axes((5, *YX), "ZYX", volume=False, channel_axis=0) == AxesPlan(channel_axis=0)


# files through a batch run ---------------------------------------------------------------------

def _frames(n, seed=0):
    return np.stack([blob_image(YX, 4, seed + i, radius=6)[0] for i in range(n)])


def _run(tmp_path, name, data, run=RUN, **meta):
    path = tmp_path / name
    tifffile.imwrite(path, data, **{"photometric": "minisblack", **meta})
    pipe = Pipeline.from_engines(NumpyEngine(nchan=2), run=run)
    summary = run_batch(pipe, [path], run, OutputOptions())
    return pipe, path, summary.outcomes[0]


def test_tyx_hyperstack_gives_a_t_stack_of_labels(tmp_path):
    data = _frames(3)
    pipe, path, outcome = _run(tmp_path, "t.tif", data, imagej=True, metadata={"axes": "TYX"})
    assert outcome.status == "done", outcome.error
    with tifffile.TiffFile(tmp_path / "t_cp_masks.tif") as tif:
        assert tif.series[0].axes == "TYX" and tif.imagej_metadata["frames"] == 3
        masks = tif.asarray()
    assert masks.shape == (3, *YX)
    for t in range(3):  # each frame segmented on its own, exactly as a 2-D image
        np.testing.assert_array_equal(masks[t], pipe.run(data[t], run=RUN).masks)
    assert outcome.n_objects == sum(len(np.unique(m)) - 1 for m in masks)


def test_exclude_on_edges_works_per_frame(tmp_path):
    """Border objects of a T-stack are those touching each frame's border, not the first and
    last frames (which a volume's rule would drop whole)."""
    from cp3rt.runtime.io.edges import exclude_on_edges

    data = _frames(3)
    path = tmp_path / "t.tif"
    tifffile.imwrite(path, data, imagej=True, metadata={"axes": "TYX"})
    pipe = Pipeline.from_engines(NumpyEngine(nchan=2), run=RUN)
    outcome = run_batch(pipe, [path], RUN, OutputOptions(exclude_on_edges=True)).outcomes[0]
    assert outcome.status == "done", outcome.error
    masks = tifffile.imread(tmp_path / "t_cp_masks.tif")
    for t in (0, 2):
        want = exclude_on_edges(pipe.run(data[t], run=RUN).masks)
        assert want.max() > 0
        np.testing.assert_array_equal(masks[t], want)
    assert outcome.n_objects == sum(len(np.unique(m)) - 1 for m in masks)


def test_untagged_stack_is_refused_not_averaged(tmp_path):
    _, path, outcome = _run(tmp_path, "s.tif", _frames(5))
    assert read_axes(path, (5, *YX)) == "?YX"
    assert outcome.status == "failed"
    assert "--do-3d" in outcome.error and "--channel-axis" in outcome.error
    assert not (tmp_path / "s_cp_masks.tif").exists()


def test_zyx_is_refused_in_2d_and_is_z_in_3d(tmp_path):
    data = _frames(5)
    _, _, outcome = _run(tmp_path, "z.tif", data, imagej=True, metadata={"axes": "ZYX"})
    assert outcome.status == "failed" and "Z-stack of 5 planes" in outcome.error
    _, _, outcome = _run(tmp_path, "z.tif", data, run=STITCH, imagej=True, metadata={"axes": "ZYX"})
    assert outcome.status == "done", outcome.error
    assert tifffile.imread(tmp_path / "z_cp_masks.tif").shape == (5, *YX)


def test_cyx_channels_are_channels(tmp_path):
    data = _frames(2)
    pipe, _, outcome = _run(tmp_path, "c.tif", data, imagej=True, metadata={"axes": "CYX"})
    assert outcome.status == "done", outcome.error
    masks = tifffile.imread(tmp_path / "c_cp_masks.tif")
    np.testing.assert_array_equal(masks, pipe.run(data, run=RUN.replace(channel_axis=0)).masks)


def test_yxc_colour_is_channels(tmp_path):
    data = (np.moveaxis(_frames(3), 0, -1) // 256).astype(np.uint8)
    pipe, path, outcome = _run(tmp_path, "rgb.tif", data, photometric="rgb")
    assert read_axes(path, data.shape) == "YXC"
    assert outcome.status == "done", outcome.error
    masks = tifffile.imread(tmp_path / "rgb_cp_masks.tif")
    np.testing.assert_array_equal(masks, pipe.run(data, run=RUN).masks)


def test_tczyx_is_refused_in_2d_and_a_t_stack_of_volumes_with_stitching(tmp_path):
    data = np.stack([np.stack([_frames(3, seed=t), _frames(3, seed=t + 5)], axis=1) for t in range(2)])
    data = np.ascontiguousarray(np.moveaxis(data, 2, 1))  # (T, C, Z, Y, X)
    assert data.shape == (2, 2, 3, *YX)
    meta = {"metadata": {"axes": "TCZYX"}}
    _, path, outcome = _run(tmp_path, "h.tif", data, **meta)
    assert read_axes(path, data.shape) == "TCZYX"
    assert outcome.status == "failed" and "Z-stack of 3 planes" in outcome.error
    pipe, _, outcome = _run(tmp_path, "h.tif", data, run=STITCH, **meta)
    assert outcome.status == "done", outcome.error
    with tifffile.TiffFile(tmp_path / "h_cp_masks.tif") as tif:
        assert tif.series[0].axes == "TZYX"
        masks = tif.asarray()
    assert masks.shape == (2, 3, *YX)
    want = pipe.run(data[1], run=STITCH.replace(channel_axis=0, z_axis=1)).masks
    np.testing.assert_array_equal(masks[1], want)


def test_pipeline_run_on_a_path_follows_the_file(tmp_path):
    pipe = Pipeline.from_engines(NumpyEngine(nchan=2), run=RUN)
    tifffile.imwrite(tmp_path / "t.tif", _frames(3), imagej=True, metadata={"axes": "TYX"})
    with pytest.raises(InputError, match="3 T frames.*run_inputs"):
        pipe.run(tmp_path / "t.tif")
    tifffile.imwrite(tmp_path / "s.tif", _frames(5), photometric="minisblack")
    with pytest.raises(InputError, match="will not merge"):
        pipe.run(tmp_path / "s.tif")
    data = _frames(2)
    tifffile.imwrite(tmp_path / "c.tif", data, imagej=True, metadata={"axes": "CYX"})
    np.testing.assert_array_equal(pipe.run(tmp_path / "c.tif").masks,
                                  pipe.run(data, run=RUN.replace(channel_axis=0)).masks)
