"""to_cyx / ChannelSpec against the reference's transforms.convert_image (spec §3.2)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from cellpose import transforms as ref_transforms

from cp3rt.errors import ConfigError, InputError
from cp3rt.runtime.prep.axes import ChannelSpec, to_cyx

# The conversion only moves, selects and averages values; averaging is the same float32
# numpy reduction in both: results must be identical.
CONVERT_ATOL = 0.0
DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def _report(out: np.ndarray, ref: np.ndarray) -> str:
    diff = np.abs(out.astype(np.float64) - ref.astype(np.float64))
    idx = np.unravel_index(int(np.argmax(diff)), diff.shape)
    return (f"worst |diff|={diff[idx]:.3g} at {idx} (ours {out[idx]!r}, ref {ref[idx]!r}); "
            f"mismatch rate {(diff > 0).mean():.4%}")


def _ref(x: np.ndarray, **kw) -> np.ndarray:
    """Reference result in cp3rt's layout ((C, Y, X) or (Z, C, Y, X))."""
    out = ref_transforms.convert_image(x.copy(), kw.pop("channels", None), **kw)
    return np.moveaxis(out, -1, -3)


def _same(x: np.ndarray, **kw) -> None:
    ours = to_cyx(x, channels=kw.get("channels"), channel_axis=kw.get("channel_axis"),
                  z_axis=kw.get("z_axis"), nchan=kw.get("nchan", 2), do_3D=kw.get("do_3D", False))
    ref = _ref(x, **kw)
    assert ours.dtype == np.float32 and ours.flags.c_contiguous
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    assert np.abs(ours - ref).max() <= CONVERT_ATOL, _report(ours, ref)


def _img(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 4000, shape).astype(np.uint16)


CASES = [
    # (shape, kwargs) — channels=None (CellposeModel default)
    ((40, 50), {}),
    ((40, 50, 3), {}),
    ((3, 40, 50), {}),
    ((40, 50, 1), {}),
    ((1, 40, 50), {}),
    ((2, 40, 50), {"nchan": 2}),
    ((7, 40, 50), {"nchan": None}),
    ((40, 50, 3), {"nchan": None}),
    ((40, 50, 3), {"nchan": 1}),
    ((40, 50), {"nchan": 1}),
    ((40, 50), {"nchan": 3}),          # 1 channel padded to 3: the case the reference gets right
    ((5, 2, 40, 50), {}),              # Z, C, Y, X
    ((5, 40, 50, 2), {}),
    ((4, 40, 50), {"channel_axis": 0}),
    ((40, 50, 6), {"z_axis": 2}),
    ((6, 40, 50, 2), {"z_axis": 0, "channel_axis": 3}),
    ((2, 6, 40, 50), {"channel_axis": 0, "z_axis": 1}),
    ((1, 6, 2, 40, 50), {}),           # 5-D with a singleton axis
    ((1, 1, 40, 50), {}),
    ((6, 40, 50), {"do_3D": True}),
    ((6, 40, 50, 2), {"do_3D": True}),
    # channels given (Cellpose / CLI default [0, 0])
    ((40, 50), {"channels": [0, 0]}),
    ((40, 50, 3), {"channels": [0, 0]}),
    ((3, 40, 50), {"channels": [0, 0]}),
    ((40, 50, 3), {"channels": [2, 3]}),
    ((40, 50, 3), {"channels": [2, 0]}),
    ((40, 50, 3), {"channels": [3, 1]}),
    ((40, 50, 1), {"channels": [1, 2]}),
    ((7, 40, 50), {"channels": [0, 0]}),   # smallest axis > 5 with channels -> Z
    ((40, 50, 9), {"channels": [1, 0]}),   # smallest axis 9 -> Z guess too
    ((4, 40, 50, 3), {"channels": [2, 1]}),
    ((4, 3, 40, 50), {"channels": [0, 0]}),
    ((8, 40, 50), {"channels": [[1, 0]]}),
]


@pytest.mark.parametrize(("shape", "kw"), CASES)
def test_matches_convert_image(shape, kw) -> None:
    _same(_img(*shape, seed=len(shape)), **kw)


