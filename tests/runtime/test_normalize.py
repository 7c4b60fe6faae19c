"""normalize_image / NormalizeConfig against the reference's transforms.normalize_img (§3.3)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from cellpose import transforms as ref_transforms

from cp3rt.errors import ConfigError, InputError, LowRangeWarning
from cp3rt.runtime.prep.normalize import NormalizeConfig, normalize_image

# Percentiles, subtraction and division are the same float32 numpy operations: identical.
NORM_ATOL = 0.0
DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def _report(out: np.ndarray, ref: np.ndarray) -> str:
    diff = np.abs(out.astype(np.float64) - ref.astype(np.float64))
    idx = np.unravel_index(int(np.argmax(diff)), diff.shape)
    return (f"worst |diff|={diff[idx]:.3g} at {idx} (ours {out[idx]!r}, ref {ref[idx]!r}); "
            f"mismatch rate {(diff > 0).mean():.4%}")


def _ref(x_cyx: np.ndarray, **kw) -> np.ndarray:
    """The reference on cp3rt's layout: (C,Y,X) is run as CellposeModel does, (1,Y,X,C)."""
    stack = x_cyx[np.newaxis] if x_cyx.ndim == 3 else x_cyx
    out = ref_transforms.normalize_img(np.moveaxis(stack, 1, -1).copy(), **kw)
    out = np.moveaxis(out, -1, 1)
    return out[0] if x_cyx.ndim == 3 else out


def _check(x: np.ndarray, cfg: NormalizeConfig, **ref_kw) -> np.ndarray:
    ours = normalize_image(x, cfg)
    ref = _ref(x.astype(np.float32), **ref_kw)
    assert ours.dtype == np.float32 and ours.shape == x.shape
    assert np.abs(ours - ref).max() <= NORM_ATOL, _report(ours, ref)
    return ours


def test_default_matches_reference_random() -> None:
    rng = np.random.default_rng(0)
    x = (rng.gamma(2.0, 300.0, (2, 130, 170))).astype(np.float32)
    _check(x, NormalizeConfig())
    _check(x.astype(np.uint16), NormalizeConfig())


def test_real_images_with_zero_channel() -> None:
    for folder in ("ctc_gowt1_nuclei", "ctc_msc_cells", "baby_yeast", "stardist_dsb2018_nuclei"):
        path = sorted((DATA / folder / "images").glob("*.tif"))[0]
        img = tifffile.imread(path).astype(np.float32)
        x = np.stack([img, np.zeros_like(img)])  # Cellpose's [gray, zeros] input
        out = _check(x, NormalizeConfig())
        assert not out[1].any()  # a constant channel is left untouched
        _check(x, NormalizeConfig(invert=True), invert=True)
        _check(x, NormalizeConfig(percentiles=(3.0, 99.8)), percentile=(3.0, 99.8))


def test_constant_and_tiny_range_channels() -> None:
    rng = np.random.default_rng(1)
    x = np.stack([
        np.full((40, 50), 7.0),                       # constant: stays 7
        1.0 + rng.random((40, 50)) * 5e-4,            # range < 1e-3: becomes 0
        rng.random((40, 50)) * 100,                   # normal
    ]).astype(np.float32)
    with pytest.warns(LowRangeWarning, match="channel 1 has a 1-99 % range"):  # not silently
        out = _check(x, NormalizeConfig())
    assert (out[0] == 7).all() and not out[1].any()
    with pytest.warns(LowRangeWarning):
        out = _check(x, NormalizeConfig(invert=True), invert=True)
    assert (out[0] == 7).all() and (out[1] == 1).all()  # invert only flips normalised channels


@pytest.mark.parametrize("lowhigh", [(10.0, 250.0), ((0, 100), (5.5, 7.25))])
def test_lowhigh(lowhigh) -> None:
    x = np.random.default_rng(2).random((2, 30, 40)).astype(np.float32) * 300
    _check(x, NormalizeConfig(lowhigh=lowhigh), lowhigh=lowhigh)
    _check(x, NormalizeConfig(lowhigh=lowhigh, invert=True), lowhigh=lowhigh, invert=True)


