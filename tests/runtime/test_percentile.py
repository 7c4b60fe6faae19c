"""The one-pass percentiles against their reference version, np.percentile, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cp3rt.runtime.prep import percentile as _percentile
from cp3rt.runtime.prep.percentile import FAST_MIN_SIZE, percentiles


def _reference(x: np.ndarray, qs: tuple[float, ...]) -> tuple:
    return tuple(np.percentile(x, q) for q in qs)


def _assert_same(got: tuple, want: tuple) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert type(g) is type(w) and (g == w or (np.isnan(g) and np.isnan(w))), (got, want)


@given(seed=st.integers(0, 2**31 - 1), kind=st.sampled_from(["normal", "counts", "zeros", "ties", "image"]),
       size=st.integers(FAST_MIN_SIZE, 3 * FAST_MIN_SIZE),
       low=st.floats(0.0, 10.0), high=st.floats(90.0, 100.0))
@settings(max_examples=80, deadline=None)
def test_equals_np_percentile_bit_for_bit(seed, kind, size, low, high) -> None:  # noqa: ANN001
    rng = np.random.default_rng(seed)
    if kind == "normal":
        x = rng.normal(100, 20, size)
    elif kind == "counts":  # photon counts: few distinct values, many ties
        x = rng.poisson(3.0, size)
    elif kind == "zeros":  # dark background, a bright minority
        x = np.where(rng.random(size) < 0.7, 0, rng.integers(1, 65535, size))
    elif kind == "ties":
        x = rng.random(size) ** 6 * 1000
        x[: size // 3] = 5.0
    else:  # a uint16 camera image
        x = rng.integers(100, 4000, size).astype(np.uint16)
    x = np.asarray(x, np.float32)
    qs = (low, high)
    assert _percentile._fast(x, qs) is not None  # these inputs take the fast path
    _assert_same(percentiles(x, qs), _reference(x, qs))


def test_images_and_blocks_of_any_layout() -> None:
    rng = np.random.default_rng(3)
    block = rng.gamma(2.0, 100.0, (3, 300, 400)).astype(np.float32)
    _assert_same(percentiles(block, (1.0, 99.0)), _reference(block, (1.0, 99.0)))
    strided = block[:, ::2, 1::3]  # not contiguous
    _assert_same(percentiles(strided, (1, 99)), _reference(strided, (1, 99)))  # int q as the reference passes


def test_falls_back_where_the_sample_misleads_it() -> None:
    # Every strided sample point lands on the same value, so both brackets are empty.
    n = FAST_MIN_SIZE * 4
    step = n // _percentile.SAMPLE_SIZE
    x = np.arange(n, dtype=np.float32)
    x[::step] = 7.0
    assert _percentile._fast(x, (1.0, 99.0)) is None
    _assert_same(percentiles(x, (1.0, 99.0)), _reference(x, (1.0, 99.0)))


@pytest.mark.parametrize("case", ["nan", "small", "float64", "constant", "extremes"])
def test_other_inputs_give_np_percentiles_answer(case: str) -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(0, 1, FAST_MIN_SIZE * 2).astype(np.float32)
    qs = (1.0, 99.0)
    if case == "nan":
        x[123] = np.nan
    elif case == "small":
        x = x[:100]
    elif case == "float64":
        x = x.astype(np.float64)
    elif case == "constant":
        x[:] = 3.0
    else:
        qs = (0.0, 100.0)
    _assert_same(percentiles(x, qs), _reference(x, qs))


def test_a_failed_self_check_means_np_percentile(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_percentile, "_self_check", False)
    monkeypatch.setattr(_percentile, "_fast", lambda *a: pytest.fail("fast path used after a failed self-check"))
    x = np.random.default_rng(5).normal(0, 1, FAST_MIN_SIZE * 2).astype(np.float32)
    _assert_same(percentiles(x, (1.0, 99.0)), _reference(x, (1.0, 99.0)))


def test_the_self_check_passes_with_this_numpy() -> None:
    assert _percentile._passes_self_check()
