"""`cp3rt run` on stacks (issue 14 item 3), with the shipped nuclei model: a TYX hyperstack
gives a T-stack of labels; an untagged stack is one failed line naming the options, never an
average; --channel-axis says what the file does not."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile
from bad_corpus import failed_lines, sample

from cp3rt.cli.app import main

MODEL = Path(__file__).resolve().parents[2] / "src" / "cp3rt" / "assets" / "models" / "cp3rt_nuclei.onnx"
RUN = ["--model", str(MODEL), "--diameter", "17"]


def _stack(n):
    return np.stack([sample(96, 32 * t, 32 * t) for t in range(n)])


def test_tyx_and_untagged_stacks(tmp_path, capsys):
    data = _stack(3)
    tifffile.imwrite(tmp_path / "t.tif", data, imagej=True, metadata={"axes": "TYX"})
    assert main(["run", str(tmp_path / "t.tif"), *RUN]) == 0
    with tifffile.TiffFile(tmp_path / "t_cp_masks.tif") as tif:
        assert tif.series[0].axes == "TYX"
        masks = tif.asarray()
    assert masks.shape == (3, 96, 96) and all(m.max() > 0 for m in masks)
    tifffile.imwrite(tmp_path / "one.tif", data[1])
    assert main(["run", str(tmp_path / "one.tif"), *RUN]) == 0
    np.testing.assert_array_equal(masks[1], tifffile.imread(tmp_path / "one_cp_masks.tif"))
    capsys.readouterr()

    tifffile.imwrite(tmp_path / "s.tif", _stack(5), photometric="minisblack")
    assert main(["run", str(tmp_path / "s.tif"), *RUN]) == 1
    err = capsys.readouterr().err
    [line] = failed_lines(err)
    for option in ("--do-3d", "--stitch-threshold", "--z-axis", "--channel-axis"):
        assert option in line
    assert not (tmp_path / "s_cp_masks.tif").exists()

    tifffile.imwrite(tmp_path / "c.tif", _stack(2), photometric="minisblack")
    assert main(["run", str(tmp_path / "c.tif"), *RUN, "--channel-axis", "0"]) == 0
    assert tifffile.imread(tmp_path / "c_cp_masks.tif").shape == (96, 96)
