"""The CUDA dynamics kernels in numba's simulator, element for element against the CPU kernels.

Not collected directly (no test_ prefix): ``test_dynamics_cuda.py`` runs this module in a
subprocess with NUMBA_ENABLE_CUDASIM=1, which must be set before numba.cuda is first imported.
The simulator runs every thread in Python, so the cases are small (32x32 .. 48x48).
"""

from __future__ import annotations

import numpy as np
import pytest

from cp3rt.runtime.dynamics.cuda import _env

if not _env.simulator_enabled():
    pytest.skip("run through test_dynamics_cuda.py (needs NUMBA_ENABLE_CUDASIM=1 at start-up)",
                allow_module_level=True)

from numba import cuda  # noqa: E402  (after the simulator check)

from cp3rt.runtime.dynamics import DynamicsConfig, compute_masks_with  # noqa: E402
from cp3rt.runtime.dynamics._euler import follow  # noqa: E402
from cp3rt.runtime.dynamics._heat import flow_errors  # noqa: E402
from cp3rt.runtime.dynamics._labels import label_boxes  # noqa: E402
from cp3rt.runtime.dynamics._prepare import prepare  # noqa: E402
from cp3rt.runtime.dynamics._seeds import find_seeds, histogram  # noqa: E402
from cp3rt.runtime.dynamics.assemble import get_masks  # noqa: E402
from cp3rt.runtime.dynamics.cleanup import fill_holes_int32  # noqa: E402
from cp3rt.runtime.dynamics.cuda import _cleanup  # noqa: E402
from cp3rt.runtime.dynamics.cuda import _stages as st  # noqa: E402
from cp3rt.runtime.dynamics.cuda import compute_masks_cuda, end_points_cuda  # noqa: E402

from . import naive, synth  # noqa: E402

NITER = 40  # enough for the synthetic cells (radius <= 8 px) to converge


@pytest.fixture(scope="module")
def scene():
    """32x40 cells with a few small ones (min_size) and weak flows (the QC drops those)."""
    lab = synth.with_small_cells(synth.ellipse_cells((32, 40), 6, seed=3), 1, seed=3)
    dP, prob = synth.net_outputs(lab, seed=3, weak_fraction=0.3)
    return dP, prob


def _cpu_end_points(dP, prob, niter, interp):
    _, field, ys, xs = prepare(dP, prob, np.float32(0.0))
    return ys, xs, follow(field, ys, xs, niter, interp)


@pytest.mark.parametrize("interp", [True, False])
def test_end_points_are_bit_identical(scene, interp):
    dP, prob = scene
    ys, xs, ends = end_points_cuda(dP, prob, DynamicsConfig(niter=NITER, interp=interp))
    cys, cxs, cends = _cpu_end_points(dP, prob, NITER, interp)
    np.testing.assert_array_equal(ys, cys)
    np.testing.assert_array_equal(xs, cxs)
    assert ends.dtype == np.float32
    np.testing.assert_array_equal(ends, cends)  # bits: same float32 values, no tolerance
    # and the plain every-step reference (no cycle shortcut) agrees as well
    np.testing.assert_array_equal(ends, naive.follow_flows(
        prepare(dP, prob, np.float32(0.0))[1], (cys, cxs), NITER, interp))


def test_zero_steps_end_where_they_start(scene):
    dP, prob = scene
    ys, xs, ends = end_points_cuda(dP, prob, DynamicsConfig(niter=0))
    np.testing.assert_array_equal(ends, np.stack([ys, xs]).astype(np.float32))


def _device_seed_stage(ends, shape):
    stream = cuda.default_stream()
    return st.seeds(cuda, cuda.to_device(ends), shape, stream), stream


def test_histogram_seeds_and_regions_match_the_cpu_kernels(scene):
    dP, prob = scene
    shape = prob.shape
    ys, xs, ends = _cpu_end_points(dP, prob, NITER, True)
    seeded, _ = _device_seed_stage(ends, shape)
    pts = ends.astype(np.int32).astype(np.int64)
    hist, qy, qx = histogram(pts[0], pts[1], *shape)
    np.testing.assert_array_equal(seeded.hist.copy_to_host(), hist)
    np.testing.assert_array_equal(seeded.qy.copy_to_host(), qy)
    np.testing.assert_array_equal(seeded.qx.copy_to_host(), qx)
    sy, sx, cnt = find_seeds(hist)
    assert seeded.count == sy.size > 0
    np.testing.assert_array_equal(seeded.sy.copy_to_host()[:sy.size], sy)
    np.testing.assert_array_equal(seeded.sx.copy_to_host()[:sx.size], sx)
    # The device canvas holds (count, seed index) keys; the CPU canvas holds paint ranks.
    from cp3rt.runtime.dynamics._seeds import paint, seed_regions

    order = np.argsort(cnt, kind="stable")
    cpu_canvas = paint(hist.shape, sy, sx, seed_regions(hist, sy, sx), order)
    cpu_seed = np.where(cpu_canvas > 0, order[np.maximum(cpu_canvas, 1) - 1] + 1, 0)
    keys = seeded.canvas.copy_to_host()
    np.testing.assert_array_equal(np.where(keys > 0, keys % 2**32 + 1, 0), cpu_seed)
    np.testing.assert_array_equal(keys >> 32, np.where(keys > 0, hist, 0))


