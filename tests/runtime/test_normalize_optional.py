"""Optional normalisation steps: smoothing/sharpening (smooth_sharpen_img) and tiled percentiles
(normalize99_tile), through normalize_image and directly. With ``reference_bugs`` they equal the
reference; by default two of its defects are fixed (docs/deviations.md rows 12-13), and the
fixed behaviour is checked against what it is meant to be."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from cellpose import transforms as ref_transforms

from cp3rt.runtime.prep.filters import smooth_sharpen
from cp3rt.runtime.prep.normalize import NormalizeConfig, normalize_image
from cp3rt.runtime.prep.normalize_local import block_percentiles

# The reference filters with torch's float32 FFT, cp3rt in float64: agreement to float32 FFT
# noise, relative to the image's value range.
FILTER_RTOL = 2e-6
# After normalisation (values ~0..1) that noise passes through the percentiles.
FILTERED_NORM_ATOL = 2e-5
# Tiled normalisation uses the same float32 percentiles, scipy smoothing and OpenCV-exact
# resize; 1-ulp resize differences in 3/4-channel border columns are the only expected ones.
TILE_NORM_ATOL = 1e-5
DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def _report(out: np.ndarray, ref: np.ndarray) -> str:
    diff = np.abs(out.astype(np.float64) - ref.astype(np.float64))
    idx = np.unravel_index(int(np.argmax(diff)), diff.shape)
    return (f"worst |diff|={diff[idx]:.3g} at {idx} (ours {out[idx]!r}, ref {ref[idx]!r}); "
            f"mismatch rate {(diff > 0).mean():.4%}")


def _ref_norm(x_zcyx: np.ndarray, **kw) -> np.ndarray:
    out = ref_transforms.normalize_img(np.moveaxis(x_zcyx, 1, -1).copy(), **kw)
    return np.moveaxis(out, -1, 1)


def _real(folder: str, size: int = 160) -> np.ndarray:
    path = sorted((DATA / folder / "images").glob("*.tif"))[0]
    return tifffile.imread(path)[:size, :size].astype(np.float32)


@pytest.mark.parametrize(("smooth", "sharpen"), [(2.0, 0.0), (0.0, 6.0), (1.5, 8.0)])
def test_smooth_sharpen_matches_reference(smooth: float, sharpen: float) -> None:
    img = _real("ctc_msc_cells", 150)[:, :130]
    stack = np.stack([img, img[::-1] * 0.5])[np.newaxis]  # (1, 2, Y, X)
    ref = ref_transforms.smooth_sharpen_img(np.moveaxis(stack, 1, -1).copy(),
                                            smooth_radius=smooth, sharpen_radius=sharpen)
    ref = np.moveaxis(ref, -1, 1)
    out = smooth_sharpen(stack, smooth, sharpen, reference=True)
    assert out.dtype == np.float32
    assert np.abs(out - ref).max() <= FILTER_RTOL * np.ptp(img), _report(out, ref)


def test_normalize_with_filters_matches_reference() -> None:
    img = _real("stardist_dsb2018_nuclei", 120)
    x = np.stack([img, np.zeros_like(img)])[np.newaxis]
    cfg = NormalizeConfig(smooth_radius=1.0, sharpen_radius=5.0, reference_bugs=True)
    out = normalize_image(x, cfg)
    ref = _ref_norm(x, smooth_radius=1.0, sharpen_radius=5.0)
    assert np.abs(out - ref).max() <= FILTERED_NORM_ATOL, _report(out, ref)


@pytest.mark.parametrize(("shape", "blocksize"), [((1, 1, 300, 260), 100), ((1, 2, 300, 260), 64),
                                                  ((3, 1, 90, 200), 50), ((2, 3, 80, 80), 100)])
@pytest.mark.parametrize("norm3D", [True, False])
def test_tile_normalize_matches_reference(shape, blocksize: int, norm3D: bool) -> None:
    if not norm3D and shape[0] > 1 and shape[1] > 1:
        shape = (shape[0], 1, *shape[2:])  # the reference always raises for several channels
    rng = np.random.default_rng(sum(shape))
    base = rng.gamma(2.0, 50.0, shape).astype(np.float32)
    base[..., :40, :40] = 3.0  # flat blocks that borrow from their neighbours
    if shape[1] > 1:
        base[:, -1] = 0.0  # an all-flat channel: low 0, high 1
    cfg = NormalizeConfig(tile_norm_blocksize=blocksize, norm3D=norm3D, tile_norm_smooth3D=2, reference_bugs=True)
    out = normalize_image(base, cfg)
    ref = _ref_norm(base, tile_norm_blocksize=blocksize, norm3D=norm3D, tile_norm_smooth3D=2)
    assert out.shape == ref.shape
    assert np.abs(out - ref).max() <= TILE_NORM_ATOL, _report(out, ref)


def test_tile_normalize_per_plane_multichannel_works_where_reference_raises() -> None:
    rng = np.random.default_rng(9)
    x = rng.gamma(2.0, 50.0, (3, 2, 120, 120)).astype(np.float32)
    with pytest.raises(ZeroDivisionError):
        _ref_norm(x, tile_norm_blocksize=60, norm3D=False)
    out = normalize_image(x, NormalizeConfig(tile_norm_blocksize=60, norm3D=False, reference_bugs=True))
    assert np.isfinite(out).all()
    # Each channel alone (1-channel stacks work in the reference) gives the same numbers.
    for c in range(2):
        ref = _ref_norm(x[:, c : c + 1], tile_norm_blocksize=60, norm3D=False)
        assert np.abs(out[:, c : c + 1] - ref).max() <= TILE_NORM_ATOL


def test_block_percentiles_slow_reference() -> None:
    """Blocks, percentiles and nearest-good filling re-stated per block."""
    rng = np.random.default_rng(4)
    x = rng.random((1, 1, 130, 70)).astype(np.float32)
    x[0, 0, :50, :] = 2.0  # the top blocks are flat
    lo, hi = block_percentiles(x, 50, 1.0, 99.0)
    starts_y = [int(v) for v in np.linspace(0, 130 - 50, 4).astype(int)]  # ceil(1.2*130/50)=4
    starts_x = [int(v) for v in np.linspace(0, 70 - 50, 2).astype(int)]
    assert lo.shape == (1, 4, 2, 1)
    good = {}
    for j, y0 in enumerate(starts_y):
        for i, x0 in enumerate(starts_x):
            block = x[0, 0, y0 : y0 + 50, x0 : x0 + 50]
            p1, p99 = np.percentile(block, 1), np.percentile(block, 99)
            if p99 - p1 >= 1e-3:
                good[(j, i)] = (p1, p99)
    for j in range(4):
        for i in range(2):
            key = min(good, key=lambda g: ((g[0] - j) ** 2 + (g[1] - i) ** 2, g))
            assert (lo[0, j, i, 0], hi[0, j, i, 0]) == good.get((j, i), good[key])


def test_tiled_invert_flips_every_channel() -> None:
    x = np.random.default_rng(5).random((1, 2, 64, 64)).astype(np.float32)
    plain = normalize_image(x, NormalizeConfig(tile_norm_blocksize=32))
    inverted = normalize_image(x, NormalizeConfig(tile_norm_blocksize=32, invert=True))
    np.testing.assert_allclose(inverted, 1 - plain, atol=1e-6)


# 1e-9 of a unit impulse: float64 FFT round-off only
IMPULSE_ATOL = 1e-9


@pytest.mark.parametrize("shape", [(64, 64), (63, 65), (128, 256), (200, 90)])
def test_smoothing_keeps_an_impulse_in_place_with_the_sigma_asked_for_on_both_axes(shape) -> None:
    """The fixed kernel: a unit impulse becomes a Gaussian of sigma ``smooth_radius`` in Y and
    X, centred where the impulse was (the reference's moves it ~1 px and stretches X by
    (Ly + 1) / (Lx - 1) on non-square planes)."""
    ly, lx = shape
    img = np.zeros((1, 1, ly, lx))
    img[0, 0, 20, 30] = 1.0
    out = smooth_sharpen(img, 2.0, 0.0)[0, 0].astype(np.float64)
    yy, xx = np.mgrid[:ly, :lx]
    expected = np.exp(-((yy - 20) ** 2 + (xx - 30) ** 2) / (2 * 2.0**2))
    np.testing.assert_allclose(out, expected / expected.sum(), atol=IMPULSE_ATOL)
    ref = smooth_sharpen(img, 2.0, 0.0, reference=True)[0, 0]
    assert np.unravel_index(ref.argmax(), ref.shape) != (20, 30) or ly % 2  # the defect it fixes


def test_reference_bugs_in_the_run_config_reaches_the_normalisation() -> None:
    from cp3rt.runtime.config import RunConfig

    norm = NormalizeConfig(smooth_radius=1.0)
    assert RunConfig(normalize=norm, reference_bugs=True).normalize.reference_bugs is True
    assert RunConfig(normalize=norm).normalize.reference_bugs is False


def _slow_tile_norm(x: np.ndarray, blocksize: int) -> np.ndarray:
    """What tiled normalisation is meant to do for one (Y, X) plane, spelled out: per-block 1/99
    percentiles on the block layout, smoothed (sigma 1, reflect) along block rows AND columns,
    bilinearly resized to the image and applied pixel by pixel."""
    from scipy.ndimage import gaussian_filter

    from cp3rt.runtime.prep.normalize_local import block_percentiles as blocks
    from cp3rt.runtime.prep.resize import resize_bilinear

    lo, hi = blocks(x[None, None].astype(np.float32), blocksize, 1.0, 99.0)
    lo, hi = (gaussian_filter(g[0, :, :, 0].astype(np.float64), 1, mode="reflect") for g in (lo, hi))
    full = [resize_bilinear(g.astype(np.float32)[None], x.shape)[0] for g in (lo, hi)]
    return (x - full[0]) / (full[1] - full[0])


def test_tiled_normalisation_smooths_block_columns_as_it_does_rows() -> None:
    rng = np.random.default_rng(3)
    ramp = np.linspace(50, 2000, 400, dtype=np.float32)[None, :]  # left-right illumination ramp
    x = (ramp * rng.gamma(4.0, 0.25, (300, 400))).astype(np.float32)
    out = normalize_image(x[None], NormalizeConfig(tile_norm_blocksize=64))[0]
    np.testing.assert_allclose(out, _slow_tile_norm(x, 64), atol=TILE_NORM_ATOL * 10)
    # the same image turned by 90 degrees is normalised the same way, turned (rows = columns now)
    turned = normalize_image(np.ascontiguousarray(x.T)[None], NormalizeConfig(tile_norm_blocksize=64))[0]
    np.testing.assert_allclose(turned.T, _slow_tile_norm(x.T, 64).T, atol=TILE_NORM_ATOL * 10)
