"""cp3rt dynamics vs the reference oracle (cellpose 3.1.1.2, CPU path) on realistic flows.

Inputs: ground-truth masks from shared/data and a synthetic ~1000-cell image, turned into
network-like outputs (5 x heat-diffusion flows + noise, cellprob +-5 + noise). Masks are
compared by matching (AP at IoU 0.5/0.75/0.9); flows and end points, which are meant to be
bit-identical, are compared element-wise.
"""

from __future__ import annotations

import fastremap
import numpy as np
import pytest
import torch
from cellpose import dynamics as ref_dyn
from cellpose import metrics as ref_metrics
from cellpose import utils as ref_utils

from cp3rt.runtime.dynamics import (
    compute_masks,
    fill_holes_and_remove_small_masks,
    flow_error,
    follow_flows,
    get_masks,
    masks_to_flows,
)

from . import synth

pytestmark = [pytest.mark.reference, pytest.mark.filterwarnings("ignore:Sparse invariant checks")]

CPU = torch.device("cpu")
AP_MIN = 0.99          # AP at IoU 0.9 against the reference (all three thresholds checked)
FLOW_ATOL = 0.0        # masks_to_flows: same float64 operations in the same order
END_POINT_ATOL = 0.0   # Euler end points: the reference's float32/float64 recipe, bit-exact
FLOW_ERROR_RTOL = 1e-12

CASES = {
    "dsb2018": lambda: synth.read_mask("stardist_dsb2018_nuclei"),
    "gowt1": lambda: synth.read_mask("ctc_gowt1_nuclei", "seq01_t021.tif"),
    "sim01_t000": lambda: synth.read_mask("ctc_sim_nuclei", "seq01_t000.tif"),
    "sim02_t075": lambda: synth.read_mask("ctc_sim_nuclei", "seq02_t075.tif"),
    "synthetic_1000": lambda: synth.with_small_cells(
        synth.ellipse_cells((1024, 1024), 1000, seed=1), 40, seed=2),
}


def _ap(reference: np.ndarray, ours: np.ndarray) -> np.ndarray:
    ap = ref_metrics.average_precision(reference.astype(np.int64), ours.astype(np.int64))[0]
    return np.asarray(ap)


def _check_masks(name: str, reference: np.ndarray, ours: np.ndarray) -> None:
    ap = _ap(reference, ours)
    differ = np.mean((reference > 0) != (ours > 0))
    assert ap.min() >= AP_MIN, (
        f"{name}: AP@[0.5,0.75,0.9] = {ap} (min {AP_MIN}); {reference.max()} reference vs "
        f"{ours.max()} cp3rt masks; foreground mismatch rate {differ:.4%}"
    )
    assert ours.dtype == reference.dtype


def _params():
    # The 1000-cell case takes ~30 s of reference time on 2 cores: marked slow (still run in CI).
    return [pytest.param(n, marks=pytest.mark.slow) if n.startswith("synthetic") else n
            for n in sorted(CASES)]


@pytest.fixture(scope="module", params=_params())
def case(request):
    masks = CASES[request.param]()
    weak = 0.15 if request.param == "synthetic_1000" else 0.05
    dP, cellprob = synth.net_outputs(masks, seed=7, weak_fraction=weak)
    return request.param, masks, dP, cellprob


@pytest.mark.parametrize("flow_threshold", [0.4, 0.0])
def test_compute_masks_matches_reference(case, flow_threshold):
    name, _, dP, cellprob = case
    want = ref_dyn.resize_and_compute_masks(
        dP, cellprob, niter=200, flow_threshold=flow_threshold, min_size=15, device=CPU)
    got = compute_masks(dP, cellprob, niter=200, flow_threshold=flow_threshold, min_size=15,
                        reference_bugs=True)
    assert want.max() > 10, "the case should produce masks"
    _check_masks(f"{name} flow_threshold={flow_threshold}", want, got)