def _labels_both_ways(ends, ys, xs, shape, max_size_fraction=0.4):
    seeded, stream = _device_seed_stage(ends, shape)
    lab, nlab = st.labels(cuda, seeded, cuda.to_device(ys.astype(np.int32)),
                          cuda.to_device(xs.astype(np.int32)), shape, max_size_fraction, stream)
    cpu = get_masks(ends.astype(np.int32), (ys, xs), shape, max_size_fraction)
    return lab.copy_to_host(), nlab, cpu


@pytest.mark.parametrize("max_size_fraction", [0.4, 0.05])
def test_labels_and_their_numbering_match_the_cpu(scene, max_size_fraction):
    dP, prob = scene
    ys, xs, ends = _cpu_end_points(dP, prob, NITER, True)
    lab, nlab, cpu = _labels_both_ways(ends, ys, xs, prob.shape, max_size_fraction)
    assert cpu.max() > 0
    np.testing.assert_array_equal(lab, cpu)  # raw equality: the numbering is deterministic
    assert nlab == cpu.max()


def test_equal_count_seeds_overlap_like_raster_order_painting():
    """Two seeds with 12 end points each, 7 bins apart, joined by bins with 3: their regions
    overlap and the one later in raster order (painted last on the CPU) owns the overlap."""
    bins = [(10, 10)] * 12 + [(10, 17)] * 12 + [(10, c) for c in range(11, 17) for _ in range(3)]
    ends = np.array(bins, np.float32).T + np.float32(0.5)  # truncation drops the .5
    shape = (32, 32)
    ys, xs = np.divmod(np.arange(ends.shape[1]), shape[1])
    lab, _, cpu = _labels_both_ways(ends, ys, xs, shape)
    np.testing.assert_array_equal(lab, cpu)
    np.testing.assert_array_equal(cpu, naive.get_masks(ends.astype(np.int64), (ys, xs), shape))
    owners = cpu[ys, xs]
    assert set(owners[:12]) == {1} and set(owners[12:24]) == {2}
    assert (owners[24 + 3 * 2:] == 2).all()  # columns 13..16: within reach of both -> later seed


def test_flow_errors_match_the_cpu_kernel(scene):
    dP, prob = scene
    lab = compute_masks_with(dP, prob, DynamicsConfig(niter=NITER, flow_threshold=0, min_size=-1))
    lab = lab.astype(np.int32)
    lab[lab == 2] = 0  # an absent label: NaN on both sides
    flow5 = np.where(np.isfinite(dP), dP / np.float32(5.0), np.float32(0.0)).astype(np.float32)
    stream = cuda.default_stream()
    err = st.flow_errors(cuda, cuda.to_device(lab), int(lab.max()), cuda.to_device(flow5), stream)
    err = err.copy_to_host()
    cpu = flow_errors(lab, label_boxes(lab), flow5)
    np.testing.assert_array_equal(err, cpu)  # float64 bits, NaN where absent
    assert np.isnan(err[1]) and (err[~np.isnan(err)] > 0.4).any()  # the weak cells fail


