"""cp3rt.runtime.prep.resize against OpenCV (the reference's resize), the reference's resize_image,
and slow per-pixel re-statements of the three float32 code paths.

Kernel tests (names containing ``kernel``) also run with NUMBA_DISABLE_JIT=1 in a subprocess.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from cellpose import transforms as ref_transforms

from cp3rt.errors import ConfigError, InputError
from cp3rt.runtime.prep import resize as R

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ holds nojit_testutil

# Bilinear: the OpenCV/IPP emulation is bit-exact except in IPP's border columns of 3/4-channel
# images (left neighbour clamped), which IPP sometimes rounds without FMA: there we allow
# BORDER_ULPS units in the last place of the largest input value. Real-data checks use BILINEAR_RTOL of the value range.
BORDER_ULPS = 1
BILINEAR_RTOL = 1e-6
# cp3rt keeps OpenCV 4's arithmetic (the reference's). OpenCV 5 sends an exact 2x shrink of 1/3/4
# channels to the 2x2 box mean instead of IPP's bilinear (docs/deviations.md); the two agree within
# OPENCV5_BOX2_ULPS units in the last place of the largest |value| of each 2x2 source block
# (measured worst: 1.25 against OpenCV 5.1.0, 2 in a search over 10^8 blocks of the two formulas).
OPENCV5_BOX2_ULPS = 2
OPENCV_MAJOR = int(cv2.__version__.split(".")[0])
DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def _report(out: np.ndarray, ref: np.ndarray) -> str:
    diff = np.abs(out.astype(np.float64) - ref.astype(np.float64))
    idx = np.unravel_index(int(np.argmax(diff)), diff.shape)
    return (f"worst |diff|={diff[idx]:.3g} at {idx} (ours {out[idx]!r}, ref {ref[idx]!r}); "
            f"mismatch rate {(diff > 0).mean():.4%}")


def _cv2_linear(img_cyx: np.ndarray, ly: int, lx: int) -> np.ndarray:
    hwc = np.ascontiguousarray(img_cyx.transpose(1, 2, 0))
    out = cv2.resize(hwc, (lx, ly), interpolation=cv2.INTER_LINEAR)
    return out.reshape(ly, lx, img_cyx.shape[0]).transpose(2, 0, 1)


def _border_columns(lx: int, sx: int) -> np.ndarray:
    left = np.floor((np.arange(lx) + 0.5) * (sx / lx) - 0.5)
    return (left < 0) | (left >= sx - 1)


def _is_box2_shrink(img: np.ndarray, out: np.ndarray) -> bool:
    """The case OpenCV 5 computes differently: 1/3/4 channels shrunk by exactly 2 in both axes."""
    nc, sy, sx = img.shape
    return nc in (1, 3, 4) and (sy, sx) == (2 * out.shape[1], 2 * out.shape[2])


def _box2_ulps(out: np.ndarray, ref: np.ndarray, img: np.ndarray) -> np.ndarray:
    """|out - ref| in units in the last place of the largest |value| of each 2x2 source block."""
    nc, ly, lx = out.shape
    block_max = np.abs(img).reshape(nc, ly, 2, lx, 2).max(axis=(2, 4))
    return np.abs(out.astype(np.float64) - ref) / np.spacing(block_max).astype(np.float64)


def _assert_close(out: np.ndarray, ref: np.ndarray, img: np.ndarray) -> None:
    """Bit-exact, except BORDER_ULPS (of the largest input) in 3/4-channel border columns.

    Against OpenCV >= 5, the exact 2x shrink of 1/3/4 channels is held to OPENCV5_BOX2_ULPS.
    """
    assert out.shape == ref.shape and out.dtype == np.float32
    if OPENCV_MAJOR >= 5 and _is_box2_shrink(img, out):
        assert _box2_ulps(out, ref, img).max() <= OPENCV5_BOX2_ULPS, _report(out, ref)
        return
    nc, _, lx = out.shape
    border = _border_columns(lx, img.shape[-1]) if nc in (3, 4) else np.zeros(lx, bool)
    assert np.array_equal(out[..., ~border], ref[..., ~border]), _report(out, ref)
    ulp = np.spacing(np.abs(img).max())
    assert np.abs(out - ref).max() <= BORDER_ULPS * ulp, _report(out, ref)


CASES = [
    # (channels, src Y, src X, dst Y, dst X): up, down, odd, 1-px axes, exact 2x shrink, same
    (2, 100, 120, 150, 180), (2, 100, 120, 67, 80), (2, 37, 53, 91, 13), (2, 64, 48, 32, 24),
    (2, 1, 19, 43, 192), (2, 19, 1, 5, 7), (2, 7, 9, 7, 9), (3, 100, 120, 150, 180),
    (3, 150, 170, 100, 113), (3, 6, 2, 51, 50), (1, 200, 300, 133, 211), (1, 1, 50, 3, 30),
    (1, 64, 64, 32, 32), (4, 33, 57, 12, 99), (5, 40, 30, 20, 15), (5, 23, 31, 40, 41),
    (1, 3, 3, 1, 1), (2, 2, 2, 1, 1),
]


@pytest.mark.parametrize(("nc", "sy", "sx", "ly", "lx"), CASES)
def test_bilinear_matches_cv2_cases(nc: int, sy: int, sx: int, ly: int, lx: int) -> None:
    rng = np.random.default_rng(nc * 1000 + sy)
    img = (rng.random((nc, sy, sx)) * 20 - 5).astype(np.float32)
    _assert_close(R.resize_bilinear(img, (ly, lx)), _cv2_linear(img, ly, lx), img)


def test_bilinear_matches_cv2_random_sizes() -> None:
    rng = np.random.default_rng(1)
    for _ in range(150):
        nc = int(rng.choice([1, 2, 3, 4, 6]))
        sy, sx = (int(v) for v in rng.integers(1, 70, 2))
        ly, lx = (int(v) for v in rng.integers(1, 140, 2))
        img = (rng.standard_normal((nc, sy, sx)) * 3).astype(np.float32)
        _assert_close(R.resize_bilinear(img, (ly, lx)), _cv2_linear(img, ly, lx), img)


def test_bilinear_2d_input_and_exact_paths() -> None:
    rng = np.random.default_rng(2)
    img = rng.random((41, 37)).astype(np.float32)
    out = R.resize_bilinear(img, (90, 20))
    ref = cv2.resize(img, (20, 90), interpolation=cv2.INTER_LINEAR)
    assert out.shape == (90, 20)
    np.testing.assert_array_equal(out, ref)  # 1 channel goes through the exact IPP emulation
    two = rng.random((2, 41, 37)).astype(np.float32)
    np.testing.assert_array_equal(R.resize_bilinear(two, (90, 20)), _cv2_linear(two, 90, 20))
    np.testing.assert_array_equal(R.resize_bilinear(two, (41, 37)), two)


def test_bilinear_matches_reference_resize_image_on_real_data() -> None:
    import tifffile

    img = tifffile.imread(DATA / "stardist_dsb2018_nuclei" / "images" / "img2d.tif")
    img = img.astype(np.float32)
    for nc in (2, 3):
        stack = np.stack([img * (c + 1) for c in range(nc)], axis=-1)  # Y, X, C
        for ly, lx in ((341, 341), (700, 650), (256, 256)):
            ref = ref_transforms.resize_image(stack, Ly=ly, Lx=lx).transpose(2, 0, 1)
            out = R.resize_bilinear(np.ascontiguousarray(stack.transpose(2, 0, 1)), (ly, lx))
            scale = max(1.0, float(np.abs(ref).max()))  # raw intensities up to ~765
            assert np.abs(out - ref).max() <= BILINEAR_RTOL * scale, _report(out, ref)


# ---- OpenCV 5: the exact 2x shrink of 1/3/4 channels ----------------------------------------

def _box2_mean(img: np.ndarray, order: str) -> np.ndarray:
    """OpenCV's 2x2 box mean (INTER_AREA) in the two summation orders OpenCV 5 uses for it."""
    a, b = img[:, 0::2, 0::2], img[:, 0::2, 1::2]
    c, d = img[:, 1::2, 0::2], img[:, 1::2, 1::2]
    quarter = np.float32(0.25)
    if order == "pairwise":  # its vector loop
        return ((a + b) + (c + d)) * quarter
    return (((a + b) + c) + d) * quarter  # its scalar loop (row tails, 3-channel last column)


