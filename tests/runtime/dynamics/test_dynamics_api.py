"""Public API of cp3rt.runtime.dynamics: config validation, edge cases, dtypes, niter rule."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from cp3rt.errors import ConfigError, InputError
from cp3rt.runtime.dynamics import (
    DynamicsConfig,
    compute_masks,
    compute_masks_with,
    fill_holes_and_remove_small_masks,
    flow_error,
    masks_to_flows,
    niter_for,
    remove_bad_flow_masks,
)


def grid_cells(n_side: int, cell: int = 4, gap: int = 1) -> np.ndarray:
    """n_side x n_side square cells of ``cell`` px separated by ``gap`` px of background."""
    step = cell + gap
    lab = np.zeros((n_side * step, n_side * step), np.uint32)
    ids = np.arange(1, n_side * n_side + 1, dtype=np.uint32).reshape(n_side, n_side)
    for dy in range(cell):
        for dx in range(cell):
            lab[dy::step, dx::step] = ids
    return lab


def outputs_for(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    dP = (5 * masks_to_flows(masks)).astype(np.float32)
    return dP, np.where(masks > 0, 5.0, -5.0).astype(np.float32)


# ---------------------------------------------------------------- configuration

@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("niter", -1), ("niter", float("nan")), ("niter", 2**31), ("niter", "200"),
        ("cellprob_threshold", float("inf")), ("cellprob_threshold", None),
        ("flow_threshold", -0.1), ("flow_threshold", float("nan")),
        ("min_size", 2.5), ("min_size", True),
        ("max_size_fraction", 0.0), ("max_size_fraction", 1.5),
        ("interp", 1), ("reference_bugs", "yes"),
        ("output_shape", (0, 5)), ("output_shape", (5,)), ("output_shape", (5.5, 4)),
        ("output_shape", (True, 4)),
    ],
)
def test_config_rejects_bad_values_naming_the_field(field, value):
    with pytest.raises(ConfigError, match=field):
        DynamicsConfig(**{field: value})


def test_config_defaults_and_normalisation():
    cfg = DynamicsConfig(niter=266.67, flow_threshold=None, output_shape=[np.int64(7), 9])
    assert cfg.steps == 266 and not cfg.qc_enabled and cfg.output_shape == (7, 9)
    d = DynamicsConfig()
    assert (d.niter, d.cellprob_threshold, d.flow_threshold, d.min_size, d.max_size_fraction,
            d.interp, d.output_shape, d.reference_bugs) == (200, 0.0, 0.4, 15, 0.4, True, None, False)
    with pytest.raises(AttributeError):
        d.niter = 3  # type: ignore[misc]


def test_niter_rule_conformance_vectors():
    assert niter_for(30.0 / 45.0, True, None) == 300  # diameter 45 on a 30 model
    assert niter_for(30.0 / 23.5, True, 0) == 156  # diam_labels 23.5: 156.67 truncated
    assert niter_for(30.0 / 45.0, False, None) == 200
    assert niter_for(1.0, True, 266.67) == 266  # user value wins, uint32 truncation
    with pytest.raises(ConfigError, match="rescale"):
        niter_for(0.0, True, None)
    with pytest.raises(ConfigError, match="niter"):
        niter_for(1.0, True, -5)


# ---------------------------------------------------------------- compute_masks edge cases

def test_empty_foreground_and_no_seeds_give_uint16_zeros():
    dP = np.zeros((2, 20, 30), np.float32)
    none = compute_masks(dP, np.full((20, 30), -1.0, np.float32), output_shape=(40, 61))
    assert none.dtype == np.uint16 and none.shape == (40, 61) and not none.any()
    # Foreground everywhere but zero flow: every bin gets one end point, so no seed.
    flat = compute_masks(dP, np.ones((20, 30), np.float32))
    assert flat.dtype == np.uint16 and flat.shape == (20, 30) and not flat.any()
    assert compute_masks(np.zeros((2, 0, 4)), np.zeros((0, 4))).shape == (0, 4)


def test_non_finite_inputs_are_background_and_zero_flow():
    masks = grid_cells(6, cell=6, gap=2).astype(np.uint16)
    dP, cellprob = outputs_for(masks)
    bad_prob, bad_flow = cellprob.copy(), dP.copy()
    bad_prob[0:8, 0:8] = np.nan  # the first cell: NaN cellprob
    bad_prob[8:16, 0:8] = np.inf  # the second cell: +Inf cellprob is not foreground either
    as_background = cellprob.copy()
    as_background[0:16, 0:8] = -5.0
    bad_flow[:, 20:30, 20:30] = np.nan
    bad_flow[0, 3, 40] = -np.inf
    zeroed = dP.copy()
    zeroed[:, 20:30, 20:30] = 0.0
    zeroed[0, 3, 40] = 0.0
    got = compute_masks(bad_flow, bad_prob)
    want = compute_masks(zeroed, as_background)
    assert np.array_equal(got, want) and got.max() > 20
    assert not got[0:16, 0:8].any()


def test_shape_errors_are_input_errors():
    with pytest.raises(InputError, match="dP"):
        compute_masks(np.zeros((2, 5, 6), np.float32), np.zeros((5, 7), np.float32))
    with pytest.raises(InputError, match="compute_masks_3d"):
        compute_masks(np.zeros((3, 4, 5, 6), np.float32), np.zeros((4, 5, 6), np.float32))
    with pytest.raises(InputError, match="masks"):
        masks_to_flows(np.zeros((3, 4, 5), np.uint16))
    with pytest.raises(InputError, match="negative"):
        masks_to_flows(np.array([[0, -1]]))
    with pytest.raises(InputError, match="integer"):
        masks_to_flows(np.zeros((3, 3), np.float32))


def test_keyword_and_config_forms_agree_and_output_shape():
    masks = grid_cells(8, cell=7, gap=2).astype(np.uint16)
    dP, cellprob = outputs_for(masks)
    cfg = DynamicsConfig(niter=120, flow_threshold=0.2, min_size=20, output_shape=(100, 90))
    a = compute_masks_with(dP, cellprob, cfg)
    b = compute_masks(dP, cellprob, niter=120, flow_threshold=0.2, min_size=20,
                      output_shape=(100, 90))
    assert np.array_equal(a, b) and a.shape == (100, 90) and a.max() == 64


@pytest.mark.slow
def test_more_than_65535_masks_give_uint32():
    masks = grid_cells(260)  # 67,600 cells of 16 px
    dP, cellprob = outputs_for(masks)
    got = compute_masks(dP, cellprob, flow_threshold=0.0)
    assert got.dtype == np.uint32 and got.max() == 260 * 260
    assert len(np.unique(got)) == 260 * 260 + 1


# ---------------------------------------------------------------- helpers on odd labels

def test_sparse_huge_label_values_behave_like_small_ones():
    small = grid_cells(5, cell=5, gap=2).astype(np.uint32)
    huge = np.where(small > 0, small * 150_000_000 + 7, 0).astype(np.uint32)  # ids up to ~3.8e9
    dP, _ = outputs_for(small)
    dP[:, :7, :] *= 0.2  # spoil the first row of cells
    assert np.array_equal(masks_to_flows(huge), masks_to_flows(small))
    with pytest.raises(InputError, match="consecutive"):
        flow_error(huge, dP)  # one entry per id would need ~30 GB
    kept = remove_bad_flow_masks(huge, dP, 0.4)
    assert kept.dtype == np.uint32
    assert np.array_equal(kept > 0, remove_bad_flow_masks(small, dP, 0.4) > 0)
    assert 0 < (kept > 0).sum() < (huge > 0).sum()
    filled = fill_holes_and_remove_small_masks(huge, 15)
    assert np.array_equal(filled, fill_holes_and_remove_small_masks(small, 15))


def test_dynamics_import_stays_torch_free():
    code = ("import sys, cp3rt.runtime.dynamics; "
            "bad = [m for m in ('torch', 'cellpose', 'cp3rt.models') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
