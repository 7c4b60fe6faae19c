"""degrade_files: reading, layouts, outputs, the JSON record, reproducibility, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from cp3rt.errors import ConfigError, InputError, OutputError
from cp3rt.runtime.quality.degrade import (
    RECORD_NAME,
    FixedNoise,
    add_noise_batch,
    degrade_files,
    noise_preset,
    normalize_clean,
)

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
YEAST = sorted((DATA / "baby_yeast" / "images").glob("*.tif"))[:3]


def test_outputs_record_and_values(tmp_path):
    calls = []
    run = degrade_files(YEAST, noise_preset("downsample"), tmp_path / "out", seed=7,
                        diameter=15.0, noise_name="downsample", command="cp3rt degrade ...",
                        progress=lambda i, n, name: calls.append((i, n, name)))
    assert [p.name for p in run.outputs] == [p.name for p in YEAST]
    assert calls == [(i + 1, 3, p.name) for i, p in enumerate(YEAST)]
    seeds = np.random.SeedSequence(7).spawn(3)
    for i, (src, out) in enumerate(zip(YEAST, run.outputs)):
        got = tifffile.imread(out)
        assert got.dtype == np.float32 and got.shape == tifffile.imread(src).shape
        clean = normalize_clean(tifffile.imread(src)[None])
        want, plan = add_noise_batch(clean[None], noise_preset("downsample"),
                                     np.random.default_rng(seeds[i]), 15.0)
        np.testing.assert_array_equal(got, want[0, 0])
        assert plan[0] == run.applied[i]
    record = json.loads(run.record.read_text())
    assert run.record.name == RECORD_NAME
    assert record["seed"] == 7 and record["diameter"] == 15.0
    assert record["noise"]["kind"] == "random" and record["noise"]["beta"] == 0.03
    assert record["command"] == "cp3rt degrade ..."
    assert [e["applied"] for e in record["images"]] == [a.to_dict() for a in run.applied]


def test_same_seed_same_files(tmp_path):
    a = degrade_files(YEAST[:2], noise_preset("oneclick"), tmp_path / "a", seed=1)
    b = degrade_files(YEAST[:2], noise_preset("oneclick"), tmp_path / "b", seed=1)
    c = degrade_files(YEAST[:2], noise_preset("oneclick"), tmp_path / "c", seed=2)
    for pa, pb, pc in zip(a.outputs, b.outputs, c.outputs):
        np.testing.assert_array_equal(tifffile.imread(pa), tifffile.imread(pb))
    assert any(not np.array_equal(tifffile.imread(pa), tifffile.imread(pc))
               for pa, pc in zip(a.outputs, c.outputs))


def test_channel_layouts(tmp_path):
    rng = np.random.default_rng(0)
    rgb = (rng.random((40, 50, 3)) * 255).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    cyx = (rng.random((2, 40, 50)) * 1000).astype(np.uint16)
    tifffile.imwrite(tmp_path / "cyx.tif", cyx)
    run = degrade_files([tmp_path / "rgb.png", tmp_path / "cyx.tif"], FixedNoise(pscale=5.0),
                        tmp_path / "out")
    assert tifffile.imread(run.outputs[0]).shape == (40, 50, 3)
    assert tifffile.imread(run.outputs[1]).shape == (2, 40, 50)
    stack = rng.random((12, 40, 50)).astype(np.float32)
    tifffile.imwrite(tmp_path / "stack.tif", stack)
    # A file degrade cannot take is that file's failure (one line naming it), not the run's.
    run = degrade_files([tmp_path / "stack.tif"], FixedNoise(pscale=5.0), tmp_path / "out")
    assert run.outputs == () and not run.ok
    assert "stack.tif has shape (12, 40, 50)" in run.failed[0][1]


def test_refusals(tmp_path):
    img = tmp_path / "a.tif"
    tifffile.imwrite(img, np.arange(100, dtype=np.uint16).reshape(10, 10))
    with pytest.raises(OutputError, match="overwrite its input"):
        degrade_files([img], FixedNoise(pscale=2.0), tmp_path)
    (tmp_path / "other").mkdir()
    Image.fromarray(np.ones((10, 10), np.uint8)).save(tmp_path / "other" / "a.png")
    with pytest.raises(OutputError, match="would both be written"):
        degrade_files([img, tmp_path / "other" / "a.png"], FixedNoise(pscale=2.0),
                      tmp_path / "out")
    (tmp_path / "file").write_bytes(b"x")
    with pytest.raises(ConfigError, match="is a file"):
        degrade_files([img], FixedNoise(pscale=2.0), tmp_path / "file")
    with pytest.raises(InputError, match="No input"):
        degrade_files([], FixedNoise(pscale=2.0), tmp_path / "out")
