"""Augmentation geometry (spec §7.3): warped + rotated flows == flows of the warped masks."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from cp3rt.runtime.dynamics.flows import masks_to_flows
from cp3rt.runtime.quality.metrics import diameters
from cp3rt.train.augment import Warp, place, random_rotate_and_resize, rotate_flows

# Heat-diffusion flows are not exactly rotation-equivariant on a pixel grid, and nearest
# resampling moves mask borders by a pixel; inside the objects the directions still agree.
MIN_MEAN_COSINE = 0.98
WRONG_MAX_MEAN_COSINE = 0.6   # a wrong convention must fail clearly (shows the test has power)
DIAMETER_RTOL = 0.12


def ellipses(shape=(128, 128)) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    masks = np.zeros(shape, np.int32)
    for k, (cy, cx, a, b, phi) in enumerate(
        [(40, 45, 22, 12, 0.3), (85, 80, 18, 14, 1.2), (40, 95, 10, 10, 0.0)]
    ):
        u = ((xx - cx) * np.cos(phi) + (yy - cy) * np.sin(phi)) / a
        v = (-(xx - cx) * np.sin(phi) + (yy - cy) * np.cos(phi)) / b
        masks[u * u + v * v <= 1] = k + 1
    return masks


def labels_of(masks: np.ndarray) -> np.ndarray:
    return np.concatenate([(masks > 0)[None].astype(np.float32),
                           masks_to_flows(masks).astype(np.float32)])


def mean_cosine(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> float:
    num = (a * b).sum(0)[where]
    den = np.linalg.norm(a, axis=0)[where] * np.linalg.norm(b, axis=0)[where] + 1e-12
    return float(np.mean(num / den))


def report(cos: np.ndarray) -> str:
    return f"mean cosine {cos.mean():.4f}, worst {cos.min():.3f}, below 0.8: {np.mean(cos < 0.8):.2%}"


@pytest.mark.parametrize("theta", [0.0, np.pi / 3, 2.0, 4.5])
@pytest.mark.parametrize("flip", [False, True])
def test_warped_flows_equal_flows_of_warped_masks(theta: float, flip: bool) -> None:
    masks = ellipses()
    warp = Warp(scale=1.2, theta=theta, flip=flip, centre_in=(63.5, 63.5),
                centre_out=(69.5, 69.5), out_shape=(140, 140))
    warped = warp.apply_labels(labels_of(masks))
    warped_masks = warp.apply(masks[None].astype(np.float32), order=0)[0].astype(np.int32)
    expected = masks_to_flows(warped_masks)
    inner = ndimage.binary_erosion(warped_masks > 0, iterations=2)
    cos = (warped[1:] * expected).sum(0)[inner] / (
        np.linalg.norm(warped[1:], axis=0)[inner] * np.linalg.norm(expected, axis=0)[inner] + 1e-12)
    assert cos.mean() > MIN_MEAN_COSINE, report(cos)
    # cellprob is warped with nearest neighbour: exactly the warped masks' foreground.
    np.testing.assert_array_equal(warped[0] > 0.5, warped_masks > 0)


def test_wrong_conventions_are_detected() -> None:
    """Rotating vectors the other way, or not negating X on a flip, fails the same check."""
    masks = ellipses()
    lab = labels_of(masks)
    theta = 2.0
    warp = Warp(1.0, theta, False, (63.5, 63.5), (63.5, 63.5), (128, 128))
    wm = warp.apply(masks[None].astype(np.float32), order=0)[0].astype(np.int32)
    inner = ndimage.binary_erosion(wm > 0, iterations=2)
    good = warp.apply_labels(lab)[1:]
    wrong = rotate_flows(rotate_flows(good, -theta), -theta)  # = rotation by -theta
    expected = masks_to_flows(wm)
    assert mean_cosine(good, expected, inner) > MIN_MEAN_COSINE
    assert mean_cosine(wrong, expected, inner) < WRONG_MAX_MEAN_COSINE

    flip = Warp(1.0, 0.0, True, (63.5, 63.5), (63.5, 63.5), (128, 128))
    fm = masks[:, ::-1]
    unflipped_x = flip.apply(lab[1:], order=1)  # mirrored but X not negated
    inner = ndimage.binary_erosion(fm > 0, iterations=2)
    assert mean_cosine(unflipped_x, masks_to_flows(fm), inner) < WRONG_MAX_MEAN_COSINE
    assert mean_cosine(flip.apply_labels(lab)[1:], masks_to_flows(fm), inner) > MIN_MEAN_COSINE


def test_rescale_brings_objects_to_target_diameter() -> None:
    """With rescale = d_image / d_target, objects end at d_target x U(0.75, 1.25) (§7.3)."""
    masks = ellipses((160, 160))
    d_image = diameters(masks)
    target = 17.0
    rng = np.random.default_rng(5)
    imgs = [masks[None].astype(np.float32)] * 8
    out, _, scales = random_rotate_and_resize(
        imgs, None, rng, rescale=[d_image / target] * 8, scale_range=0.5, out_size=96,
    )
    factors = scales * d_image / target
    assert np.all((factors >= 0.75) & (factors <= 1.25)), factors
    for img, scale in zip(out, scales):
        warped = np.rint(img[0]).astype(np.int32)
        kept = [lab for lab in np.unique(warped[warped > 0])
                if not _touches_border(warped == lab)]
        if not kept:
            continue
        got = diameters(np.where(np.isin(warped, kept), warped, 0))
        want = diameters(np.where(np.isin(masks, kept), masks, 0)) * scale
        assert abs(got - want) <= DIAMETER_RTOL * want, (got, want)


def _touches_border(obj: np.ndarray) -> bool:
    return bool(obj[0].any() or obj[-1].any() or obj[:, 0].any() or obj[:, -1].any())


def test_crop_offset_stays_within_the_scaled_image() -> None:
    """A crop of an image larger than the output never reaches past the image border."""
    rng = np.random.default_rng(0)
    ones = np.ones((1, 300, 200), np.float32)
    for _ in range(20):
        warp = place(rng, (300, 200), (128, 128), scale=0.9)
        out = warp.apply(ones, order=1)
        assert out.min() > 0.99  # no zero border came in


def test_same_seed_same_batch_and_draw_count() -> None:
    masks = ellipses()
    img = np.stack([masks.astype(np.float32) / 3, np.zeros_like(masks, np.float32)])
    lab = labels_of(masks)
    a = random_rotate_and_resize([img, img], [lab, lab], np.random.default_rng(1), out_size=64)
    b = random_rotate_and_resize([img, img], [lab, lab], np.random.default_rng(1), out_size=64)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    # Per image: flip, angle, scale, 2 offsets = 5 uniform draws (§7.3 order).
    rng = np.random.default_rng(1)
    random_rotate_and_resize([img], [lab], rng, out_size=64)
    ref = np.random.default_rng(1)
    ref.random(5)
    assert rng.random() == ref.random()
