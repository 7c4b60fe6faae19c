"""find_images: Cellpose's folder rules (parity with cellpose.io.get_image_files), natural sort
(parity with natsort), glob patterns, cp3rt temporary files, errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from cellpose import io as ref_io
from natsort import natsorted

from cp3rt._fs import atomic_path
from cp3rt.errors import InputError
from cp3rt.runtime.io import find_images, is_output_name, natural_key

IMAGES = ["img1.tif", "img2.tif", "img10.tif", "img10b.png", "B.TIF", "f.jpeg", "g.JPG",
          "stack.tiff", "masks.tif"]
OUTPUTS = ["a_masks.tif", "a_cp_masks.png", "b_flows.tif", "b_flows_1.tif", "c_cellprob.tif",
           "d_cp_output.png"]
OTHER = ["notes.txt", "e_seg.npy", "x.npy"]


@pytest.fixture()
def folder(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    for name in IMAGES + OUTPUTS + OTHER:
        (d / name).write_bytes(b"x")
    (d / "sub").mkdir()
    (d / "sub" / "deep1.tif").write_bytes(b"x")
    # A file a killed cp3rt run left behind: atomic_path's temporary name, re-created after
    # atomic_path cleaned it up.
    with pytest.raises(RuntimeError), atomic_path(d / "img3.tif") as tmp:
        tmp.write_bytes(b"x")
        partial = tmp
        raise RuntimeError
    partial.write_bytes(b"x")
    return d


def test_folder_matches_reference_rules(folder):
    got = [p.name for p in find_images([folder])]
    want = [Path(p).name for p in ref_io.get_image_files(str(folder), "_masks")]
    assert got == want
    assert "img3.tif" not in got and not any(n.startswith(".") for n in got)


def test_natural_sort_matches_natsort():
    names = ["a10.tif", "a2.tif", "a1.tif", "b.tif", "a1b.tif", "a01.tif", "x/a3.tif",
             "x/a20.tif", "A5.tif", "a100_t2.tif", "a100_t10.tif", "2.tif", "10.tif"]
    assert sorted(names, key=natural_key) == natsorted(names)


def test_output_name_rules():
    for name in OUTPUTS + ["e_seg.npy", "x_seg.tif"]:
        assert is_output_name(name), name
    for name in IMAGES + ["_masks.tif", "seg.tif"]:
        assert not is_output_name(name), name


def test_globs_and_files(folder):
    got = [p.name for p in find_images([str(folder / "img*")])]
    assert got == ["img1.tif", "img2.tif", "img10.tif", "img10b.png"]
    # .npy files come in through patterns, outputs (_seg.npy) stay out.
    assert [p.name for p in find_images([str(folder / "*.npy")])] == ["x.npy"]
    deep = find_images([str(folder / "**" / "*.tif")])
    assert "deep1.tif" in [p.name for p in deep]
    # A named file is taken as given, even with an output-like name; duplicates collapse.
    got = find_images([folder / "a_masks.tif", str(folder / "img1.tif"), folder])
    names = [p.name for p in got]
    assert "a_masks.tif" in names and names.count("img1.tif") == 1


def test_errors(tmp_path, folder):
    with pytest.raises(InputError, match="No input"):
        find_images([])
    with pytest.raises(InputError, match="does not exist"):
        find_images([tmp_path / "nope"])
    with pytest.raises(InputError, match=r"Pattern .*\*\.png matches no image files"):
        find_images([str(tmp_path / "*.png")])
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "only_masks.tif").write_bytes(b"x")
    with pytest.raises(InputError, match=f"Folder {empty} contains no input images"):
        find_images([empty])
    with pytest.raises(InputError, match="unsupported extension '.txt'"):
        find_images([folder / "notes.txt"])
