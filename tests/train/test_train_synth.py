"""The procedural nucleus generator: exact, consecutive masks; reproducible per seed."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from cp3rt.errors import ConfigError
from cp3rt.train.synth import SynthNuclei, synth_nuclei


def test_masks_are_consecutive_and_cover_bright_objects() -> None:
    img, masks = synth_nuclei(np.random.default_rng(0), SynthNuclei(shape=(128, 160)))
    assert img.shape == masks.shape == (128, 160) and masks.dtype == np.uint16
    labels = np.unique(masks[masks > 0])
    np.testing.assert_array_equal(labels, np.arange(1, labels.size + 1))
    assert labels.size >= 10
    # Objects are brighter than the background on average (what a segmenter must learn).
    assert img[masks > 0].mean() > 1.5 * img[masks == 0].mean()
    # Each object is essentially one piece (overlaps are limited to 15 %).
    for lab in labels[:20]:
        _, n = ndimage.label(masks == lab)
        assert n <= 2


def test_same_seed_same_image() -> None:
    a = synth_nuclei(np.random.default_rng(3), SynthNuclei(shape=(64, 64)))
    b = synth_nuclei(np.random.default_rng(3), SynthNuclei(shape=(64, 64)))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_bad_settings() -> None:
    with pytest.raises(ConfigError, match="shape"):
        SynthNuclei(shape=(8, 64))
    with pytest.raises(ConfigError, match="diameter"):
        SynthNuclei(diameter=(20.0, 10.0))


def test_no_halo_keeps_the_starters_random_stream() -> None:
    # The starter nets' procedural training images (benchmarks/train_data.py) must stay
    # reproducible: without a glow the generator draws exactly the numbers it drew before.
    import hashlib

    img, masks = synth_nuclei(np.random.default_rng(0), SynthNuclei(shape=(64, 64)))
    assert hashlib.sha256(img.tobytes()).hexdigest()[:16] == "12d013f4aaadc61f"
    assert hashlib.sha256(masks.tobytes()).hexdigest()[:16] == "83b5518391b6e229"


def test_halo_brightens_the_rim_outside_but_not_the_masks() -> None:
    plain = SynthNuclei(shape=(128, 128), photons=(1e6, 1e6), background=(0.0, 0.0))
    glow = SynthNuclei(shape=(128, 128), photons=(1e6, 1e6), background=(0.0, 0.0),
                       halo=(0.5, 0.5), halo_sigma=(3.0, 3.0))
    img0, m0 = synth_nuclei(np.random.default_rng(5), plain)
    img1, m1 = synth_nuclei(np.random.default_rng(5), glow)
    np.testing.assert_array_equal(m0, m1)  # the objects are the same; only the light differs
    fg = m0 > 0
    rim_out = ndimage.binary_dilation(fg, iterations=4) & ~ndimage.binary_dilation(fg, iterations=1)
    assert img1[rim_out].mean() > 1.5 * img0[rim_out].mean()
    with pytest.raises(ConfigError, match="halo"):
        SynthNuclei(halo=(0.5, 0.1))
