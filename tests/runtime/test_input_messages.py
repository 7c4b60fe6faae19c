"""Messages that name the real problem (issue 13 item 9)."""

from __future__ import annotations

import numpy as np
import pytest

from cp3rt.errors import InputError
from cp3rt.runtime.prep.axes import to_cyx
from cp3rt.runtime.prep.normalize import check_float32_range, normalize_image


def test_finite_float64_beyond_float32_is_not_called_non_finite():
    img = np.ones((20, 30), np.float64)
    img[3, 4] = 1e300
    img[5, 5] = np.inf  # a real Inf is not counted as "beyond float32"
    for call in (lambda: to_cyx(img), lambda: normalize_image(img[None], name="x.tif")):
        with pytest.raises(InputError) as info:
            call()
        msg = str(info.value)
        assert "1 value(s) beyond float32 range (max 3.4e+38)" in msg
        assert "non-finite" not in msg
    with pytest.raises(InputError, match="x.tif has 1 value"):
        normalize_image(img[None], name="x.tif")
    check_float32_range(np.full((2, 2), 3e38))           # within float32: fine


def test_ambiguous_stack_names_the_cli_flags_and_the_api_parameters():
    with pytest.raises(InputError) as info:
        to_cyx(np.zeros((12, 40, 50), np.uint16))
    msg = str(info.value)
    for needle in ("(12, 40, 50)", "--do-3d", "--stitch-threshold", "--z-axis", "z_axis=",
                   "channel_axis="):
        assert needle in msg, needle
    assert "\n" not in msg
