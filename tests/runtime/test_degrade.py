"""Degradation synthesis (spec §6): building blocks against independent constructions and the
reference ``cellpose.denoise.add_noise`` where its randomness can be pinned; random recipes by
their distributions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from cellpose import denoise as ref_denoise
from scipy import signal, stats

from cp3rt.errors import ConfigError, InputError
from cp3rt.runtime.quality.degrade import (
    FixedNoise,
    NoiseParams,
    OneClickNoise,
    add_noise,
    add_noise_batch,
    blur_kernel,
    downsample_upsample,
    gaussian_blur,
    gaussian_kernel_1d,
    kernel_half_width,
    noise_from_options,
    noise_preset,
    normalize_clean,
    poisson_counts,
    renormalize,
    resize_bilinear,
)

# float32 pipeline vs torch float32: a few ulps after renormalisation.
REF_ATOL = 2e-5
# Independent float64 constructions of the same filter.
FILTER_ATOL = 1e-6
# Bilinear resize vs torch on data in [0, 3]: torch fuses multiply-adds, so allow ~20 float32
# ulps (an ulp at 3 is 2.4e-7).
RESIZE_ATOL = 5e-6
# Two-sample tests of random draws use fixed seeds; reject only clear disagreement.
KS_PVALUE_MIN = 1e-3


def assert_close(name, got, want, atol):
    got = np.asarray(got, np.float64)
    want = np.asarray(want, np.float64)
    assert got.shape == want.shape, f"{name}: shape {got.shape} != {want.shape}"
    err = np.abs(got - want)
    bad = err > atol
    if bad.any():
        worst = np.unravel_index(np.argmax(err), err.shape)
        pytest.fail(f"{name}: mismatch rate {bad.mean():.3%}; worst at {worst}: got "
                    f"{got[worst]!r} want {want[worst]!r} (atol {atol})")


@pytest.fixture(scope="module")
def clean_batch():
    rng = np.random.default_rng(11)
    x = rng.random((3, 2, 61, 75)).astype(np.float32)
    x[:, :, 20:40, 30:50] += 2.0  # some structure so blur and resize matter
    return x


# ---- blur ------------------------------------------------------------------------------------


@pytest.mark.parametrize("sigma,w", [(0.5, 8), (3.99, 8), (4.0, 8), (4.5, 8), (5.0, 10),
                                     (12.9, 24)])
def test_kernel_half_width_rule(sigma, w):
    assert kernel_half_width(sigma) == w  # max(8, 2 * int(sigma))


@pytest.mark.parametrize("sigma", [0.3, 1.0, 2.5, 7.0])
def test_gaussian_kernel_matches_scipy_window(sigma):
    w = kernel_half_width(sigma)
    k = gaussian_kernel_1d(sigma, w)
    want = signal.windows.gaussian(2 * w - 1, std=sigma)
    assert_close("kernel", k, want / want.sum(), 1e-12)
    assert k.sum() == pytest.approx(1.0, abs=1e-12)
    k2 = blur_kernel(sigma, sigma / 10, w)
    assert k2.shape == (2 * w - 1, 2 * w - 1)
    assert k2.sum() == pytest.approx(1.0, abs=1e-12)


def test_zero_sigma_is_centred_delta():
    k = gaussian_kernel_1d(0.0, 8)
    assert k[7] == 1.0 and k.sum() == 1.0


@pytest.mark.parametrize("sy,sx", [(1.3, 1.3), (2.0, 0.2), (6.0, 3.0)])
def test_blur_matches_direct_2d_convolution(clean_batch, sy, sx):
    img = clean_batch[0, 0]
    w = kernel_half_width(sy)
    want = signal.convolve2d(img.astype(np.float64), blur_kernel(sy, sx, w), mode="same",
                             boundary="fill", fillvalue=0)
    assert_close("blur", gaussian_blur(img, sy, sx), want, FILTER_ATOL)


# ---- resize / downsample ---------------------------------------------------------------------


@pytest.mark.parametrize("src,dst", [((9, 11), (61, 75)), ((21, 15), (61, 75)),
                                     ((5, 5), (7, 13)), ((40, 30), (17, 9))])
def test_resize_bilinear_matches_torch(src, dst):
    x = np.random.default_rng(sum(src)).random((2, *src)).astype(np.float32) * 3
    want = torch.nn.functional.interpolate(torch.from_numpy(x)[None], size=dst, mode="bilinear",
                                           align_corners=False)[0].numpy()
    assert_close("resize", resize_bilinear(x, dst), want, RESIZE_ATOL)


@pytest.mark.parametrize("ds", [2, 3, 7])
@pytest.mark.parametrize("iso", [True, False])
def test_downsample_upsample(clean_batch, ds, iso):
    img = clean_batch[1]
    out = downsample_upsample(img, ds, iso=iso)
    assert out.shape == img.shape and out.dtype == np.float32
    small = img[:, ::ds, ::ds] if iso else img[:, ::ds]
    want = torch.nn.functional.interpolate(torch.from_numpy(small)[None], size=img.shape[-2:],
                                           mode="bilinear")[0].numpy()
    assert_close("down-up", out, want, RESIZE_ATOL)
    const = np.full((1, 30, 31), 0.25, np.float32)
    np.testing.assert_allclose(downsample_upsample(const, ds, iso), 0.25, atol=1e-7)
    np.testing.assert_array_equal(downsample_upsample(img, 1), img)


# ---- end to end against the reference, randomness pinned ---------------------------------------


@pytest.mark.parametrize("s0,s1,ds", [(2.0, 2.0, 1), (3.3, 0.33, 1), (1.5, 1.5, 3),
                                      (4.2, 4.2, 5), (9.7, 9.7, 2)])
def test_fixed_blur_downsample_matches_reference(clean_batch, s0, s1, ds):
    # blur=1 selects every image, poisson=0 none, downsample=0 keeps the given ds.
    ref = ref_denoise.add_noise(torch.from_numpy(clean_batch), poisson=0.0, blur=1.0,
                                downsample=0.0, sigma0=s0, sigma1=s1, ds=ds).numpy()
    got, plan = add_noise_batch(clean_batch, FixedNoise(sigma=(s0, s1), ds=ds),
                                np.random.default_rng(0))
    assert_close(f"add_noise s0={s0} s1={s1} ds={ds}", got, ref, REF_ATOL)
    assert all(a.ds == ds and a.sigma_y == s0 and a.pscale is None for a in plan)


def test_per_image_sigmas_share_one_kernel_width(clean_batch):
    diams = np.array([20.0, 30.0, 95.0])
    noise = FixedNoise(ds=3)  # sigma from the downsample preset rule, per image diameter
    got, plan = add_noise_batch(clean_batch, noise, np.random.default_rng(0), diams)
    sig = diams / 30 * (1 + 4 * 3 / 10)
    np.testing.assert_allclose([a.sigma_y for a in plan], sig)
    ref = ref_denoise.add_noise(torch.from_numpy(clean_batch), poisson=0.0, blur=1.0,
                                downsample=0.0, sigma0=torch.tensor(sig, dtype=torch.float32),
                                sigma1=torch.tensor(sig, dtype=torch.float32), ds=3).numpy()
    assert_close("batch", got, ref, REF_ATOL)


def test_renormalize_matches_reference(clean_batch):
    x = clean_batch.copy()
    x[2, 1] = 0.5  # flat plane: left unchanged
    want = ref_denoise.img_norm(torch.from_numpy(x.copy())).numpy()
    got = renormalize(x)
    assert_close("renorm", got, want, 1e-5)
    np.testing.assert_array_equal(got[2, 1], 0.5)


# ---- Poisson -----------------------------------------------------------------------------------


def _levels_image() -> np.ndarray:
    levels = np.array([0.1, 0.3, 0.6, 1.0], np.float32)
    return np.repeat(levels, 64 * 64).reshape(4, 64, 64).transpose(1, 0, 2).reshape(64, 256)


def test_poisson_counts_moments():
    x = _levels_image()
    counts = poisson_counts(x, 20.0, np.random.default_rng(3))
    for level in (0.1, 0.3, 0.6, 1.0):
        c = counts[x == np.float32(level)]
        lam = 20.0 * level
        se = np.sqrt(lam / c.size)  # standard error of the mean
        assert abs(c.mean() - lam) < 5 * se, (level, c.mean(), lam)
        assert c.var() == pytest.approx(lam, rel=0.12)


def test_poisson_output_moments_match_reference():
    x = _levels_image()
    pscale = 10.0
    torch.manual_seed(0)
    ref = ref_denoise.add_noise(torch.from_numpy(x)[None, None], poisson=1.0, blur=0.0,
                                downsample=0.0, pscale=pscale).numpy()[0, 0]
    got = add_noise(x, FixedNoise(pscale=pscale), np.random.default_rng(0))
    top_ref = ref[x == 1.0].mean()
    top_got = got[x == 1.0].mean()
    for level in (0.1, 0.3, 0.6):
        sel = x == np.float32(level)
        # Renormalisation divides by a sample quantile; ratios and CVs do not depend on it.
        r_ref, r_got = ref[sel].mean() / top_ref, got[sel].mean() / top_got
        assert r_got == pytest.approx(r_ref, abs=0.03), level
        assert r_got == pytest.approx(level, abs=0.03), level
        cv_ref, cv_got = ref[sel].std() / ref[sel].mean(), got[sel].std() / got[sel].mean()
        assert cv_got == pytest.approx(cv_ref, rel=0.1), level
        assert cv_got == pytest.approx(1 / np.sqrt(pscale * level), rel=0.1), level


def test_photon_scale_distribution_matches_reference_gamma():
    n = 1500
    tiny = np.full((n, 1, 2, 2), 0.5, np.float32)
    _, plan = add_noise_batch(tiny, NoiseParams(poisson=1.0, blur=0.0, downsample=0.0,
                                                alpha=4.0, beta=0.7), np.random.default_rng(5))
    mine = np.array([a.pscale for a in plan])
    torch.manual_seed(5)
    theirs = torch.clamp(torch.distributions.gamma.Gamma(4.0, 0.7).sample((n,)), 1.0).numpy()
    assert mine.min() >= 1.0
    assert stats.ks_2samp(mine, theirs).pvalue > KS_PVALUE_MIN
    assert mine.mean() == pytest.approx(4 / 0.7, rel=0.06)


# ---- random recipes ----------------------------------------------------------------------------


def _plans(noise, n=600, diam=30.0, seed=1):
    tiny = np.random.default_rng(0).random((n, 1, 6, 6)).astype(np.float32)
    _, plan = add_noise_batch(tiny, noise, np.random.default_rng(seed), diam)
    return plan


def test_downsample_preset_rules():
    g, diam = 5.0, 45.0
    plan = _plans(noise_preset("downsample"), diam=diam)
    ds = np.array([a.ds for a in plan])
    sig = np.array([a.sigma_y for a in plan])
    assert np.mean(ds > 1) == pytest.approx(0.8, abs=0.07)
    assert set(ds[ds > 1]) == set(range(2, 8))
    # Downsampled images are always blurred with the deterministic uniform-blur rule.
    np.testing.assert_allclose(sig[ds > 1], diam / 30 * (1 + (g - 1) * ds[ds > 1] / (2 * g)))
    rest = sig[ds == 1]
    assert np.mean(rest > 0) == pytest.approx(0.8, abs=0.12)
    assert np.all((rest == 0) | ((rest >= diam / 30) & (rest <= diam / 30 * g)))
    assert np.all([a.sigma_x == a.sigma_y for a in plan])
    assert np.mean([a.pscale is not None for a in plan]) == pytest.approx(0.8, abs=0.07)


def test_poisson_preset_never_blurs():
    plan = _plans(noise_preset("poisson"))
    assert all(a.ds == 1 and a.sigma_y == 0 for a in plan)


def test_default_blur_rule_distribution():
    plan = _plans(NoiseParams(poisson=0.0, blur=1.0, downsample=0.0, gblur=1.0), n=2000)
    sig = np.array([a.sigma_y for a in plan])
    lo, hi = 30 / 30 * 5 * 0.1, 30 / 30 * 5 * 1.0
    assert sig.min() >= lo - 1e-12 and sig.max() <= hi + 1e-12
    # r = clip(0.5 e, 0.1, 1), e ~ Exp(1): P(r = 1) = exp(-2), P(r = 0.1) = 1 - exp(-0.2).
    assert np.mean(np.isclose(sig, hi)) == pytest.approx(np.exp(-2), abs=0.03)
    assert np.mean(np.isclose(sig, lo)) == pytest.approx(1 - np.exp(-0.2), abs=0.03)


def test_aniso_preset_rules():
    p = noise_preset("aniso", ds_max=7)
    plan = _plans(p)
    g = p.gblur
    assert g == pytest.approx(10.5) and not p.iso
    for a in plan:
        if a.sigma_y > 0:
            assert a.sigma_x == pytest.approx(a.sigma_y / 10)
        if a.ds > 1:
            r = a.sigma_y / g  # diameter 30
            assert max(0.05, a.ds / g - 0.35) - 1e-9 <= r <= min(1.5, a.ds / g + 0.35) + 1e-9


def test_aniso_downsamples_rows_only():
    x = np.zeros((1, 1, 40, 40), np.float32)
    x[0, 0, :, ::2] = 1.0  # columns alternate: survives a rows-only subsample
    got, _ = add_noise_batch(x, FixedNoise(sigma=0.0, ds=4, iso=False), np.random.default_rng(0))
    np.testing.assert_allclose(got[0, 0, :, 0], got[0, 0, 0, 0])
    assert got[0, 0, 5, 0] != got[0, 0, 5, 1]


def test_oneclick_gives_each_sub_batch_one_recipe():
    sets = (NoiseParams(poisson=1.0, blur=0.0, downsample=0.0, gblur=0.0),
            NoiseParams(poisson=0.0, blur=1.0, downsample=0.0, gblur=2.0, uniform_blur=True),
            NoiseParams(poisson=0.0, blur=0.0, downsample=1.0, gblur=5.0, uniform_blur=True))
    x = np.random.default_rng(0).random((6, 1, 8, 8)).astype(np.float32)
    _, plan = add_noise_batch(x, OneClickNoise(sets), np.random.default_rng(2))
    kinds = ["p" if a.pscale else "d" if a.ds > 1 else "b" for a in plan]
    assert kinds[0] == kinds[1] and kinds[2] == kinds[3] and kinds[4] == kinds[5]
    assert sorted(set(kinds)) == ["b", "d", "p"]
    picks = [add_noise_batch(x[:1], OneClickNoise(sets), np.random.default_rng(s))[1][0]
             for s in range(90)]
    counts = np.bincount(["pbd".index("p" if a.pscale else "d" if a.ds > 1 else "b")
                          for a in picks], minlength=3)
    assert counts.min() >= 15
    assert len(noise_preset("all").sets) == 3


def test_seed_reproducibility(clean_batch):
    noise = noise_preset("downsample")
    a, pa = add_noise_batch(clean_batch, noise, np.random.default_rng(42), 30.0)
    b, pb = add_noise_batch(clean_batch, noise, np.random.default_rng(42), 30.0)
    c, _ = add_noise_batch(clean_batch, noise, np.random.default_rng(43), 30.0)
    np.testing.assert_array_equal(a, b)
    assert pa == pb
    assert not np.array_equal(a, c)


def test_add_noise_shapes_and_output_range(clean_batch):
    img = clean_batch[0]
    out3 = add_noise(img, noise_preset("blur"), np.random.default_rng(0))
    out2 = add_noise(img[0], noise_preset("blur"), np.random.default_rng(0))
    assert out3.shape == img.shape and out2.shape == img[0].shape
    assert out3.dtype == np.float32
    np.testing.assert_allclose(np.quantile(out2, [0.01, 0.99]), [0, 1], atol=1e-5)


# ---- preparation and validation ----------------------------------------------------------------


def test_normalize_clean():
    x = np.stack([np.arange(100, dtype=np.float32).reshape(10, 10) - 20,
                  np.full((10, 10), 7.0, np.float32)])
    out = normalize_clean(x)
    lo, hi = np.percentile(x[0], [1, 99])
    np.testing.assert_allclose(out[0], np.maximum((x[0] - lo) / (hi - lo), 0), rtol=1e-6)
    np.testing.assert_array_equal(out[1], 0)
    assert out.min() >= 0


@pytest.mark.parametrize("make,field", [
    (lambda: NoiseParams(blur=1.2), "blur"),
    (lambda: NoiseParams(beta=0), "beta"),
    (lambda: NoiseParams(gblur=0.0, blur=0.5), "gblur"),
    (lambda: NoiseParams(ds_max=1), "ds_max"),
    (lambda: FixedNoise(pscale=0.0), "pscale"),
    (lambda: FixedNoise(sigma=-1.0), "sigma"),
    (lambda: FixedNoise(ds=0), "ds"),
    (lambda: OneClickNoise(()), "sets"),
    (lambda: noise_preset("speckle"), "noise"),
])
def test_config_errors_name_the_field(make, field):
    with pytest.raises(ConfigError, match=field):
        make()


def test_noise_from_options():
    assert noise_from_options("poisson") == noise_preset("poisson")
    assert noise_from_options("poisson", pscale=5) == FixedNoise(pscale=5)
    assert noise_from_options("blur", sigma=2, pscale=3) == FixedNoise(pscale=3, sigma=2)
    assert noise_from_options("aniso", ds=3) == FixedNoise(ds=3, iso=False)
    with pytest.raises(ConfigError, match="sigma cannot be fixed"):
        noise_from_options("poisson", pscale=1, sigma=2)
    with pytest.raises(ConfigError, match="needs sigma"):
        noise_from_options("blur", pscale=2)
    with pytest.raises(ConfigError, match="no fixed parameters"):
        noise_from_options("oneclick", ds=2)
    with pytest.raises(ConfigError, match="allowed"):
        noise_from_options("gauss")


def test_input_errors():
    rng = np.random.default_rng(0)
    with pytest.raises(InputError, match="negative"):
        add_noise(np.full((8, 8), -1.0), FixedNoise(pscale=2), rng)
    with pytest.raises(InputError, match="shape"):
        add_noise(np.zeros(8), FixedNoise(pscale=2), rng)
    with pytest.raises(InputError, match="NaN"):
        add_noise(np.full((8, 8), np.nan), FixedNoise(pscale=2), rng)
    with pytest.raises(ConfigError, match="Generator"):
        add_noise(np.zeros((8, 8)), FixedNoise(pscale=2), np.random.RandomState(0))
    with pytest.raises(ConfigError, match="diameters"):
        add_noise(np.zeros((8, 8)), FixedNoise(pscale=2), rng, diameter=0)