@pytest.mark.parametrize("norm3D", [True, False])
def test_stack_whole_or_per_plane(norm3D: bool) -> None:
    rng = np.random.default_rng(3)
    x = (rng.random((4, 2, 60, 70)) * np.arange(1, 5)[:, None, None, None] * 50).astype(np.float32)
    x[2, 1] = 3.0  # one constant plane of channel 1
    _check(x, NormalizeConfig(norm3D=norm3D), norm3D=norm3D)
    _check(x, NormalizeConfig(norm3D=norm3D, invert=True), norm3D=norm3D, invert=True)


def test_no_normalisation_keeps_values() -> None:
    x = np.random.default_rng(4).random((2, 10, 12)).astype(np.float32) * 9
    out = _check(x, NormalizeConfig(normalize=False), normalize=False)
    np.testing.assert_array_equal(out, x)


def test_subsampled_percentiles_for_huge_images() -> None:
    """A channel with > 224**3 values uses a strided subsample (every 15th row/column here)."""
    rng = np.random.default_rng(5)
    x = rng.gamma(2.0, 100.0, (1, 3400, 3400)).astype(np.float32)
    out = _check(x, NormalizeConfig())
    full = np.percentile(x, 1), np.percentile(x, 99)
    exact = (x - full[0]) / (full[1] - full[0])
    assert not np.array_equal(out, exact)  # the subsample really was used


def test_fresh_defaults_per_call() -> None:
    x = np.random.default_rng(6).random((2, 20, 20)).astype(np.float32)
    a = normalize_image(x, NormalizeConfig(invert=True))
    b = normalize_image(x)  # the reference would still invert here (global dict [bug])
    np.testing.assert_array_equal(b, _ref(x))
    np.testing.assert_allclose(a, 1 - b, atol=1e-6)
    assert normalize_image(x) is not x and (normalize_image(x) == b).all()


def test_non_finite_pixels_are_refused_with_count_and_name() -> None:
    x = np.ones((2, 10, 10), np.float32)
    x[0, 1, 1], x[1, 2, 2], x[1, 3, 3] = np.nan, np.inf, -np.inf
    with pytest.raises(InputError, match=r"cells\.tif has 3 non-finite"):
        normalize_image(x, name="cells.tif")
    with pytest.raises(InputError, match="image has 3 non-finite"):
        normalize_image(x)


@pytest.mark.parametrize(("kw", "field"), [
    ({"percentiles": (99, 1)}, "percentiles"),
    ({"percentiles": (-1, 99)}, "percentiles"),
    ({"percentiles": (1, 101)}, "percentiles"),
    ({"percentiles": (1,)}, "percentiles"),
    ({"lowhigh": (1, 1)}, "lowhigh"),
    ({"lowhigh": (1, 2, 3)}, "lowhigh"),
    ({"lowhigh": ((1, 2, 3),)}, "lowhigh"),
    ({"sharpen_radius": -1}, "sharpen_radius"),
    ({"smooth_radius": float("inf")}, "smooth_radius"),
    ({"tile_norm_blocksize": -5}, "tile_norm_blocksize"),
    ({"tile_norm_blocksize": 2.5}, "tile_norm_blocksize"),
    ({"normalize": False, "invert": True}, "invert"),
    ({"norm3D": "yes"}, "norm3D"),
])
def test_config_validation(kw, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        NormalizeConfig(**kw)


def test_lowhigh_channel_count_must_match() -> None:
    cfg = NormalizeConfig(lowhigh=((0, 1), (0, 2), (0, 3)))
    with pytest.raises(ConfigError, match="3 \\(low, high\\) pairs"):
        normalize_image(np.zeros((2, 5, 5), np.float32), cfg)


def test_bad_image_shape() -> None:
    with pytest.raises(InputError, match="shape"):
        normalize_image(np.zeros((5, 5), np.float32))
