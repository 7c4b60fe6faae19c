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