def test_matches_convert_image_on_real_data() -> None:
    for folder in ("ctc_msc_cells", "baby_yeast"):
        path = sorted((DATA / folder / "images").glob("*.tif"))[0]
        img = tifffile.imread(path)
        _same(img)
        _same(img, channels=[0, 0])
        rgb = np.stack([img, img // 2, img // 3], axis=-1)
        _same(rgb, channels=[0, 0])
        _same(rgb, channels=[3, 2])
        _same(rgb)


def test_float_and_bool_inputs() -> None:
    _same(np.random.default_rng(1).standard_normal((40, 50, 3)), channels=[0, 0])
    _same(np.random.default_rng(2).random((30, 20)) > 0.5)


# ---- deliberate deviations (documented in cp3rt.runtime.prep.axes) ---------------------------------

def test_images_with_fewer_than_8_rows_are_not_transposed() -> None:
    img = _img(5, 40)
    out = to_cyx(img, channels=[0, 0])
    assert out.shape == (2, 5, 40)
    np.testing.assert_array_equal(out[0], img.astype(np.float32))
    assert not out[1].any()
    assert _ref(img, channels=[0, 0]).shape != out.shape  # the reference reads rows as channels


def test_padding_to_nchan_adds_exactly_the_missing_zero_channels() -> None:
    img = _img(40, 50, 2)
    out = to_cyx(img, nchan=3)
    assert out.shape == (3, 40, 50) and not out[2].any()
    np.testing.assert_array_equal(out[:2], np.moveaxis(img, -1, 0).astype(np.float32))
    assert _ref(img, nchan=3).shape[0] == 6  # reference: C * nchan channels


def test_channel_axis_after_z_is_tracked_exactly() -> None:
    img = _img(40, 3, 6, 50)  # Y, C, Z, X
    out = to_cyx(img, channel_axis=1, z_axis=2, nchan=None)
    assert out.shape == (6, 3, 40, 50)
    np.testing.assert_array_equal(out, np.transpose(img, (2, 1, 0, 3)).astype(np.float32))


def test_known_z_axis_is_never_taken_for_channels() -> None:
    img = _img(2, 40, 50, 3)  # 2 planes, 3 channels; the reference reads 3 planes x 2 channels
    out = to_cyx(img, z_axis=0, nchan=None)
    assert out.shape == (2, 3, 40, 50)


# ---- errors ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("x", "kw", "err", "words"), [
    (np.zeros((2, 3, 4, 5, 6)), {}, InputError, "5 axes"),
    (np.zeros((0, 5)), {}, InputError, "empty"),
    (np.zeros(5), {}, InputError, "at least 2 axes"),
    (np.zeros((12, 64, 64)), {}, InputError, "channel_axis"),
    (np.zeros((40, 50, 2)), {"channels": [3, 0]}, InputError, "only 2 channels"),
    (np.zeros((40, 50)), {"do_3D": True}, InputError, "do_3D"),
    (np.zeros((40, 50, 3), complex), {}, InputError, "dtype"),
    (np.zeros((4, 40, 50)), {"channel_axis": 3}, ConfigError, "channel_axis"),
    (np.zeros((4, 40, 50)), {"channel_axis": 0, "z_axis": -3}, ConfigError, "same axis"),
    (np.zeros((40, 50, 3)), {"channels": [0, 0], "nchan": 3}, ConfigError, "nchan=3"),
    (np.zeros((40, 50, 3)), {"channels": [4, 0]}, ConfigError, "channels.cyto"),
    (np.zeros((40, 50, 3)), {"channels": [1]}, ConfigError, "two numbers"),
])
def test_errors_are_one_clear_sentence(x, kw, err, words) -> None:
    with pytest.raises(err, match=words) as info:
        to_cyx(x, **kw)
    assert str(info.value).endswith(".")


def test_channel_spec_validation() -> None:
    assert ChannelSpec.parse([2, 3]) == ChannelSpec(2, 3)
    assert ChannelSpec.parse(((1, 0),)) == ChannelSpec(1, 0)
    for bad in ((-1, 0), (0, 4), (True, 0), (1.5, 0)):
        with pytest.raises(ConfigError, match=r"0\.\.3"):
            ChannelSpec(*bad)
