"""Low-range images are zeroed as in the reference, but never silently (issue 13 item 8): the
image x 1e-6 has a 1-99 % range under the reference's 1e-3 cut, so it becomes all zeros and
gives no objects; cp3rt keeps that arithmetic and issues a LowRangeWarning naming the range."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile

from cp3rt.errors import Cp3rtWarning, LowRangeWarning
from cp3rt.runtime.prep.normalize import normalize_image

sys.path.insert(0, str(Path(__file__).resolve().parent))  # scale_testutil


def _image() -> np.ndarray:
    return np.random.default_rng(0).random((2, 40, 50)).astype(np.float32)


def _cp3rt_warnings(fn):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = fn()
    return out, [w for w in caught if issubclass(w.category, Cp3rtWarning)]


def test_low_range_image_is_zeroed_with_a_warning_naming_the_range():
    img = _image() * 1e-6
    with pytest.warns(LowRangeWarning) as record:
        out = normalize_image(img, name="tiny.tif")
    assert np.all(out == 0)  # the reference's arithmetic, unchanged
    msg = str(record[0].message)
    assert msg.startswith("tiny.tif: ") and "1-99 % range" in msg and "1e-03" in msg
    assert "channels 0, 1 have a 1-99 % range" in msg and "\n" not in msg
    assert len(record) == 1  # one warning per image, not per channel


def test_no_warning_for_normal_or_constant_channels():
    img = _image()
    img[1] = 0.0  # a zero padding channel is constant: left alone, as the reference
    out, caught = _cp3rt_warnings(lambda: normalize_image(img))
    assert caught == [] and out[0].max() > 0.9


def test_one_low_channel_is_named():
    img = _image()
    img[1] *= 1e-6
    _, caught = _cp3rt_warnings(lambda: normalize_image(img))
    assert len(caught) == 1 and "channel 1 " in str(caught[0].message)


def test_pipeline_run_warns():
    from scale_testutil import NumpyEngine

    from cp3rt.runtime.pipeline import Pipeline

    img = _image()[0] * 1e-6
    with Pipeline.from_engines(NumpyEngine()) as p:
        with pytest.warns(LowRangeWarning, match="set to 0"):
            result = p.run(img, diameter=30.0)
    assert result.n_objects == 0


def test_degrade_records_and_shows_the_warning_with_the_file(tmp_path, capsys):
    import json

    from cp3rt.cli.app import main

    src = tmp_path / "clean"
    src.mkdir()
    tifffile.imwrite(src / "low.tif", _image()[0] * 1e-6)
    tifffile.imwrite(src / "ok.tif", _image()[0])
    rc = main(["degrade", str(src), "--noise", "poisson", "--pscale", "5", "--out",
               str(tmp_path / "o")])
    out, err = capsys.readouterr()
    assert rc == 0
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("warning: ") and "low.tif" in lines[0]
    record = json.loads((tmp_path / "o" / "cp3rt_degrade.json").read_text())
    by_name = {Path(e["input"]).name: e for e in record["images"]}
    assert "1-99 % range" in by_name["low.tif"]["warnings"][0]
    assert by_name["ok.tif"]["warnings"] == []