def test_stages_bit_identical_to_reference(case):
    """Flows from masks, end points and the flow errors, element by element."""
    name, masks, dP, cellprob = case
    mu = masks_to_flows(masks)
    mu_ref = ref_dyn.masks_to_flows(masks, device=CPU)
    worst = np.abs(mu - mu_ref).max()
    assert worst <= FLOW_ATOL, f"{name}: masks_to_flows worst abs diff {worst}, " \
        f"mismatch rate {np.mean(mu != mu_ref):.3%}"
    fg = cellprob > 0
    inds = np.nonzero(fg)
    field = dP * fg / 5.0
    ends = follow_flows(field, inds, 200)
    ends_ref = ref_dyn.follow_flows(field, inds, 200, interp=True, device=CPU)
    diff = np.abs(ends - ends_ref)
    assert diff.max() <= END_POINT_ATOL, (
        f"{name}: end point worst diff {diff.max()} at {np.unravel_index(diff.argmax(), diff.shape)}, "
        f"mismatch rate {np.mean(diff > 0):.3%}")
    labels = get_masks(ends.astype(np.int32), inds, fg.shape)
    labels_ref = ref_dyn.get_masks_torch(torch.from_numpy(ends_ref.astype(np.int32)), inds, fg.shape)
    _check_masks(f"{name} get_masks", labels_ref, labels.astype(labels_ref.dtype))
    err = flow_error(labels_ref, dP)
    err_ref = ref_metrics.flow_error(labels_ref, dP, device=CPU)[0]
    np.testing.assert_allclose(err, err_ref, rtol=FLOW_ERROR_RTOL, equal_nan=True,
                               err_msg=f"{name}: flow_error")


def test_interp_false_and_resize_match_reference():
    """interp=False, a threshold other than 0 and masks resized to a larger output size."""
    masks = synth.read_mask("ctc_sim_nuclei", "seq01_t040.tif")
    dP, cellprob = synth.net_outputs(masks, seed=2)
    small = (slice(0, 460), slice(0, 420))
    dP, cellprob = dP[:, small[0], small[1]].copy(), cellprob[small].copy()
    for interp, out_shape in ((False, None), (True, (613, 571))):
        want = ref_dyn.resize_and_compute_masks(
            dP, cellprob, niter=137, cellprob_threshold=0.5, interp=interp,
            resize=out_shape, device=CPU)
        got = compute_masks(dP, cellprob, niter=137.9, cellprob_threshold=0.5, interp=interp,
                            output_shape=out_shape, reference_bugs=True)
        assert got.shape == want.shape
        _check_masks(f"interp={interp} output_shape={out_shape}", want, got)


def test_fill_holes_parity_and_the_fixed_mode():
    """On QC output with gaps: parity mode = reference; fixed mode = reference run on labels
    renumbered without gaps (where the reference's index bug cannot strike)."""
    masks = synth.with_small_cells(synth.ellipse_cells((512, 512), 250, seed=4), 15, seed=5)
    dP, cellprob = synth.net_outputs(masks, seed=6, weak_fraction=0.2)
    qc = ref_dyn.compute_masks(dP, cellprob, niter=200, flow_threshold=0.4, device=CPU)
    assert len(np.unique(qc)) - 1 < qc.max(), "the QC should leave gaps for this test"
    want_bug = ref_utils.fill_holes_and_remove_small_masks(qc.copy(), min_size=15)
    got_bug = fill_holes_and_remove_small_masks(qc, 15, reference_bugs=True)
    _check_masks("reference_bugs=True", want_bug, got_bug)
    assert got_bug.max() == want_bug.max()
    no_gaps = fastremap.renumber(qc.copy())[0].astype(qc.dtype)  # renumber shrinks dtypes
    want_fixed = ref_utils.fill_holes_and_remove_small_masks(no_gaps, min_size=15)
    got_fixed = fill_holes_and_remove_small_masks(qc, 15)
    _check_masks("fixed", want_fixed, got_fixed)
    assert got_fixed.max() > got_bug.max(), "the bug should have removed good masks here"