@pytest.mark.parametrize("nc", [1, 3, 4])
def test_bilinear_2x_shrink_relation_to_opencv5(nc: int) -> None:
    # cp3rt keeps OpenCV 4's (IPP) bilinear for an exact 2x shrink; OpenCV 5 takes the box mean.
    # Checked against both formulas on any installed OpenCV, and against cv2 itself: bit-exact
    # on OpenCV 4, on OpenCV 5 every pixel one of the two box-mean orders.
    rng = np.random.default_rng(50 + nc)
    differ = np.zeros(2, int)
    for sy, sx, scale in ((64, 64, 20.0), (40, 30, 1.0), (90, 62, 3000.0), (30, 34, 1e-3), (2, 2, 7.0)):
        img = (rng.standard_normal((nc, sy, sx)) * scale).astype(np.float32)
        out = R.resize_bilinear(img, (sy // 2, sx // 2))
        boxes = [_box2_mean(img, order) for order in ("pairwise", "sequential")]
        for box in boxes:
            assert _box2_ulps(out, box, img).max() <= OPENCV5_BOX2_ULPS, _report(out, box)
        differ += [np.count_nonzero(out != box) for box in boxes]
        ref = _cv2_linear(img, sy // 2, sx // 2)
        if OPENCV_MAJOR >= 5:
            assert np.all((ref == boxes[0]) | (ref == boxes[1])), _report(ref, boxes[0])
        else:
            np.testing.assert_array_equal(out, ref, err_msg=_report(out, ref))
    assert differ.min() > 0, f"OpenCV 4's bilinear should round apart from both box means: {differ}"


# ---- slow, obvious re-statements of the three paths (per pixel, Python scalars) -------------

def _slow_ipp(img: np.ndarray, ly: int, lx: int) -> np.ndarray:
    def coord(d: int, dst: int, src: int) -> tuple[int, np.float32]:
        pos = (d + 0.5) * (src / dst) - 0.5
        left = int(np.floor(pos))
        w = np.float32(pos - left)
        if left < 0:
            return 0, np.float32(0)
        if left >= src - 1:
            return src - 1, np.float32(0)
        return left, w

    def lerp(a, b, w):  # fused multiply-add: one rounding of a + (b - a) * w
        return np.float32(float(np.float32(b - a)) * float(w) + float(a))

    nc, sy, sx = img.shape
    out = np.zeros((nc, ly, lx), np.float32)
    for c in range(nc):
        for d in range(ly):
            i, wy = coord(d, ly, sy)
            for e in range(lx):
                j, wx = coord(e, lx, sx)
                top = lerp(img[c, i, j], img[c, i, min(j + 1, sx - 1)], wx)
                bottom = lerp(img[c, min(i + 1, sy - 1), j], img[c, min(i + 1, sy - 1), min(j + 1, sx - 1)], wx)
                out[c, d, e] = lerp(top, bottom, wy)
    return out


def _slow_opencv(img: np.ndarray, ly: int, lx: int) -> np.ndarray:
    def coord(d: int, dst: int, src: int) -> tuple[int, np.float32]:
        pos = np.float32((d + 0.5) * (1.0 / (dst / src)) - 0.5)
        left = int(np.floor(pos))
        return left, np.float32(pos - np.float32(left))

    nc, sy, sx = img.shape
    out = np.zeros((nc, ly, lx), np.float32)
    one = np.float32(1)
    for c in range(nc):
        for d in range(ly):
            i, fy = coord(d, ly, sy)
            rows = []
            for r in (min(max(i, 0), sy - 1), min(max(i + 1, 0), sy - 1)):  # rows clamped only
                row = np.zeros(lx, np.float32)
                for e in range(lx):
                    j, fx = coord(e, lx, sx)
                    if j < 0:
                        j, fx = 0, np.float32(0)
                    if j >= sx - 1:
                        j, fx = sx - 1, np.float32(0)
                    row[e] = img[c, r, j] * (one - fx) + img[c, r, min(j + 1, sx - 1)] * fx
                rows.append(row)
            out[c, d] = rows[0] * (one - fy) + rows[1] * fy
    return out


def _slow_box2(img: np.ndarray) -> np.ndarray:
    nc, sy, sx = img.shape
    out = np.zeros((nc, sy // 2, sx // 2), np.float32)
    for c in range(nc):
        for d in range(sy // 2):
            for e in range(sx // 2):
                block = img[c, 2 * d : 2 * d + 2, 2 * e : 2 * e + 2]
                s = block[0, 0] + block[0, 1]
                s = s + block[1, 0]
                s = s + block[1, 1]
                out[c, d, e] = s * np.float32(0.25)
    return out


@pytest.mark.parametrize(("nc", "sy", "sx", "ly", "lx"), [
    (1, 9, 7, 13, 4), (3, 5, 6, 2, 11), (1, 2, 2, 5, 3), (2, 9, 7, 13, 4), (2, 1, 6, 3, 4),
    (5, 4, 3, 7, 7), (1, 8, 10, 4, 5), (4, 6, 4, 3, 2),  # exact 2x shrinks: OpenCV 4's bilinear
])
def test_kernel_bilinear_matches_slow_reference(nc: int, sy: int, sx: int, ly: int, lx: int) -> None:
    rng = np.random.default_rng(sy * 31 + sx)
    img = (rng.standard_normal((nc, sy, sx)) * 4).astype(np.float32)
    slow = _slow_ipp(img, ly, lx) if nc in (1, 3, 4) and sy > 1 and sx > 1 else _slow_opencv(img, ly, lx)
    out = R.resize_bilinear(img, (ly, lx))
    np.testing.assert_array_equal(out, slow, err_msg=_report(out, slow))


def test_kernel_box2_matches_slow_reference() -> None:
    rng = np.random.default_rng(3)
    img = rng.standard_normal((2, 10, 8)).astype(np.float32)
    out = R.resize_bilinear(img, (5, 4))
    np.testing.assert_array_equal(out, _slow_box2(img))
    np.testing.assert_array_equal(out, _cv2_linear(img, 5, 4))


# ---- nearest ---------------------------------------------------------------------------------

def _slow_nearest(labels: np.ndarray, ly: int, lx: int) -> np.ndarray:
    sy, sx = labels.shape[-2:]
    out = np.zeros((*labels.shape[:-2], ly, lx), labels.dtype)
    for d in range(ly):
        for e in range(lx):
            i = min(int(np.floor(d * (1.0 / (ly / sy)))), sy - 1)
            j = min(int(np.floor(e * (1.0 / (lx / sx)))), sx - 1)
            out[..., d, e] = labels[..., i, j]
    return out


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.float32])
def test_nearest_matches_cv2(dtype) -> None:
    rng = np.random.default_rng(4)
    for _ in range(60):
        sy, sx = (int(v) for v in rng.integers(1, 120, 2))
        ly, lx = (int(v) for v in rng.integers(1, 300, 2))
        labels = rng.integers(0, 200, (sy, sx)).astype(dtype)
        ref = cv2.resize(labels, (lx, ly), interpolation=cv2.INTER_NEAREST)
        np.testing.assert_array_equal(R.resize_nearest(labels, (ly, lx)), ref.reshape(ly, lx))


def test_nearest_uint32_and_stack_keep_labels_exactly() -> None:
    labels = np.arange(7 * 9, dtype=np.uint32).reshape(7, 9) + np.uint32(2**30)
    out = R.resize_nearest(labels, (20, 4))
    assert out.dtype == np.uint32
    np.testing.assert_array_equal(out, _slow_nearest(labels, 20, 4))
    stack = np.stack([labels, labels + 1])
    np.testing.assert_array_equal(R.resize_nearest(stack, (5, 30)), _slow_nearest(stack, 5, 30))
    # The reference's resize_safe agrees where float32 holds the labels exactly.
    small = np.arange(63, dtype=np.uint32).reshape(7, 9)
    ref = ref_transforms.resize_safe(small, 20, 4, interpolation=cv2.INTER_NEAREST)
    np.testing.assert_array_equal(R.resize_nearest(small, (20, 4)), ref)


def test_kernel_nearest_matches_slow_reference() -> None:
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 9, (2, 13, 6)).astype(np.uint16)
    for ly, lx in ((3, 49), (26, 12), (13, 6), (1, 1)):
        np.testing.assert_array_equal(R.resize_nearest(labels, (ly, lx)), _slow_nearest(labels, ly, lx))


def test_nearest_index_rule_differs_from_exact_integer_division_like_opencv() -> None:
    # OpenCV computes floor(i * (1 / (dst / src))) in float64, which is not i * src // dst for
    # every size; find such a size and check both the rule and OpenCV.
    for src in range(2, 200):
        for dst in range(2, 400):
            rule = R.nearest_indices(dst, src)
            if not np.array_equal(rule, (np.arange(dst) * src) // dst):
                img = np.arange(src, dtype=np.uint16)[np.newaxis].repeat(2, 0)
                ref = cv2.resize(img, (dst, 2), interpolation=cv2.INTER_NEAREST)[0]
                np.testing.assert_array_equal(rule, ref)
                return
    pytest.fail("expected at least one size where the float64 rule differs")


def test_bad_arguments() -> None:
    img = np.zeros((2, 5, 5), np.float32)
    for shape in ((0, 5), (5, -1), (2.5, 3), "ab", (1, 2, 3)):
        with pytest.raises(ConfigError, match="shape"):
            R.resize_bilinear(img, shape)
    with pytest.raises(InputError):
        R.resize_bilinear(np.zeros((1, 2, 3, 4), np.float32), (3, 3))
    with pytest.raises(InputError):
        R.resize_nearest(np.zeros(5, np.uint16), (3, 3))


def test_kernels_also_pass_with_numba_jit_disabled() -> None:
    from nojit_testutil import assert_pass_without_jit

    assert_pass_without_jit(__file__, select="kernel and not jit_disabled", timeout=300)