CONFIGS = {
    "defaults": DynamicsConfig(niter=NITER),
    "nearest_no_qc_resized_reference_bugs": DynamicsConfig(
        niter=NITER, interp=False, flow_threshold=None, output_shape=(48, 44), reference_bugs=True),
    "big_masks_removed": DynamicsConfig(niter=NITER, max_size_fraction=0.05, min_size=-1),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_compute_masks_cuda_equals_the_cpu_path(scene, name):
    dP, prob = scene
    config = CONFIGS[name]
    cpu = compute_masks_with(dP, prob, config)
    timings: dict[str, float] = {}
    gpu = compute_masks_cuda(dP, prob, config, timings=timings)
    assert gpu.dtype == cpu.dtype and gpu.shape == cpu.shape
    np.testing.assert_array_equal(gpu, cpu)
    assert cpu.max() > 0
    expected = {"prepare", "euler", "seeds", "labels", "cleanup", "copy_back"}  # no host_cleanup
    assert expected | ({"qc"} if config.qc_enabled else set()) == set(timings)


def test_device_arrays_on_a_stream_are_used_in_place(scene):
    dP, prob = scene
    config = DynamicsConfig(niter=NITER, flow_threshold=0)
    stream = cuda.stream()
    gpu = compute_masks_cuda(cuda.to_device(dP, stream=stream), cuda.to_device(prob, stream=stream),
                             config, stream=stream)
    np.testing.assert_array_equal(gpu, compute_masks_with(dP, prob, config))


@pytest.mark.parametrize("threshold", [100.0, 6.5])
def test_no_foreground_or_no_seeds_give_empty_masks(scene, threshold):
    """100: nothing is foreground; 6.5: ~45 scattered pixels, too few end points for a seed."""
    dP, prob = scene
    config = DynamicsConfig(niter=NITER, cellprob_threshold=threshold)
    cpu = compute_masks_with(dP, prob, config)
    assert (prob > threshold).sum() < 50
    gpu = compute_masks_cuda(dP, prob, config)
    assert gpu.dtype == cpu.dtype == np.uint16 and cpu.max() == 0
    np.testing.assert_array_equal(gpu, cpu)


def _cleanup_scene():
    """Labels with gaps (as the QC leaves them) out of raster order, background holes (one
    pixel, a 2x2, one open to the border), masks under min_size 15 and a 3x3 hole-free one."""
    lab = np.zeros((24, 26), np.int32)
    lab[1:9, 1:9] = 7
    lab[4, 4] = 0  # a one-pixel hole
    lab[1:8, 12:20] = 2
    lab[3:5, 14:16] = 0  # a 2x2 hole
    lab[4, 19] = 0  # a notch on the box border: not a hole
    lab[12:15, 3:6] = 9  # 9 px < 15: removed
    lab[11:22, 10:22] = 4
    lab[15, 13] = 0
    lab[16:18, 2:6] = 5  # 8 px
    lab[20:24, 0:6] = 3
    return lab


@pytest.mark.parametrize("resize_to", [None, (31, 17)])
@pytest.mark.parametrize("min_size", [15, -1])
@pytest.mark.parametrize("reference_bugs", [False, True])
def test_device_cleanup_equals_fill_holes_int32(min_size, reference_bugs, resize_to):
    from cp3rt.runtime.dynamics.resize import resize_nearest

    lab = _cleanup_scene()
    stream = cuda.default_stream()
    d_lab = cuda.to_device(lab)
    if resize_to is not None:
        d_lab = _cleanup.resize(cuda, d_lab, resize_to, stream)
        lab = resize_nearest(lab, resize_to)
        np.testing.assert_array_equal(d_lab.copy_to_host(), lab)
    out = _cleanup.finish(cuda, d_lab, int(lab.max()), min_size, reference_bugs, stream)
    assert out is not None
    cpu = fill_holes_int32(lab, min_size, reference_bugs)
    got = out.copy_to_host()
    assert got.dtype == np.uint16
    np.testing.assert_array_equal(got, cpu)
    if resize_to is None and not reference_bugs:  # the scene does what its docstring says
        assert (cpu[lab == 0] > 0).sum() == 6  # 1 + 4 + 1 hole pixels filled
        assert (cpu[lab == 9] == 0).all() == (min_size == 15)


def test_a_label_enclosing_another_is_left_to_the_sequential_cleanup():
    lab = _cleanup_scene()
    lab[2:7, 2:7] = 7
    lab[4, 4] = 8  # label 8 sits in a hole of label 7: who swallows whom depends on order
    out = _cleanup.finish(cuda, cuda.to_device(lab), int(lab.max()), -1, False,  # 8 stays
                          cuda.default_stream())
    assert out is None


def test_the_sequential_fallback_gives_the_cpu_result(scene, monkeypatch):
    dP, prob = scene
    monkeypatch.setattr(_cleanup, "finish", lambda *args: None)
    config = DynamicsConfig(niter=NITER, flow_threshold=0)
    timings: dict[str, float] = {}
    gpu = compute_masks_cuda(dP, prob, config, timings=timings)
    np.testing.assert_array_equal(gpu, compute_masks_with(dP, prob, config))
    assert "host_cleanup" in timings


def test_flow_error_sources_tie_like_the_cpu():
    """Even-sided rectangles put several pixels at the same distance from the centroid; the
    source must be the first of them in raster order, whichever thread finds it."""
    lab = np.zeros((20, 22), np.int32)
    lab[1:3, 1:3] = 1  # 2x2: all four pixels tie
    lab[5:9, 2:8] = 2  # 4x6: four central pixels tie
    lab[11:19, 12:20] = 3  # 8x8
    lab[12:14, 3:9] = 4
    flow5 = np.random.default_rng(0).normal(0, 0.5, (2, *lab.shape)).astype(np.float32)
    stream = cuda.default_stream()
    err = st.flow_errors(cuda, cuda.to_device(lab), 4, cuda.to_device(flow5), stream)
    np.testing.assert_array_equal(err.copy_to_host(), flow_errors(lab, label_boxes(lab), flow5))
